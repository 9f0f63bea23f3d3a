//! The content store: verified blobs by digest, the image index (names →
//! manifests), and the locks that let several `skiff` processes share it.
//!
//! Layout under the root (ARCHITECTURE.md, "Where things are stored"):
//! `blobs/sha256/<hex>`, `images/index.json`, `tmp/` for partial downloads.
//! A blob becomes visible only by rename after its digest and size checked out,
//! so a crash at any point leaves nothing half-written in `blobs/`.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::manifest::{self, Manifest};
use crate::reference::Reference;
use skiff_util::atomic;
use skiff_util::lock::{self, FileLock};

/// Manifests and configs are small; anything larger is refused (as registries do).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    #[error("blob {digest} is larger than {limit} bytes")]
    TooLarge { digest: Digest, limit: u64 },
    #[error("image index {path} is corrupt: {source}")]
    CorruptIndex {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One named (or dangling) image in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// Full reference with tag, e.g. `127.0.0.1:5000/test/busybox:latest`;
    /// `None` for an image that lost its name (dangling).
    pub name: Option<String>,
    /// The platform manifest.
    pub digest: Digest,
    /// The index (manifest list) it was selected from, if any: the digest a
    /// registry reports for the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    /// The image config digest: the image ID.
    pub config: Digest,
    /// Config + layers, compressed as stored.
    pub size: u64,
    /// `created` from the image config (RFC 3339), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Repository the blobs came from (`registry/repo`), for cross-repo mounts on push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ImageIndex {
    pub version: u32,
    pub images: Vec<ImageRecord>,
}

impl ImageIndex {
    pub fn find(&self, name: &str) -> Option<&ImageRecord> {
        self.images.iter().find(|r| r.name.as_deref() == Some(name))
    }

    /// Adds or re-points `record.name`; an image that loses its last name
    /// stays as a dangling record so that `prune` can decide about it.
    pub fn upsert(&mut self, record: ImageRecord) {
        if let Some(name) = &record.name {
            if let Some(i) = self
                .images
                .iter()
                .position(|r| r.name.as_ref() == Some(name))
            {
                let old = std::mem::replace(&mut self.images[i], record);
                self.keep_dangling(old);
                return;
            }
        } else if self.images.iter().any(|r| r.digest == record.digest) {
            return;
        }
        self.images.push(record);
    }

    /// Removes the record named `name`; returns it.
    pub fn remove_name(&mut self, name: &str) -> Option<ImageRecord> {
        let i = self
            .images
            .iter()
            .position(|r| r.name.as_deref() == Some(name))?;
        Some(self.images.remove(i))
    }

