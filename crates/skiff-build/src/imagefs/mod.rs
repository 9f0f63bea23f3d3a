//! An image's final file tree, read from its layer blobs in the store: what
//! the build executor needs from a base image (users, `COPY --from`) and
//! what `image check` inspects.
//!
//! Layers are read once, streaming, in order (plain, gzip or zstd, told from
//! the bytes by skiff-ext4's `decompress`), with OCI changeset semantics as
//! skiff-ext4 applies them when it writes the rootfs that actually runs:
//! `.wh.NAME` deletes NAME and everything under it, `.wh..wh..opq` hides
//! whatever lower layers had in its directory, parents of an entry are
//! resolved through symlinks already in the tree (so `bin/x` lands in
//! `/usr/bin/x` on a merged-/usr base) and created when missing, and a
//! non-directory replacing a directory takes its subtree with it. Only
//! metadata is held, plus the contents `keep` asks for and, for `check`, a
//! summary of each ELF file and the `#!` line of each script.
//!
//! Tar entries are read with the `tar` crate (skiff-ext4's reader is
//! private to it). That crate splits PAX records at `\n`, so a path record
//! that follows a binary xattr value containing that byte is lost; layers
//! written by docker, buildkit and skiff put `path` first.

mod extract;
mod stream;
#[cfg(test)]
mod tests;
mod user;
mod walk;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use skiff_oci::manifest::Manifest;
use skiff_oci::{Digest, Store};

pub use extract::{extract, extract_with, Extracted, ExtractedKind};
pub use user::{lookup_chown, lookup_user, user_files, UserError};

pub(crate) use stream::{here, Layer};
use stream::{RawEntry, RawKind};
use walk::{Lookup, WalkError};

/// Symlinks followed while resolving one path, as Linux allows.
pub const MAX_SYMLINKS: u32 = 40;
/// Bytes of a `#!` line that count (Linux reads 256 bytes of a script).
const SHEBANG_MAX: usize = 256;
/// ELF files larger than this are not summarized (their summary says so).
const MAX_ELF_SIZE: u64 = 1 << 30;

