//! Image archives: `docker-archive` (what `docker save` writes and `docker
//! load` reads: manifest.json, config JSON, one tar per layer) and
//! `oci-archive` (a tarred OCI image layout). `load` streams either from any
//! reader, verifying every digest, and leaves the store unchanged on failure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::manifest::{self, Manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{ImageRecord, Store, StoreError, MAX_MANIFEST_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the archive: {0}")]
    Read(io::Error),
    #[error("writing the archive: {0}")]
    Write(io::Error),
    #[error("not an image archive: it has neither manifest.json (docker-archive) nor index.json (oci-archive)")]
    UnknownFormat,
    #[error("archive is missing {0}")]
    Missing(String),
    #[error("{path} in the archive has digest {actual}, but its name says {expected}")]
    NameMismatch {
        path: String,
        expected: String,
        actual: Digest,
    },
    #[error(
        "layer {path}: uncompressed digest {actual} does not match the config's diff_id {expected}"
    )]
    DiffIdMismatch {
        path: String,
        expected: String,
        actual: Digest,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

fn invalid(what: impl Into<String>, message: impl ToString) -> ArchiveError {
    ArchiveError::Invalid {
        what: what.into(),
        message: message.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    #[default]
    DockerArchive,
    OciArchive,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "docker-archive" | "docker" => Ok(Self::DockerArchive),
            "oci-archive" | "oci" => Ok(Self::OciArchive),
            _ => Err(format!(
                "unknown archive format {s:?} (use docker-archive or oci-archive)"
            )),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image to save: its record (name and manifest digest).
pub struct SaveItem<'a> {
    pub record: &'a ImageRecord,
    /// The name to write, if any (the reference the user gave).
    pub name: Option<Reference>,
}

/// Writes `items` as one archive to `out`. Blobs are copied as stored
/// (compressed layers stay compressed: docker, podman and skopeo all accept it).
pub fn save(
    store: &Store,
    items: &[SaveItem<'_>],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    let mut written: HashSet<String> = HashSet::new();
    let mut docker_entries = vec![];
    let mut oci_manifests = vec![];
    for item in items {
        let mbytes = store.read_small_blob(&item.record.digest)?;
        let Manifest::Image(img) = Manifest::parse(&mbytes, None)? else {
            return Err(manifest::ManifestError::NotAnImage(item.record.digest.clone()).into());
        };
        let config = img.config_digest()?;
        let layers = img.layer_digests()?;
        match format {
            ArchiveFormat::DockerArchive => {
                let cpath = format!("{}.json", config.hex());
                add_blob(&mut tar, store, &config, &cpath, &mut written)?;
                let mut lpaths = vec![];
                for l in &layers {
                    let p = format!("{}.tar", l.hex());
                    add_blob(&mut tar, store, l, &p, &mut written)?;
                    lpaths.push(p);
                }
                docker_entries.push(DockerManifestEntry {
                    config: cpath,
                    repo_tags: item.name.as_ref().map(|n| vec![docker_name(n)]),
                    layers: lpaths,
                });
            }
            ArchiveFormat::OciArchive => {
                for d in std::iter::once(&item.record.digest)
                    .chain(std::iter::once(&config))
                    .chain(&layers)
                {
                    add_blob(
                        &mut tar,
                        store,
                        d,
                        &format!("blobs/sha256/{}", d.hex()),
                        &mut written,
                    )?;
                }
                let mut annotations = BTreeMap::new();
                if let Some(n) = &item.name {
                    annotations.insert("io.containerd.image.name".to_owned(), n.to_string());
                    if let Some(t) = n.tag() {
                        annotations
                            .insert("org.opencontainers.image.ref.name".to_owned(), t.to_owned());
                    }
                }
                oci_manifests.push(serde_json::json!({
                    "mediaType": img.media_type,
                    "digest": item.record.digest.to_string(),
                    "size": mbytes.len(),
                    "annotations": annotations,
                }));
            }
        }
    }
    match format {
        ArchiveFormat::DockerArchive => {
            let json =
                serde_json::to_vec(&docker_entries).map_err(|e| ArchiveError::Write(e.into()))?;
            add_bytes(&mut tar, "manifest.json", &json)?;
        }
        ArchiveFormat::OciArchive => {
            add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_INDEX,
                "manifests": oci_manifests,
            });
            let json = serde_json::to_vec(&index).map_err(|e| ArchiveError::Write(e.into()))?;
            add_bytes(&mut tar, "index.json", &json)?;
        }
    }
    tar.into_inner()
        .map_err(ArchiveError::Write)?
        .flush()
        .map_err(ArchiveError::Write)
}

/// docker writes Docker Hub names short (`busybox:latest`).
fn docker_name(r: &Reference) -> String {
    let s = r.to_string();
    s.strip_prefix("docker.io/library/")
        .or_else(|| s.strip_prefix("docker.io/"))
        .map_or(s.clone(), str::to_owned)
}

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    // Paths here are ours and short; set_path only fails past ustar limits.
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn add_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = header(path, bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
        .map_err(ArchiveError::Write)
}

fn add_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &Store,
    d: &Digest,
    path: &str,
    written: &mut HashSet<String>,
) -> Result<(), ArchiveError> {
    if !written.insert(path.to_owned()) {
        return Ok(());
    }
    let f = store.open_blob(d)?;
    let len = f.metadata().map_err(ArchiveError::Read)?.len();
    let mut h = header(path, len);
    tar.append_data(&mut h, path, f)
        .map_err(ArchiveError::Write)
}