    fn keep_dangling(&mut self, old: ImageRecord) {
        if !self.images.iter().any(|r| r.digest == old.digest) {
            self.images.push(ImageRecord { name: None, ..old });
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes temp files
    /// that no live process is writing.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["blobs/sha256", "images", "tmp", "locks"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let store = Self {
            root: root.to_path_buf(),
        };
        store.clean_temp_files(false)?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Size of a stored blob, if present.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_path(d))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        match File::open(self.blob_path(d)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(d.clone()))
            }
            Err(e) => Err(io_err(&self.blob_path(d))(e)),
        }
    }

    /// Reads a small blob (manifest, config) and checks its digest again, so
    /// a damaged file on disk is noticed rather than trusted.
    pub fn read_small_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut f = self.open_blob(d)?;
        let mut buf = Vec::new();
        (&mut f)
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&self.blob_path(d)))?;
        if buf.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(StoreError::TooLarge {
                digest: d.clone(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let actual = Digest::of(&buf);
        if &actual != d {
            return Err(StoreError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    /// Stores `bytes` under their digest (which must equal `expected` if given).
    pub fn put_bytes(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let actual = Digest::of(bytes);
        if let Some(e) = expected {
            if e != &actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        if !self.has_blob(&actual) {
            let mut w = self.blob_writer()?;
            w.write_all(bytes).map_err(io_err(&w.path))?;
            w.commit(Some(&actual), Some(bytes.len() as u64))?;
        }
        Ok(actual)
    }

    /// A writer for a new blob whose digest is computed as it is written.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let path = atomic::temp_sibling(&self.tmp_dir().join("blob"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io_err(&path))?;
        // Held while writing so that cleanup in another process leaves it alone.
        lock::try_lock_file(&file).map_err(io_err(&path))?;
        Ok(BlobWriter {
            store: self.clone(),
            out: io::BufWriter::with_capacity(1 << 20, file),
            path,
            hasher: Sha256::new(),
            written: 0,
            committed: false,
        })
    }

    /// Opens the partial download of `digest` for resuming, waiting while
    /// another process downloads the same blob. `None` means the blob arrived
    /// in the meantime (another process finished it).
    pub fn partial(&self, digest: &Digest) -> Result<Option<Partial>, StoreError> {
        let path = self
            .tmp_dir()
            .join(format!("sha256-{}.partial", digest.hex()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_err(&path))?;
        lock::lock_file(&file).map_err(io_err(&path))?;
        if self.has_blob(digest) {
            // Another process finished it while we waited. The file at `path`
            // may already be someone else's new partial: leave it be.
            return Ok(None);
        }
        // A file with no links was committed or cleaned up by the previous
        // holder while we waited: start over with a fresh one.
        let meta = file.metadata().map_err(io_err(&path))?;
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return self.partial(digest);
        }
        Partial::resume(self.clone(), digest.clone(), path, file).map(Some)
    }

    // ---- image index ----

    fn index_path(&self) -> PathBuf {
        self.root.join("images/index.json")
    }

    pub fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|source| StoreError::CorruptIndex { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ImageIndex {
                version: 1,
                images: vec![],
            }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Read-modify-write of the index under its lock.
    pub fn update_index<T>(
        &self,
        f: impl FnOnce(&mut ImageIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.root.join("locks/index.lock");
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err(&lock_path))?;
        let mut idx = self.read_index()?;
        let out = f(&mut idx)?;
        idx.version = 1;
        let path = self.index_path();
        let json = serde_json::to_vec_pretty(&idx).map_err(|e| io_err(&path)(e.into()))?;
        atomic::write(&path, &json, 0o644).map_err(io_err(&path))?;
        Ok(out)
    }

    /// A shared lock held by writers of blobs (pull, load); `gc` takes it
    /// exclusively so it never deletes a blob that a running pull will reference.
    pub fn writer_lock(&self) -> Result<FileLock, StoreError> {
        let p = self.root.join("locks/gc.lock");
        FileLock::shared(&p).map_err(io_err(&p))
    }

    fn gc_lock(&self) -> Result<FileLock, StoreError> {
        let p = self.root.join("locks/gc.lock");
        FileLock::exclusive(&p).map_err(io_err(&p))
    }

    /// Records an image: stores nothing new, only names the manifest.
    pub fn record_image(&self, record: ImageRecord) -> Result<(), StoreError> {
        self.record_images(vec![record])
    }

    /// Names several images in one index update, after making the blob
    /// renames durable (the index must never name a blob a crash could lose).
    pub fn record_images(&self, records: Vec<ImageRecord>) -> Result<(), StoreError> {
        let blobs = self.root.join("blobs/sha256");
        atomic::sync_dir(&blobs).map_err(io_err(&blobs))?;
        self.update_index(|idx| {
            for r in records {
                idx.upsert(r);
            }
            Ok(())
        })
    }

    /// Deletes those of `candidates` that no image references (blobs a failed
    /// load brought in), under the gc lock so no concurrent writer is using them.
    /// The caller must not hold `writer_lock`.
    pub fn remove_unreferenced(&self, candidates: &[Digest]) -> Result<(), StoreError> {
        if candidates.is_empty() {
            return Ok(());
        }
        let _gc = self.gc_lock()?;
        let idx = self.read_index()?;
        let mut live = HashSet::new();
        for rec in &idx.images {
            live.extend(self.image_blobs(rec)?);
        }
        for d in candidates.iter().filter(|d| !live.contains(*d)) {
            let _ = std::fs::remove_file(self.blob_path(d));
        }
        Ok(())
    }

    /// Builds the record for a stored manifest (config and layers must be stored).
    pub fn make_record(
        &self,
        name: Option<&Reference>,
        digest: &Digest,
        index_digest: Option<Digest>,
        source: Option<String>,
    ) -> Result<ImageRecord, StoreError> {
        let m = Manifest::parse(&self.read_small_blob(digest)?, None)?;
        let Manifest::Image(img) = m else {
            return Err(manifest::ManifestError::NotAnImage(digest.clone()).into());
        };
        let config = img.config_digest()?;
        let config_bytes = self.read_small_blob(&config)?;
        let created = serde_json::from_slice::<serde_json::Value>(&config_bytes)
            .ok()
            .and_then(|v| v.get("created").and_then(|c| c.as_str()).map(str::to_owned));
        Ok(ImageRecord {
            name: name.map(|r| r.to_string()),
            digest: digest.clone(),
            index_digest,
            config,
            size: img.total_size(),
            created,
            source,
        })
    }

    /// Blobs that an image needs: its index (if stored), manifest, config, layers.
    pub fn image_blobs(&self, rec: &ImageRecord) -> Result<Vec<Digest>, StoreError> {
        let mut v = vec![rec.digest.clone(), rec.config.clone()];
        if let Some(i) = &rec.index_digest {
            v.push(i.clone());
        }
        // A missing manifest means a broken image whose layers cannot be known;
        // any other failure (EIO, EMFILE) must stop a sweep, not free layers.
        match self.read_small_blob(&rec.digest) {
            Ok(bytes) => {
                if let Manifest::Image(img) = Manifest::parse(&bytes, None)? {
                    v.extend(img.layer_digests()?);
                }
            }
            Err(StoreError::MissingBlob(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(v)
    }

    /// Removes names (and dangling records) and deletes the blobs that no
    /// remaining image needs. Returns (records removed, bytes freed).
    pub fn remove_images(&self, names: &[String]) -> Result<Vec<ImageRecord>, StoreError> {
        let _gc = self.gc_lock()?;
        let removed = self.update_index(|idx| {
            let mut removed = vec![];
            for n in names {
                if let Some(r) = idx.remove_name(n) {
                    removed.push(r);
                } else if let Some(i) = idx
                    .images
                    .iter()
                    .position(|r| r.name.is_none() && &r.digest.to_string() == n)
                {
                    removed.push(idx.images.remove(i));
                }
            }
            Ok(removed)
        })?;
        self.sweep()?;
        Ok(removed)
    }

    /// Deletes dangling images and every blob or partial download no image
    /// references. Returns (blobs deleted, bytes freed).
    pub fn prune(&self) -> Result<(usize, u64), StoreError> {
        let _gc = self.gc_lock()?;
        self.update_index(|idx| {
            idx.images.retain(|r| r.name.is_some());
            Ok(())
        })?;
        let swept = self.sweep()?;
        self.clean_temp_files(true)?;
        Ok(swept)
    }

    /// Mark and sweep over `blobs/`; the caller holds the gc lock.
    fn sweep(&self) -> Result<(usize, u64), StoreError> {
        let idx = self.read_index()?;
        let mut live = HashSet::new();
        for rec in &idx.images {
            live.extend(self.image_blobs(rec)?);
        }
        let dir = self.root.join("blobs/sha256");
        let mut count = 0;
        let mut bytes = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let keep = Digest::from_hex(&name.to_string_lossy())
                .map(|d| live.contains(&d))
                .unwrap_or(false);
            if !keep {
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
                count += 1;
            }
        }
        Ok((count, bytes))
    }

    /// Removes temp files no live process holds. Partial downloads are kept for
    /// resuming unless `partials` is set.
    fn clean_temp_files(&self, partials: bool) -> Result<(), StoreError> {
        let dir = self.tmp_dir();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let is_partial = path.extension().is_some_and(|e| e == "partial");
            if is_partial && !partials {
                continue;
            }
            if is_partial {
                // Only a download whose writer is gone can be taken exclusively.
                if let Ok(Some(_l)) = FileLock::try_exclusive(&path) {
                    let _ = std::fs::remove_file(&path);
                }
            } else if !pid_alive(&entry.file_name().to_string_lossy()) {
                // New blobs are named `.blob.tmp-<pid>-<n>`: a file exists before its
                // lock does, so liveness of the writer, not the lock, decides.
                // Directories too (a build's scratch space).
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir_all(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Atomic-write leftovers beside the index: pid-named, so check liveness.
        let images = self.root.join("images");
        if let Ok(rd) = std::fs::read_dir(&images) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(".tmp-") && !pid_alive(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Verifies every stored blob against its name; returns the bad ones.
    pub fn verify(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root.join("blobs/sha256");
        let mut bad = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let Ok(d) = Digest::from_hex(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let mut f = File::open(entry.path()).map_err(io_err(&entry.path()))?;
            let mut h = Sha256::new();
            io::copy(&mut f, &mut h).map_err(io_err(&entry.path()))?;
            if Digest::from_hasher(h) != d {
                bad.insert(d);
            }
        }
        Ok(bad.into_iter().collect())
    }
}

/// Whether the process named in a temp file name (`….tmp-<pid>-<n>`) runs.
/// Unparseable names count as dead: nothing of ours is named that way.
fn pid_alive(name: &str) -> bool {
    name.split(".tmp-")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

/// A new blob being written; it becomes visible only through `commit`.
pub struct BlobWriter {
    store: Store,
    out: io::BufWriter<File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    committed: bool,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks digest and size (when expected) and moves the blob into place.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Digest, StoreError> {
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(e) = expected {
            if *e != actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        if let Some(s) = size {
            if s != self.written {
                return Err(StoreError::SizeMismatch {
                    digest: actual,
                    expected: s,
                    actual: self.written,
                });
            }
        }
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))?;
        let dest = self.store.blob_path(&actual);
        std::fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        self.committed = true;
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A download in progress for a known digest, resumable across processes:
/// `tmp/sha256-<hex>.partial`, locked while in use.
pub struct Partial {
    store: Store,
    digest: Digest,
    path: PathBuf,
    /// Buffered: network chunks are small, and a syscall per chunk shows.
    file: io::BufWriter<File>,
    hasher: Sha256,
    len: u64,
    /// Committed or discarded: nothing left to clean up on drop.
    finished: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        // An abandoned download that got no bytes is not worth keeping.
        if !self.finished && self.len == 0 {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Partial {
    fn resume(
        store: Store,
        digest: Digest,
        path: PathBuf,
        mut file: File,
    ) -> Result<Self, StoreError> {
        // Re-hash what is already there; hashing is far cheaper than re-fetching.
        let mut hasher = Sha256::new();
        file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        let len = io::copy(&mut file, &mut hasher).map_err(io_err(&path))?;
        // Small enough that a killed pull keeps most of what it fetched.
        let file = io::BufWriter::with_capacity(256 << 10, file);
        Ok(Self {
            store,
            digest,
            path,
            file,
            hasher,
            len,
            finished: false,
        })
    }

    /// Bytes already downloaded.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Starts over (the server ignored the Range request, or the data was bad).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.file.flush().map_err(io_err(&self.path))?;
        self.file.get_ref().set_len(0).map_err(io_err(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err(&self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Whether the bytes so far hash to the expected digest.
    pub fn matches(&self) -> bool {
        Digest::from_hasher(self.hasher.clone()) == self.digest
    }

    /// Verifies and publishes the blob. On a digest mismatch the partial file
    /// is removed, so a retry starts clean.
    pub fn commit(mut self, size: Option<u64>) -> Result<(), StoreError> {
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        let check = if actual != self.digest {
            Err(StoreError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            })
        } else {
            match size {
                Some(s) if s != self.len => Err(StoreError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected: s,
                    actual: self.len,
                }),
                _ => Ok(()),
            }
        };
        self.finished = true;
        if let Err(e) = check {
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        self.file.flush().map_err(io_err(&self.path))?;
        self.file.get_ref().sync_all().map_err(io_err(&self.path))?;
        let dest = self.store.blob_path(&self.digest);
        std::fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        Ok(())
    }

    /// Gives up on the download and deletes what was fetched.
    pub fn discard(mut self) {
        self.finished = true;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_appear_only_when_verified() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_bytes(b"hello", None).unwrap();
        assert_eq!(s.read_small_blob(&d).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        assert!(matches!(
            s.put_bytes(b"hello", Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"abc").unwrap();
        assert!(w.commit(Some(&wrong), None).is_err());
        assert!(!s.has_blob(&wrong));
        assert_eq!(
            std::fs::read_dir(s.tmp_dir()).unwrap().count(),
            0,
            "failed writer left a temp file"
        );
    }

    #[test]
    fn partial_resumes_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"0123456789");
        let mut p = s.partial(&d).unwrap().unwrap();
        p.append(b"01234").unwrap();
        drop(p);
        let mut p = s.partial(&d).unwrap().unwrap();
        assert_eq!(p.len(), 5);
        p.append(b"56789").unwrap();
        p.commit(Some(10)).unwrap();
        assert!(s.has_blob(&d));
        assert!(s.partial(&d).unwrap().is_none());
        // A corrupt download is dropped entirely.
        let d2 = Digest::of(b"xyz");
        let mut p = s.partial(&d2).unwrap().unwrap();
        p.append(b"xyZ").unwrap();
        assert!(p.commit(None).is_err());
        assert!(!s.has_blob(&d2));
        assert_eq!(s.partial(&d2).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn stale_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        std::fs::write(s.tmp_dir().join(".blob.tmp-999999999-0"), b"junk").unwrap();
        std::fs::write(
            dir.path().join("images/.index.json.tmp-999999999-0"),
            b"junk",
        )
        .unwrap();
        let d = Digest::of(b"keep");
        s.partial(&d).unwrap().unwrap().append(b"ke").unwrap();
        Store::open(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(s.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the resumable partial stays: {left:?}");
        assert!(!dir
            .path()
            .join("images/.index.json.tmp-999999999-0")
            .exists());
        s.prune().unwrap();
        assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}