/// Why an image's file tree could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageFsError {
    /// The manifest or a layer blob could not be read from the store.
    #[error("reading the image from the store")]
    Store(#[from] skiff_oci::store::StoreError),
    /// The manifest is not valid.
    #[error("reading the image manifest")]
    Manifest(#[from] skiff_oci::manifest::ManifestError),
    /// The digest names an index (or something else), not one image.
    #[error("{0} is not an image manifest")]
    NotAnImage(String),
    /// A layer is not a (compressed) tar archive skiff can read.
    #[error("layer {layer} of the image")]
    Layer {
        /// 1-based position in the manifest.
        layer: usize,
        /// What the layer reader said.
        #[source]
        source: skiff_ext4::tree::LayerError,
    },
    /// Reading a layer's tar stream failed.
    #[error("reading layer {layer} of the image")]
    Read {
        /// 1-based position in the manifest.
        layer: usize,
        /// The I/O or tar error.
        #[source]
        source: std::io::Error,
    },
    /// An entry that cannot be applied to the tree (docker refuses these too).
    #[error("layer {layer}: {path}: {reason}")]
    Entry {
        /// 1-based position in the manifest.
        layer: usize,
        /// The entry's path in the image.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `extract`: the source is not in the image.
    #[error("{0}: no such file or directory in the image")]
    NotFound(String),
    /// `extract`: writing on the host failed.
    #[error("writing {path}")]
    Write {
        /// The host path.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One path of the final tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits and setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file (or a hard link's file); 0 otherwise.
    pub size: u64,
}

/// The type of a [`Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link and its target, as written (relative or absolute).
    Symlink(String),
    /// A hard link to the file that was at this path (normalized) when the
    /// link was made; it keeps that file's contents even if the path is
    /// later deleted or replaced.
    Hardlink(String),
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// What loading learned about a regular file's bytes, for `check`.
#[derive(Debug, Clone)]
pub(crate) enum Sniff {
    /// An ELF file's summary.
    Elf(Arc<skiff_elf::ElfInfo>),
    /// A file that starts like ELF but could not be read as one.
    BadElf(String),
    /// The `#!` line of a script (without `#!`, trimmed).
    Script(String),
}

/// Everything known about one path; `node` is the public part.
#[derive(Debug, Clone)]
struct Slot {
    node: Node,
    /// The 1-based layer that created or last wrote (or passed through) it:
    /// an opaque directory hides only what has a smaller number.
    layer: u32,
    /// Ordinal (over all layers' entries) of the entry whose data this file
    /// has: for a hard link, its target's. `extract` finds the bytes by it.
    origin: u64,
    mtime: i64,
    rdev: (u32, u32),
    content: Option<Arc<[u8]>>,
    sniff: Option<Sniff>,
}

/// An image's final file tree: normalized absolute paths (`/a/b`; the root
/// is `/`) to nodes, after all layers and whiteouts.
#[derive(Debug, Clone, Default)]
pub struct ImageFs {
    nodes: BTreeMap<String, Slot>,
}

/// `keep` and whether to summarize ELF files and scripts.
pub(crate) struct LoadOptions<'a> {
    pub keep: &'a dyn Fn(&str, u64) -> bool,
    pub sniff: bool,
}

/// Opens an image's layer blobs in manifest order.
pub(crate) fn layer_blobs(
    store: &Store,
    manifest: &Digest,
) -> Result<Vec<Layer<'static>>, ImageFsError> {
    let Manifest::Image(img) = Manifest::parse(&store.read_small_blob(manifest)?, None)? else {
        return Err(ImageFsError::NotAnImage(manifest.to_string()));
    };
    let mut readers = Vec::new();
    for d in img.layer_digests()? {
        let f = store.open_blob(&d)?;
        readers.push(Layer::Threaded(Box::new(
            std::io::BufReader::with_capacity(256 << 10, f),
        )));
    }
    Ok(readers)
}

/// Normalizes a path as the image sees it: absolute, no `.`, `..` resolved
/// lexically and never above `/`, no trailing or double slashes.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `dir` + `/` + `name` for a normalized `dir`.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of a normalized path (`/` for `/`).
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl ImageFs {
    /// Reads every layer of the image `manifest` once, streaming; `keep(path,
    /// size)` says which regular files' contents to hold in memory (e.g.
    /// [`user_files`] for [`lookup_user`]).
    pub fn load(
        store: &Store,
        manifest: &Digest,
        keep: &dyn Fn(&str, u64) -> bool,
    ) -> Result<ImageFs, ImageFsError> {
        let opts = LoadOptions { keep, sniff: false };
        Self::load_with(layer_blobs(store, manifest)?, &opts)
    }

    /// [`ImageFs::load`] from layer streams in order, each plain or
    /// compressed (told from its bytes).
    pub fn from_layer_readers(
        layers: Vec<Box<dyn Read + '_>>,
        keep: &dyn Fn(&str, u64) -> bool,
    ) -> Result<ImageFs, ImageFsError> {
        Self::load_with(stream::here(layers), &LoadOptions { keep, sniff: false })
    }

    pub(crate) fn load_with(
        layers: Vec<Layer<'_>>,
        opts: &LoadOptions<'_>,
    ) -> Result<ImageFs, ImageFsError> {
        let mut fs = ImageFs::default();
        fs.nodes.insert("/".into(), Slot::dir(0o755, 0, 0, 0, 0));
        let mut buf = Vec::new();
        stream::for_each_entry(layers, &mut |e, data| fs.apply(e, data, opts, &mut buf))?;
        Ok(fs)
    }

    /// The node at `path` (normalized first; symlinks are not followed).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.slot(path).map(|s| &s.node)
    }

    /// The contents of the file at `path`, if `keep` asked for them
    /// (symlinks are not followed: [`ImageFs::resolve`] first).
    pub fn content(&self, path: &str) -> Option<&[u8]> {
        self.slot(path).and_then(|s| s.content.as_deref())
    }

    /// The modification time of `path` (seconds since 1970).
    pub fn mtime(&self, path: &str) -> Option<i64> {
        self.slot(path).map(|s| s.mtime)
    }

    /// Follows symlinks inside the image: absolute targets are relative to
    /// the image root and `..` never goes above `/`; at most
    /// [`MAX_SYMLINKS`] links. `follow_last` also follows the final
    /// component. A missing final component (or missing directories on the
    /// way, which a build would create) is kept as written; `None` when a
    /// component on the way is a file, or on a symlink loop.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        walk::walk(self, path, follow_last).ok().map(|w| w.path)
    }

    /// Every path in the tree and its node, in path order (a directory
    /// before what it holds).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, s)| (p.as_str(), &s.node))
    }

    /// Number of paths in the tree, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree holds only its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// What loading learned about the file at `path` (with `sniff` on).
    pub(crate) fn sniff(&self, path: &str) -> Option<&Sniff> {
        self.slot(path).and_then(|s| s.sniff.as_ref())
    }

    /// Every summarized file and what was learned, in path order.
    pub(crate) fn sniffed(&self) -> impl Iterator<Item = (&str, &Node, &Sniff)> {
        self.nodes
            .iter()
            .filter_map(|(p, s)| s.sniff.as_ref().map(|x| (p.as_str(), &s.node, x)))
    }

    /// The entries of the directory `dir` (normalized): names and nodes.
    pub(crate) fn children<'a>(
        &'a self,
        dir: &str,
    ) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let skip = if dir == "/" { 1 } else { dir.len() + 1 };
        self.below(dir)
            .filter(move |(p, _)| !p[skip..].contains('/'))
            .map(move |(p, s)| (&p[skip..], &s.node))
    }

    /// Puts a node (and what sniffing would have said) at `path`, parents
    /// not checked: for tests of what reads the tree.
    #[cfg(test)]
    pub(crate) fn insert_for_test(
        &mut self,
        path: &str,
        kind: NodeKind,
        mode: u32,
        sniff: Option<Sniff>,
    ) {
        let mut slot = Slot::dir(mode, 0, 0, 0, 1);
        slot.node.kind = kind;
        slot.sniff = sniff;
        self.nodes.insert(normalize(path), slot);
    }

    /// Sets the kept contents of `path`: for tests.
    #[cfg(test)]
    pub(crate) fn set_content_for_test(&mut self, path: &str, content: &[u8]) {
        if let Some(s) = self.nodes.get_mut(&normalize(path)) {
            s.content = Some(Arc::from(content));
        }
    }

    fn slot(&self, path: &str) -> Option<&Slot> {
        match self.nodes.get(path) {
            Some(s) => Some(s),
            None => self.nodes.get(&normalize(path)),
        }
    }

    /// Paths strictly below `dir` (normalized), in order.
    fn below<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Slot)> + 'a {
        let (lo, hi) = if dir == "/" {
            ("/".to_owned(), "0".to_owned())
        } else {
            (format!("{dir}/"), format!("{dir}0"))
        };
        self.nodes
            .range(lo..hi)
            .filter(move |(p, _)| p.as_str() != "/")
    }

    fn remove_tree(&mut self, path: &str) {
        let doomed: Vec<String> = self.below(path).map(|(p, _)| p.clone()).collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
        if path != "/" {
            self.nodes.remove(path);
        }
    }

    /// Applies one tar entry (its data unread in `data`).
    fn apply(
        &mut self,
        e: &RawEntry,
        data: &mut dyn Read,
        opts: &LoadOptions<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<(), ImageFsError> {
        let bad = |reason: String| ImageFsError::Entry {
            layer: e.layer as usize,
            path: e.path.clone(),
            reason,
        };
        if e.path == "/" {
            if e.kind == RawKind::Dir {
                let root = self
                    .nodes
                    .entry("/".into())
                    .or_insert(Slot::dir(0, 0, 0, 0, 0));
                root.node.mode = e.mode;
                (root.node.uid, root.node.gid, root.mtime) = (e.uid, e.gid, e.mtime);
            }
            return Ok(());
        }
        let name = &e.path[e.path.rfind('/').map_or(0, |i| i + 1)..];
        let dir = self
            .make_parents(parent(&e.path), e)
            .map_err(|w| bad(w.to_string()))?;
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                let doomed: Vec<String> = self
                    .below(&dir)
                    .filter(|(_, s)| s.layer < e.layer)
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in doomed {
                    self.nodes.remove(&p);
                }
            } else if hidden.starts_with(".wh.") {
                // Other `.wh..wh.` names are aufs bookkeeping, not files.
            } else if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(bad("invalid whiteout name (it names no file)".into()));
            } else {
                self.remove_tree(&join(&dir, hidden));
            }
            return Ok(());
        }
        let path = join(&dir, name);
        let mut slot = match e.kind {
            RawKind::Dir => Slot::dir(e.mode, e.uid, e.gid, e.mtime, e.layer),
            RawKind::Hardlink => {
                let target = e.link.as_deref().unwrap_or_default();
                let t = walk::walk(self, target, false)
                    .ok()
                    .map(|w| w.path)
                    .and_then(|p| self.nodes.get(&p).map(|s| (p, s)))
                    .filter(|(_, s)| matches!(s.node.kind, NodeKind::File | NodeKind::Hardlink(_)));
                let Some((tpath, ts)) = t else {
                    return Err(bad(format!(
                        "hard link target {target} is not a file in the image"
                    )));
                };
                let mut s = ts.clone();
                s.node.kind = NodeKind::Hardlink(tpath);
                s.layer = e.layer;
                s
            }
            _ => {
                let kind = match e.kind {
                    RawKind::File => NodeKind::File,
                    RawKind::Symlink => NodeKind::Symlink(e.link.clone().unwrap_or_default()),
                    RawKind::Char => NodeKind::Char,
                    RawKind::Block => NodeKind::Block,
                    RawKind::Fifo => NodeKind::Fifo,
                    RawKind::Dir | RawKind::Hardlink => unreachable!("handled above"),
                };
                let size = if e.kind == RawKind::File { e.size } else { 0 };
                let mut s = Slot {
                    node: Node {
                        kind,
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                        size,
                    },
                    layer: e.layer,
                    origin: e.ordinal,
                    mtime: e.mtime,
                    rdev: e.rdev,
                    content: None,
                    sniff: None,
                };
                if e.kind == RawKind::File {
                    let keep = (opts.keep)(&path, e.size);
                    read_file(data, e.size, keep, opts.sniff, buf, &mut s).map_err(|source| {
                        ImageFsError::Read {
                            layer: e.layer as usize,
                            source,
                        }
                    })?;
                }
                s
            }
        };
        match self.nodes.get_mut(&path) {
            Some(old) if matches!(old.node.kind, NodeKind::Dir) => {
                if matches!(slot.node.kind, NodeKind::Dir) {
                    // A directory entry over a directory changes its metadata only.
                    slot.origin = e.ordinal;
                    *old = slot;
                    return Ok(());
                }
                self.remove_tree(&path);
            }
            _ => {}
        }
        if matches!(slot.node.kind, NodeKind::Dir) {
            slot.origin = e.ordinal;
        }
        self.nodes.insert(path, slot);
        Ok(())
    }

    /// Resolves the directory an entry goes into, creating missing ones
    /// (0o755, root-owned, the entry's mtime) and marking the ones passed
    /// through as this layer's.
    fn make_parents(&mut self, dir: &str, e: &RawEntry) -> Result<String, WalkError> {
        let w = walk::walk(self, dir, true)?;
        if let Some(Lookup::Other) = w.last.as_ref() {
            return Err(WalkError::NotADirectory(w.path));
        }
        for p in w.missing.iter().chain(std::iter::once(&w.path)) {
            match self.nodes.get_mut(p) {
                Some(s) => s.layer = e.layer,
                None => {
                    self.nodes
                        .insert(p.clone(), Slot::dir(0o755, 0, 0, e.mtime, e.layer));
                }
            }
        }
        for p in &w.passed {
            if let Some(s) = self.nodes.get_mut(p) {
                s.layer = e.layer;
            }
        }
        Ok(w.path)
    }
}