/// What `load` brought in.
#[derive(Debug)]
pub struct Loaded {
    pub images: Vec<ImageRecord>,
}

/// Where an archive member ended up while streaming.
enum Member {
    /// Kept in memory (small JSON and friends).
    Bytes(Vec<u8>),
    /// Streamed into the store under this digest.
    Blob(Digest),
    /// A symlink to another member (legacy docker-archive layer dedup).
    Link(String),
}

/// Reads an archive (either format, optionally gzip- or zstd-compressed) and
/// names its images. On any error, blobs this load added are removed again.
pub fn load(store: &Store, input: impl Read) -> Result<Loaded, ArchiveError> {
    let writer = store.writer_lock()?;
    let mut touched: Vec<Digest> = vec![];
    let result = load_inner(store, input, &mut touched).and_then(|loaded| {
        // All names at once, only after every image checked out.
        store.record_images(loaded.images.clone())?;
        Ok(loaded)
    });
    if result.is_err() {
        // Blobs this load wrote that no image references go again; blobs that
        // other images use stay. Done under the gc lock, so release ours first.
        drop(writer);
        let _ = store.remove_unreferenced(&touched);
    }
    result
}

fn load_inner(
    store: &Store,
    input: impl Read,
    added: &mut Vec<Digest>,
) -> Result<Loaded, ArchiveError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input.fill_buf().map_err(ArchiveError::Read)?;
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(ArchiveError::Read)?)
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(reader);
    let mut members: HashMap<String, Member> = HashMap::new();
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw_path = entry.path().map_err(ArchiveError::Read)?.into_owned();
        let Some(path) = clean_path(&raw_path) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Ok(Some(target)) = entry.link_name() {
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&path)
                            .parent()
                            .map(|p| p.join(&target))
                            .unwrap_or(target.into_owned())
                    } else {
                        target.into_owned()
                    };
                    if let Some(t) = clean_path(&base) {
                        members.insert(path, Member::Link(t));
                    }
                }
                continue;
            }
            t if !t.is_file() => continue,
            _ => {}
        }
        let size = entry.size();
        let named_hex = path.strip_prefix("blobs/sha256/").map(str::to_owned);
        if named_hex.is_none() && size <= MAX_MANIFEST_SIZE && is_metadata_name(&path) {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            members.insert(path, Member::Bytes(buf));
            continue;
        }
        let mut w = store.blob_writer()?;
        io::copy(&mut entry, &mut w).map_err(ArchiveError::Read)?;
        let expected = match &named_hex {
            Some(hex) => Some(Digest::from_hex(hex).map_err(|e| invalid(&path, e))?),
            None => None,
        };
        let written = w.written();
        let d = match w.commit(expected.as_ref(), Some(written)) {
            Ok(d) => d,
            Err(StoreError::DigestMismatch { expected, actual }) => {
                return Err(ArchiveError::NameMismatch {
                    path,
                    expected: expected.to_string(),
                    actual,
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !added.contains(&d) {
            added.push(d.clone());
        }
        members.insert(path, Member::Blob(d));
    }
    let mut ctx = LoadCtx {
        store,
        members,
        added,
    };
    if ctx.members.contains_key("manifest.json") {
        ctx.load_docker()
    } else if ctx.members.contains_key("index.json") {
        ctx.load_oci()
    } else {
        Err(ArchiveError::UnknownFormat)
    }
}

/// Small files we keep in memory rather than in the store.
fn is_metadata_name(path: &str) -> bool {
    path.ends_with(".json")
        || path.ends_with("/json")
        || path.ends_with("VERSION")
        || path == "oci-layout"
        || path == "repositories"
}

/// Normalizes a member path (`./a/../b` → `b`); refuses paths that leave the archive root.
fn clean_path(p: &Path) -> Option<String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let s = out.to_str()?.to_owned();
    (!s.is_empty()).then_some(s)
}

struct LoadCtx<'a> {
    store: &'a Store,
    members: HashMap<String, Member>,
    added: &'a mut Vec<Digest>,
}