impl Slot {
    fn dir(mode: u32, uid: u32, gid: u32, mtime: i64, layer: u32) -> Slot {
        Slot {
            node: Node {
                kind: NodeKind::Dir,
                mode,
                uid,
                gid,
                size: 0,
            },
            layer,
            origin: 0,
            mtime,
            rdev: (0, 0),
            content: None,
            sniff: None,
        }
    }
}

/// Reads what is wanted of a regular file's data: the whole file when it is
/// kept or is ELF (summaries need the section headers at its end), else only
/// the first bytes, to tell ELF and scripts apart.
fn read_file(
    data: &mut dyn Read,
    size: u64,
    keep: bool,
    sniff: bool,
    buf: &mut Vec<u8>,
    slot: &mut Slot,
) -> std::io::Result<()> {
    if !keep && !sniff {
        return Ok(());
    }
    buf.clear();
    data.take(SHEBANG_MAX as u64).read_to_end(buf)?;
    let elf = sniff && skiff_elf::is_elf(buf);
    if keep || (elf && size <= MAX_ELF_SIZE) {
        buf.reserve(size.saturating_sub(buf.len() as u64).min(MAX_ELF_SIZE) as usize);
        data.read_to_end(buf)?;
    }
    if sniff {
        slot.sniff = if elf && size > MAX_ELF_SIZE {
            Some(Sniff::BadElf("too large to inspect".into()))
        } else if elf {
            Some(match skiff_elf::inspect(buf) {
                Ok(info) => Sniff::Elf(Arc::new(info)),
                Err(e) => Sniff::BadElf(e.to_string()),
            })
        } else if let Some(rest) = buf.strip_prefix(b"#!") {
            let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
            Some(Sniff::Script(
                String::from_utf8_lossy(line).trim().to_owned(),
            ))
        } else {
            None
        };
    }
    if keep {
        slot.content = Some(Arc::from(buf.as_slice()));
    }
    Ok(())
}