impl LoadCtx<'_> {
    fn resolve(&self, path: &str) -> Option<&Member> {
        let mut p = path.trim_start_matches("./").to_owned();
        for _ in 0..16 {
            match self.members.get(&p)? {
                Member::Link(t) => p = t.clone(),
                m => return Some(m),
            }
        }
        None
    }

    /// Bytes of a small member, from memory or the store.
    fn small(&self, path: &str) -> Result<Vec<u8>, ArchiveError> {
        match self.resolve(path) {
            Some(Member::Bytes(b)) => Ok(b.clone()),
            Some(Member::Blob(d)) => Ok(self.store.read_small_blob(d)?),
            _ => Err(ArchiveError::Missing(path.to_owned())),
        }
    }

    /// A member as a stored blob (moving small in-memory ones into the store).
    fn blob(&mut self, path: &str) -> Result<Digest, ArchiveError> {
        let bytes = match self.resolve(path) {
            Some(Member::Blob(d)) => return Ok(d.clone()),
            Some(Member::Bytes(b)) => b.clone(),
            _ => return Err(ArchiveError::Missing(path.to_owned())),
        };
        self.put(&bytes, None)
    }

    fn put(&mut self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest, ArchiveError> {
        let d = Digest::of(bytes);
        self.store.put_bytes(bytes, expected)?;
        if !self.added.contains(&d) {
            self.added.push(d.clone());
        }
        Ok(d)
    }

    fn load_docker(&mut self) -> Result<Loaded, ArchiveError> {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&self.small("manifest.json")?)
                .map_err(|e| invalid("manifest.json", e))?;
        let mut out = vec![];
        for e in entries {
            let config_bytes = self.small(&e.config)?;
            // docker names the config after its digest; hold it to that.
            let stem = Path::new(&e.config)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let config = Digest::of(&config_bytes);
            if let Ok(named) = Digest::from_hex(stem.trim_start_matches("sha256:")) {
                if named != config {
                    return Err(ArchiveError::NameMismatch {
                        path: e.config.clone(),
                        expected: named.to_string(),
                        actual: config,
                    });
                }
            }
            self.put(&config_bytes, Some(&config))?;
            #[derive(Deserialize)]
            struct Cfg {
                rootfs: Option<RootFs>,
            }
            #[derive(Deserialize)]
            struct RootFs {
                #[serde(default)]
                diff_ids: Vec<String>,
            }
            let cfg: Cfg =
                serde_json::from_slice(&config_bytes).map_err(|err| invalid(&e.config, err))?;
            let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
            if diff_ids.len() != e.layers.len() {
                return Err(invalid(
                    &e.config,
                    format!("{} diff_ids for {} layers", diff_ids.len(), e.layers.len()),
                ));
            }
            let mut layers = vec![];
            let mut any_zstd = false;
            for (path, diff_id) in e.layers.iter().zip(&diff_ids) {
                let d = self.blob(path)?;
                let (kind, uncompressed) = diff_id_of(self.store, &d)?;
                if uncompressed.to_string() != *diff_id {
                    return Err(ArchiveError::DiffIdMismatch {
                        path: path.clone(),
                        expected: diff_id.clone(),
                        actual: uncompressed,
                    });
                }
                any_zstd |= kind == manifest::Compression::Zstd;
                let size = self.store.blob_size(&d).unwrap_or(0);
                layers.push((d, size, kind));
            }
            let (mt, cmt) = if any_zstd {
                (manifest::OCI_MANIFEST, manifest::OCI_CONFIG)
            } else {
                (manifest::DOCKER_MANIFEST, manifest::DOCKER_CONFIG)
            };
            let layer_json: Vec<_> = layers
                .iter()
                .map(|(d, size, kind)| {
                    let lmt = match (kind, any_zstd) {
                        (manifest::Compression::None, false) => manifest::DOCKER_LAYER_TAR,
                        (manifest::Compression::Gzip, false) => manifest::DOCKER_LAYER_GZIP,
                        (manifest::Compression::None, true) => manifest::OCI_LAYER_TAR,
                        (manifest::Compression::Gzip, true) => manifest::OCI_LAYER_GZIP,
                        (manifest::Compression::Zstd, _) => manifest::OCI_LAYER_ZSTD,
                    };
                    serde_json::json!({"mediaType": lmt, "size": size, "digest": d.to_string()})
                })
                .collect();
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": mt,
                "config": {"mediaType": cmt, "size": config_bytes.len(), "digest": config.to_string()},
                "layers": layer_json,
            });
            let mbytes = serde_json::to_vec(&m).map_err(|err| invalid("manifest", err))?;
            let md = self.put(&mbytes, None)?;
            let names = e.repo_tags.unwrap_or_default();
            out.extend(self.record(&md, None, &names)?);
        }
        Ok(Loaded { images: out })
    }

    fn load_oci(&mut self) -> Result<Loaded, ArchiveError> {
        let index_bytes = self.small("index.json")?;
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&index_bytes).map_err(|e| invalid("index.json", e))?;
        let mut out = vec![];
        for desc in index.manifests() {
            let d = Digest::try_from(desc.digest()).map_err(manifest::ManifestError::from)?;
            let bytes = self.small(&format!("blobs/sha256/{}", d.hex()))?;
            let (md, index_digest) =
                match Manifest::parse(&bytes, Some(desc.media_type().as_ref()))? {
                    Manifest::Image(_) => (d, None),
                    Manifest::Index(idx) => {
                        let host = Platform::host();
                        let entries = idx.entries();
                        let Some(inner) = host.select(&entries) else {
                            let have: Vec<_> = entries.iter().map(|(p, _)| p.to_string()).collect();
                            return Err(invalid(
                                "index.json",
                                format!("no image for {host} (has: {})", have.join(", ")),
                            ));
                        };
                        (
                            Digest::try_from(inner.digest())
                                .map_err(manifest::ManifestError::from)?,
                            Some(d),
                        )
                    }
                };
            self.check_image(&md)?;
            let ann = desc.annotations().clone().unwrap_or_default();
            let name = ann.get("io.containerd.image.name").cloned().or_else(|| {
                ann.get("org.opencontainers.image.ref.name")
                    .filter(|n| n.contains(':') || n.contains('/'))
                    .cloned()
            });
            out.extend(self.record(&md, index_digest, &name.into_iter().collect::<Vec<_>>())?);
        }
        Ok(Loaded { images: out })
    }

    /// Checks that a manifest and everything it references arrived intact.
    fn check_image(&self, md: &Digest) -> Result<(), ArchiveError> {
        let bytes = self
            .store
            .read_small_blob(md)
            .map_err(|_| ArchiveError::Missing(format!("manifest {md}")))?;
        let Manifest::Image(img) = Manifest::parse(&bytes, None)? else {
            return Err(manifest::ManifestError::NotAnImage(md.clone()).into());
        };
        let mut need = vec![(img.config_digest()?, img.config().size())];
        for (l, d) in img.layers().iter().zip(img.layer_digests()?) {
            need.push((d, l.size()));
        }
        for (d, size) in need {
            match self.store.blob_size(&d) {
                None => return Err(ArchiveError::Missing(format!("blob {d}"))),
                Some(s) if s != size => {
                    return Err(invalid(
                        format!("blob {d}"),
                        format!("size {s}, manifest says {size}"),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Builds (does not store) the records naming `md`; `load` stores them all at once.
    fn record(
        &mut self,
        md: &Digest,
        index_digest: Option<Digest>,
        names: &[String],
    ) -> Result<Vec<ImageRecord>, ArchiveError> {
        let mut out = vec![];
        if names.is_empty() {
            let rec = self
                .store
                .make_record(None, md, index_digest.clone(), None)?;
            out.push(rec);
        }
        for n in names {
            // `name:tag` without a registry means Docker Hub, as in `docker load`.
            let r: Reference = n.parse().map_err(|e| invalid("image name", e))?;
            let rec = self
                .store
                .make_record(Some(&r), md, index_digest.clone(), None)?;
            out.push(rec);
        }
        Ok(out)
    }
}

/// The layer's compression (from its bytes) and uncompressed digest.
fn diff_id_of(store: &Store, d: &Digest) -> Result<(manifest::Compression, Digest), ArchiveError> {
    let f = store.open_blob(d)?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let head = r.fill_buf().map_err(ArchiveError::Read)?;
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        manifest::Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        manifest::Compression::Zstd
    } else {
        manifest::Compression::None
    };
    if kind == manifest::Compression::None {
        return Ok((kind, d.clone()));
    }
    let mut h = Sha256::new();
    let res = match kind {
        manifest::Compression::Gzip => io::copy(&mut flate2::read::MultiGzDecoder::new(r), &mut h),
        _ => zstd::stream::read::Decoder::with_buffer(r).and_then(|mut z| io::copy(&mut z, &mut h)),
    };
    res.map_err(|e| invalid(format!("layer {d}"), format!("cannot decompress: {e}")))?;
    Ok((kind, Digest::from_hasher(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_stay_inside() {
        assert_eq!(
            clean_path(Path::new("./a/b.json")).as_deref(),
            Some("a/b.json")
        );
        assert_eq!(clean_path(Path::new("/abs/x")).as_deref(), Some("abs/x"));
        assert_eq!(clean_path(Path::new("a/../b")).as_deref(), Some("b"));
        assert_eq!(clean_path(Path::new("../etc/passwd")), None);
        assert_eq!(clean_path(Path::new(".")), None);
    }

    #[test]
    fn garbage_is_refused_and_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(load(&s, &b"definitely not a tar archive, just some bytes"[..]).is_err());
        // A valid tar that is no image archive.
        let mut b = tar::Builder::new(Vec::new());
        let data = vec![7u8; 5 << 20];
        let mut h = header("big.bin", data.len() as u64);
        b.append_data(&mut h, "big.bin", &data[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(matches!(
            load(&s, &bytes[..]),
            Err(ArchiveError::UnknownFormat)
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
