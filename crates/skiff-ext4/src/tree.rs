//! The in-memory filesystem tree that layers are applied to, with OCI
//! changeset semantics (whiteouts, opaque directories, hard links), before
//! the writer lays it out as ext4. File contents are not held here: they go
//! to the [`DataSink`] as entries are read, and nodes keep only their extents.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Read};

use crate::layer::{self, show_path, EntryKind, TarEntry, TarReader, MAX_FILE_SIZE};
use crate::types::{file_type, DataSink, FileData, Meta, Timestamp};

/// Index of a node in the tree's arena. The root is 0. Ids are never reused,
/// and a directory's id is always smaller than its subdirectories' ids (a
/// hard-linked file may be older than a directory holding one of its names).
pub type NodeId = usize;

/// ext4's limit on one name (directory entry).
pub const MAX_NAME_LEN: usize = 255;
/// The longest symlink target accepted (Linux's `PATH_MAX` - 1).
pub const MAX_SYMLINK_LEN: usize = 4095;
/// ext4's limit on the hard links to one non-directory inode.
pub const MAX_LINKS: u32 = 65000;
/// Symlinks followed while resolving one path, as Linux allows.
const MAX_SYMLINK_HOPS: u32 = 40;
/// Largest device numbers ext4 can store (Linux's 12-bit major, 20-bit minor).
pub const MAX_DEV_MAJOR: u32 = 0xfff;
pub const MAX_DEV_MINOR: u32 = 0xf_ffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Names are single components (no `/`, not `.`/`..`, 1 to 255 bytes).
    Dir {
        children: BTreeMap<Vec<u8>, NodeId>,
    },
    File {
        data: FileData,
    },
    Symlink {
        target: Vec<u8>,
    },
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub meta: Meta,
    /// Directory entries that reference this node (the root counts 1).
    /// Above 1 only for hard-linked non-directories.
    pub links: u32,
    /// The layer (1-based count of `apply_layer` calls; 0 for the initial
    /// root) that created this node or last wrote it with an entry.
    layer: u32,
}

impl Node {
    /// The ext4 directory-entry file type (`types::file_type`).
    pub fn file_type(&self) -> u8 {
        match self.kind {
            NodeKind::Dir { .. } => file_type::DIR,
            NodeKind::File { .. } => file_type::REGULAR,
            NodeKind::Symlink { .. } => file_type::SYMLINK,
            NodeKind::CharDev { .. } => file_type::CHARDEV,
            NodeKind::BlockDev { .. } => file_type::BLOCKDEV,
            NodeKind::Fifo => file_type::FIFO,
            NodeKind::Socket => file_type::SOCKET,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }

    /// The entries of a directory (`None` for other kinds).
    pub fn children(&self) -> Option<&BTreeMap<Vec<u8>, NodeId>> {
        match &self.kind {
            NodeKind::Dir { children } => Some(children),
            _ => None,
        }
    }
}

/// What one layer contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries read (extension headers not counted).
    pub entries: u64,
    /// Bytes of regular-file content (logical sizes, holes included).
    pub bytes: u64,
}

/// Why a layer could not be applied. Messages are one line and name the
/// entry's path where there is one.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading layer: {0}")]
    Io(#[source] io::Error),
    #[error("layer is compressed with {0}, which is not supported (use gzip, zstd or none)")]
    UnsupportedCompression(&'static str),
    #[error("layer is not a tar archive (nor a gzip- or zstd-compressed one)")]
    NotTar,
    #[error("corrupt tar archive at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("truncated tar archive: {0}")]
    Truncated(String),
    #[error("{path}: {reason}")]
    Entry { path: String, reason: String },
    #[error("{path}: unsupported tar entry type {kind:?}")]
    UnsupportedType { path: String, kind: char },
    #[error("{path}: a name of {len} bytes is longer than ext4's limit of 255")]
    NameTooLong { path: String, len: usize },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    #[error("{path}: {component} is not a directory")]
    NotADirectory { path: String, component: String },
    #[error("{path}: hard link target {target} does not exist")]
    LinkTargetMissing { path: String, target: String },
    #[error("{path}: hard link target {target} is a directory")]
    LinkTargetIsDir { path: String, target: String },
    #[error("{path}: too many hard links to {target} (ext4 allows {MAX_LINKS})")]
    TooManyLinks { path: String, target: String },
    #[error("{path}: file of {size} bytes is larger than ext4 allows")]
    FileTooLarge { path: String, size: u64 },
    #[error("{path}: reading file data: {source}")]
    ReadData {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: writing file data: {source}")]
    WriteData {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The filesystem tree. See the module docs.
#[derive(Debug)]
pub struct Tree {
    /// Arena; a removed node leaves `None` (ids are not reused, which keeps
    /// parents before children in id order).
    nodes: Vec<Option<Node>>,
    live: usize,
    /// Layers applied so far; the current layer while applying.
    layer: u32,
    /// Entries `(dir, name)` created in the current layer as hard links to
    /// nodes from earlier layers (for opaque directories: such an entry is
    /// new although its node is not).
    fresh_links: HashSet<(NodeId, Vec<u8>)>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// An empty tree: a root directory with mode 0o755, owned by 0:0, all
    /// times 0.
    pub fn new() -> Self {
        let root = Node {
            kind: NodeKind::Dir {
                children: BTreeMap::new(),
            },
            meta: Meta {
                mode: 0o755,
                ..Meta::default()
            },
            links: 1,
            layer: 0,
        };
        Tree {
            nodes: vec![Some(root)],
            live: 1,
            layer: 0,
            fresh_links: HashSet::new(),
        }
    }

    pub fn root(&self) -> NodeId {
        0
    }

    /// A live node. Panics if `id` was removed (a caller bug: ids reachable
    /// from the root are always live).
    pub fn node(&self, id: NodeId) -> &Node {
        self.get(id).expect("skiff-ext4: NodeId of a removed node")
    }

    /// A node, or `None` if it was removed or never existed.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id).and_then(|n| n.as_ref())
    }

    /// Live nodes (all reachable from the root; a hard-linked node counts
    /// once), including the root.
    pub fn live_nodes(&self) -> usize {
        self.live
    }

    /// Every live node once, in increasing id order (so every directory
    /// comes before its subdirectories).
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(id, n)| n.as_ref().map(|n| (id, n)))
    }

    /// Layers applied so far.
    pub fn layers_applied(&self) -> u32 {
        self.layer
    }

    /// Looks a path up the way layer entries are resolved: `..` clamped at
    /// the root, symlinks in the middle followed inside the tree, the last
    /// component not followed.
    pub fn lookup(&self, path: &[u8]) -> Option<NodeId> {
        let comps = clean_path(path);
        let Some((name, parents)) = comps.split_last() else {
            return Some(self.root());
        };
        let dir = self.find_dir(parents).ok()??;
        self.child(dir, name)
    }

    /// Applies one layer: a tar archive, plain or compressed with gzip or
    /// zstd (detected from its first bytes). File contents go to `sink`;
    /// `progress` gets the running count of layer bytes read, every MiB and
    /// at the end.
    ///
    /// On error the tree stays consistent (all invariants hold) but holds
    /// part of the layer; the image should be abandoned.
    pub fn apply_layer(
        &mut self,
        layer: &mut dyn Read,
        sink: &mut dyn DataSink,
        progress: &mut dyn FnMut(u64),
    ) -> Result<LayerStats, LayerError> {
        self.layer += 1;
        self.fresh_links.clear();
        let count = Cell::new(0u64);
        let result = {
            let counting = layer::CountingReader::new(layer, &count, &mut *progress);
            let result = layer::decompress(counting);
            match result {
                Err(e) => Err(e),
                Ok((compression, stream)) => {
                    let mut tr = TarReader::new(stream);
                    match self.apply_entries(&mut tr, sink) {
                        Ok(stats) => {
                            let mut stream = tr.into_inner();
                            layer::drain(&mut stream).map(|()| stats)
                        }
                        // Only a first block that is no tar header at all: a
                        // valid one with, say, a bad PAX record is a corrupt
                        // tar archive.
                        Err(LayerError::Corrupt { offset: 0, reason })
                            if compression == layer::Compression::None
                                && reason == layer::BAD_CHECKSUM =>
                        {
                            Err(LayerError::NotTar)
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        progress(count.get());
        self.fresh_links.clear();
        result
    }

    fn apply_entries<R: Read>(
        &mut self,
        tr: &mut TarReader<R>,
        sink: &mut dyn DataSink,
    ) -> Result<LayerStats, LayerError> {
        let mut stats = LayerStats::default();
        while let Some(entry) = tr.next_entry()? {
            stats.entries += 1;
            self.apply_entry(&entry, tr, sink, &mut stats)?;
        }
        Ok(stats)
    }

    fn apply_entry<R: Read>(
        &mut self,
        e: &TarEntry,
        tr: &mut TarReader<R>,
        sink: &mut dyn DataSink,
        stats: &mut LayerStats,
    ) -> Result<(), LayerError> {
        let path = || show_path(&e.path);
        if let EntryKind::Other(t) = e.kind {
            return Err(LayerError::UnsupportedType {
                path: path(),
                kind: t as char,
            });
        }
        let comps = clean_path(&e.path);
        let Some((&name, parents)) = comps.split_last() else {
            // The entry is the root itself.
            if e.kind == EntryKind::Dir {
                let root = self.node_mut(0);
                root.meta = e.meta.clone();
            }
            return Ok(());
        };

        if let Some(target) = name.strip_prefix(b".wh.") {
            if matches!(target, b"" | b"." | b"..") {
                // Names no file of the directory: docker would delete the
                // directory itself (or its parent), containerd refuses.
                return Err(LayerError::Entry {
                    path: path(),
                    reason: "invalid whiteout name (it names no file)".into(),
                });
            }
            let Some(dir) = self.find_dir_or_loop(parents, &path)? else {
                return Ok(()); // nothing there to delete
            };
            if name == b".wh..wh..opq" {
                self.make_opaque(dir, sink);
            } else if target.starts_with(b".wh.") {
                // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): ignored.
            } else {
                self.unlink(dir, target, sink);
            }
            return Ok(());
        }

        if let Some(c) = comps.iter().find(|c| c.len() > MAX_NAME_LEN) {
            return Err(LayerError::NameTooLong {
                path: path(),
                len: c.len(),
            });
        }

        match e.kind {
            EntryKind::Dir => {
                let dir = self.make_parents(parents, e.meta.mtime, &path)?;
                if let Some(id) = self.child(dir, name) {
                    if self.node(id).is_dir() {
                        let layer = self.layer;
                        let node = self.node_mut(id);
                        node.meta = e.meta.clone();
                        node.layer = layer;
                        return Ok(());
                    }
                }
                self.unlink(dir, name, sink);
                let kind = NodeKind::Dir {
                    children: BTreeMap::new(),
                };
                self.insert(dir, name, kind, e.meta.clone());
            }
            EntryKind::File => {
                if e.size > MAX_FILE_SIZE {
                    return Err(LayerError::FileTooLarge {
                        path: path(),
                        size: e.size,
                    });
                }
                let dir = self.make_parents(parents, e.meta.mtime, &path)?;
                self.unlink(dir, name, sink);
                let mut reader = tr.data(e);
                let data = match sink.write_data(&mut reader, e.size) {
                    Ok(data) => data,
                    Err(source) if reader.input_failed => {
                        return Err(if source.kind() == io::ErrorKind::UnexpectedEof {
                            LayerError::Truncated(format!("{}: {source}", path()))
                        } else {
                            LayerError::ReadData {
                                path: path(),
                                source,
                            }
                        });
                    }
                    Err(source) => {
                        return Err(LayerError::WriteData {
                            path: path(),
                            source,
                        })
                    }
                };
                if reader.pos != e.size || data.size != e.size {
                    sink.free(&data);
                    return Err(LayerError::WriteData {
                        path: path(),
                        source: io::Error::other(format!(
                            "the data sink took {} of {} bytes and recorded {}",
                            reader.pos, e.size, data.size
                        )),
                    });
                }
                stats.bytes += e.size;
                self.insert(dir, name, NodeKind::File { data }, e.meta.clone());
            }
            EntryKind::Symlink => {
                if e.link.is_empty() || e.link.len() > MAX_SYMLINK_LEN {
                    return Err(LayerError::Entry {
                        path: path(),
                        reason: format!(
                            "symlink target of {} bytes (must be 1 to {MAX_SYMLINK_LEN})",
                            e.link.len()
                        ),
                    });
                }
                let dir = self.make_parents(parents, e.meta.mtime, &path)?;
                self.unlink(dir, name, sink);
                let kind = NodeKind::Symlink {
                    target: e.link.clone(),
                };
                self.insert(dir, name, kind, e.meta.clone());
            }
            EntryKind::CharDev | EntryKind::BlockDev => {
                let (major, minor) = (e.dev_major, e.dev_minor);
                if major > MAX_DEV_MAJOR || minor > MAX_DEV_MINOR {
                    return Err(LayerError::Entry {
                        path: path(),
                        reason: format!("device number {major}:{minor} is out of range"),
                    });
                }
                let dir = self.make_parents(parents, e.meta.mtime, &path)?;
                self.unlink(dir, name, sink);
                let kind = if e.kind == EntryKind::CharDev {
                    NodeKind::CharDev { major, minor }
                } else {
                    NodeKind::BlockDev { major, minor }
                };
                self.insert(dir, name, kind, e.meta.clone());
            }
            EntryKind::Fifo => {
                let dir = self.make_parents(parents, e.meta.mtime, &path)?;
                self.unlink(dir, name, sink);
                self.insert(dir, name, NodeKind::Fifo, e.meta.clone());
            }
            EntryKind::Hardlink => self.hard_link(e, parents, name, sink)?,
            EntryKind::Other(_) => unreachable!("handled above"),
        }
        Ok(())
    }

    fn hard_link(
        &mut self,
        e: &TarEntry,
        parents: &[&[u8]],
        name: &[u8],
        sink: &mut dyn DataSink,
    ) -> Result<(), LayerError> {
        let path = || show_path(&e.path);
        let target = || show_path(&e.link);
        let missing = || LayerError::LinkTargetMissing {
            path: path(),
            target: target(),
        };
        let tcomps = clean_path(&e.link);
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(LayerError::LinkTargetIsDir {
                path: path(),
                target: target(),
            });
        };
        let tdir = self
            .find_dir_or_loop(tparents, &target)?
            .ok_or_else(missing)?;
        let tid = self.child(tdir, tname).ok_or_else(missing)?;
        if self.node(tid).is_dir() {
            return Err(LayerError::LinkTargetIsDir {
                path: path(),
                target: target(),
            });
        }
        let dir = self.make_parents(parents, e.meta.mtime, &path)?;
        if self.child(dir, name) == Some(tid) {
            self.mark_fresh_link(dir, name, tid);
            return Ok(()); // already that very node
        }
        if self.node(tid).links >= MAX_LINKS {
            return Err(LayerError::TooManyLinks {
                path: path(),
                target: target(),
            });
        }
        // Count the new link before removing what is at `name`: that may be
        // a directory holding the target's only other link.
        self.node_mut(tid).links += 1;
        self.unlink(dir, name, sink);
        self.dir_mut(dir).insert(name.to_vec(), tid);
        self.mark_fresh_link(dir, name, tid);
        Ok(())
    }

    fn mark_fresh_link(&mut self, dir: NodeId, name: &[u8], id: NodeId) {
        if self.node(id).layer != self.layer {
            self.fresh_links.insert((dir, name.to_vec()));
        }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id]
            .as_mut()
            .expect("skiff-ext4: NodeId of a removed node")
    }

    fn dir_mut(&mut self, id: NodeId) -> &mut BTreeMap<Vec<u8>, NodeId> {
        match &mut self.node_mut(id).kind {
            NodeKind::Dir { children } => children,
            _ => unreachable!("skiff-ext4: not a directory"),
        }
    }

    fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        self.node(dir).children()?.get(name).copied()
    }

    fn insert(&mut self, dir: NodeId, name: &[u8], kind: NodeKind, meta: Meta) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Some(Node {
            kind,
            meta,
            links: 1,
            layer: self.layer,
        }));
        self.live += 1;
        let old = self.dir_mut(dir).insert(name.to_vec(), id);
        debug_assert!(old.is_none(), "insert over an existing entry");
        id
    }

    /// Removes `dir/name` if present; frees what loses its last link.
    fn unlink(&mut self, dir: NodeId, name: &[u8], sink: &mut dyn DataSink) {
        let Some(id) = self.dir_mut(dir).remove(name) else {
            return;
        };
        if !self.fresh_links.is_empty() {
            self.fresh_links.remove(&(dir, name.to_vec()));
        }
        self.release(id, sink);
    }

    /// Drops one link to `id`, destroying nodes (recursively, without
    /// recursion) whose last link goes.
    fn release(&mut self, id: NodeId, sink: &mut dyn DataSink) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let node = self.node_mut(id);
            node.links -= 1;
            if node.links > 0 {
                continue;
            }
            let node = self.nodes[id].take().expect("live node");
            self.live -= 1;
            match node.kind {
                NodeKind::File { data } => sink.free(&data),
                NodeKind::Dir { children } => {
                    for (name, child) in children {
                        if !self.fresh_links.is_empty() {
                            self.fresh_links.remove(&(id, name));
                        }
                        stack.push(child);
                    }
                }
                _ => {}
            }
        }
    }

    /// `.wh..wh..opq` in `dir`: removes everything below `dir` that no entry
    /// of the current layer wrote (like containerd, recursively: an old
    /// subdirectory that this layer wrote into keeps only the new entries).
    fn make_opaque(&mut self, dir: NodeId, sink: &mut dyn DataSink) {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let entries: Vec<(Vec<u8>, NodeId)> = match self.node(d).children() {
                Some(c) => c.iter().map(|(n, &id)| (n.clone(), id)).collect(),
                None => continue,
            };
            for (name, id) in entries {
                let node = self.node(id);
                let current =
                    node.layer == self.layer || self.fresh_links.contains(&(d, name.clone()));
                if !current {
                    self.unlink(d, &name, sink);
                } else if node.is_dir() {
                    stack.push(id);
                }
            }
        }
    }

    /// Resolves the directory holding an entry without creating anything:
    /// `Ok(None)` if a component is missing or not a directory.
    fn find_dir(&self, comps: &[&[u8]]) -> Result<Option<NodeId>, Walk> {
        let mut walk = Walker::new(comps);
        while let Some(c) = walk.next_component() {
            let cur = walk.current();
            match self.child(cur, &c) {
                None => return Ok(None),
                Some(id) => match &self.node(id).kind {
                    NodeKind::Dir { .. } => walk.enter(id),
                    NodeKind::Symlink { target } => walk.follow(target)?,
                    _ => return Ok(None),
                },
            }
        }
        Ok(Some(walk.current()))
    }

    fn find_dir_or_loop(
        &self,
        comps: &[&[u8]],
        path: &dyn Fn() -> String,
    ) -> Result<Option<NodeId>, LayerError> {
        self.find_dir(comps)
            .map_err(|Walk::Loop| LayerError::SymlinkLoop { path: path() })
    }

    /// Resolves the directory that will hold an entry, creating missing
    /// directories (0o755, 0:0, the entry's mtime) and marking the ones
    /// passed through as written by this layer.
    fn make_parents(
        &mut self,
        comps: &[&[u8]],
        mtime: Timestamp,
        path: &dyn Fn() -> String,
    ) -> Result<NodeId, LayerError> {
        let mut walk = Walker::new(comps);
        while let Some(c) = walk.next_component() {
            let cur = walk.current();
            match self.child(cur, &c) {
                None => {
                    if c.len() > MAX_NAME_LEN {
                        return Err(LayerError::NameTooLong {
                            path: path(),
                            len: c.len(),
                        });
                    }
                    let meta = Meta {
                        mode: 0o755,
                        mtime,
                        atime: mtime,
                        ctime: mtime,
                        ..Meta::default()
                    };
                    let kind = NodeKind::Dir {
                        children: BTreeMap::new(),
                    };
                    let id = self.insert(cur, &c, kind, meta);
                    walk.enter(id);
                }
                Some(id) => match &self.node(id).kind {
                    NodeKind::Dir { .. } => {
                        let layer = self.layer;
                        self.node_mut(id).layer = layer;
                        walk.enter(id);
                    }
                    NodeKind::Symlink { target } => walk
                        .follow(&target.clone())
                        .map_err(|Walk::Loop| LayerError::SymlinkLoop { path: path() })?,
                    _ => {
                        return Err(LayerError::NotADirectory {
                            path: path(),
                            component: show_path(&c),
                        })
                    }
                },
            }
        }
        Ok(walk.current())
    }

    /// Checks the tree's invariants: every live node is reachable from the
    /// root, `links` equals the entries naming each node (1 for the root),
    /// no directory is linked twice, names are valid, `live_nodes()` is
    /// right and directory ids are below their subdirectories'. For tests.
    pub fn check_consistency(&self) -> Result<(), String> {
        let mut refs = vec![0u32; self.nodes.len()];
        refs[0] = 1;
        let mut seen_dirs = vec![false; self.nodes.len()];
        let mut stack = vec![0usize];
        seen_dirs[0] = true;
        while let Some(d) = stack.pop() {
            let node = self.get(d).ok_or(format!("dir {d} is not live"))?;
            for (name, &c) in node.children().ok_or(format!("{d} is not a dir"))? {
                if name.is_empty()
                    || name.len() > MAX_NAME_LEN
                    || name.contains(&b'/')
                    || name.contains(&0)
                    || name == b"."
                    || name == b".."
                {
                    return Err(format!("bad name {name:?} in {d}"));
                }
                let child = self
                    .get(c)
                    .ok_or(format!("{d}/{name:?} -> removed node {c}"))?;
                refs[c] += 1;
                if child.is_dir() {
                    if c <= d {
                        return Err(format!("subdirectory {c} not after its dir {d}"));
                    }
                    if seen_dirs[c] {
                        return Err(format!("dir {c} linked twice"));
                    }
                    seen_dirs[c] = true;
                    stack.push(c);
                }
            }
        }
        let mut live = 0;
        for (id, node) in self.nodes() {
            live += 1;
            if refs[id] == 0 {
                return Err(format!("node {id} is live but unreachable"));
            }
            if node.links != refs[id] {
                return Err(format!(
                    "node {id}: links {} but {} entries",
                    node.links, refs[id]
                ));
            }
        }
        if live != self.live {
            return Err(format!(
                "live_nodes() says {} but {live} are live",
                self.live
            ));
        }
        Ok(())
    }
}

/// Symlink loop while resolving a path.
enum Walk {
    Loop,
}

/// Walks path components from the root: `.` skipped, `..` clamped at the
/// root, symlink targets spliced in (absolute ones restart at the root).
struct Walker<'p> {
    /// Directories from the root to the current one (for `..`).
    stack: Vec<NodeId>,
    /// Components still to walk, in order.
    queue: VecDeque<std::borrow::Cow<'p, [u8]>>,
    hops: u32,
}

impl<'p> Walker<'p> {
    fn new(comps: &[&'p [u8]]) -> Self {
        Walker {
            stack: vec![0],
            queue: comps
                .iter()
                .map(|&c| std::borrow::Cow::Borrowed(c))
                .collect(),
            hops: 0,
        }
    }

    fn current(&self) -> NodeId {
        *self.stack.last().expect("the root is never popped")
    }

    /// The next real component (`.`, empty and `..` are handled here).
    fn next_component(&mut self) -> Option<std::borrow::Cow<'p, [u8]>> {
        while let Some(c) = self.queue.pop_front() {
            match &*c {
                b"" | b"." => {}
                b".." => {
                    if self.stack.len() > 1 {
                        self.stack.pop();
                    }
                }
                _ => return Some(c),
            }
        }
        None
    }

    fn enter(&mut self, id: NodeId) {
        self.stack.push(id);
    }

    fn follow(&mut self, target: &[u8]) -> Result<(), Walk> {
        self.hops += 1;
        if self.hops > MAX_SYMLINK_HOPS {
            return Err(Walk::Loop);
        }
        if target.starts_with(b"/") {
            self.stack.truncate(1);
        }
        for c in target.split(|&b| b == b'/').rev() {
            self.queue.push_front(std::borrow::Cow::Owned(c.to_vec()));
        }
        Ok(())
    }
}

/// Lexically cleans an entry path (like Go's `filepath.Clean` on a rooted
/// path, as containerd does): no empty or `.` components, `..` removes the
/// previous component and is dropped at the root.
fn clean_path(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::Extent;
    use std::collections::{HashMap, HashSet};
    use std::io::Write;

    /// A sink that keeps file contents in memory, hands out fake extents
    /// (one per file, at a unique "physical" block) and checks frees.
    #[derive(Default)]
    pub(crate) struct MemSink {
        next: u32,
        pub files: HashMap<u32, Vec<u8>>,
        pub live: HashSet<u32>,
        pub freed: Vec<u32>,
    }

    impl DataSink for MemSink {
        fn write_data(&mut self, r: &mut dyn Read, size: u64) -> io::Result<FileData> {
            let mut buf = Vec::new();
            r.take(size).read_to_end(&mut buf)?;
            if buf.len() as u64 != size {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short data"));
            }
            let blocks = size.div_ceil(4096).max(1) as u32;
            let id = self.next;
            self.next += blocks;
            self.files.insert(id, buf);
            self.live.insert(id);
            Ok(FileData {
                size,
                extents: vec![Extent {
                    logical: 0,
                    physical: id,
                    len: blocks,
                }],
            })
        }
        fn free(&mut self, data: &FileData) {
            let id = data.extents[0].physical;
            assert!(
                self.live.remove(&id),
                "free of a file that is not live: {id}"
            );
            self.freed.push(id);
        }
    }

    impl MemSink {
        pub(crate) fn id(data: &FileData) -> u32 {
            data.extents[0].physical
        }
    }

    /// Builds tar archives with full control over names and headers.
    pub(crate) struct Tar {
        pub b: tar::Builder<Vec<u8>>,
    }

    pub(crate) const MTIME: u64 = 1_700_000_000;

    impl Tar {
        pub(crate) fn new() -> Self {
            Tar {
                b: tar::Builder::new(Vec::new()),
            }
        }

        /// Appends an entry; names that do not fit the header go in PAX
        /// records. `tweak` may change the header (before the checksum).
        pub(crate) fn add(
            &mut self,
            path: &[u8],
            kind: tar::EntryType,
            data: &[u8],
            link: &[u8],
            pax: &[(&str, &[u8])],
            tweak: impl FnOnce(&mut tar::Header),
        ) -> &mut Self {
            let mut pax: Vec<(&str, &[u8])> = pax.to_vec();
            let mut h = tar::Header::new_ustar();
            if path.len() <= 100 {
                h.as_old_mut().name[..path.len()].copy_from_slice(path);
            } else {
                pax.push(("path", path));
                h.as_old_mut().name[..4].copy_from_slice(b"long");
            }
            if link.len() <= 100 {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            } else {
                pax.push(("linkpath", link));
            }
            h.set_mode(if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            h.set_size(data.len() as u64);
            h.set_entry_type(kind);
            tweak(&mut h);
            h.set_cksum();
            if !pax.is_empty() {
                self.b.append_pax_extensions(pax).unwrap();
            }
            self.b.append(&h, data).unwrap();
            self
        }

        pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
            self.add(
                path.as_bytes(),
                tar::EntryType::Regular,
                data,
                b"",
                &[],
                |_| {},
            )
        }
        pub(crate) fn dir(&mut self, path: &str) -> &mut Self {
            self.add(
                path.as_bytes(),
                tar::EntryType::Directory,
                b"",
                b"",
                &[],
                |_| {},
            )
        }
        pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
            let t = target.as_bytes();
            self.add(
                path.as_bytes(),
                tar::EntryType::Symlink,
                b"",
                t,
                &[],
                |_| {},
            )
        }
        pub(crate) fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
            let t = target.as_bytes();
            self.add(path.as_bytes(), tar::EntryType::Link, b"", t, &[], |_| {})
        }
        pub(crate) fn finish(&mut self) -> Vec<u8> {
            self.b.finish().unwrap();
            std::mem::take(self.b.get_mut())
        }
    }

    pub(crate) fn apply(
        tree: &mut Tree,
        sink: &mut MemSink,
        tar: &[u8],
    ) -> Result<LayerStats, LayerError> {
        let r = tree.apply_layer(&mut &tar[..], sink, &mut |_| {});
        tree.check_consistency().unwrap();
        check_sink(tree, sink);
        r
    }

    /// Every live file's data is live in the sink exactly once, and nothing else is.
    pub(crate) fn check_sink(tree: &Tree, sink: &MemSink) {
        let mut ids = HashSet::new();
        for (_, n) in tree.nodes() {
            if let NodeKind::File { data } = &n.kind {
                assert!(
                    ids.insert(MemSink::id(data)),
                    "file data shared by two nodes"
                );
            }
        }
        assert_eq!(ids, sink.live, "live data in the tree vs the sink");
    }

    pub(crate) fn content(tree: &Tree, sink: &MemSink, path: &str) -> Option<Vec<u8>> {
        let id = tree.lookup(path.as_bytes())?;
        match &tree.node(id).kind {
            NodeKind::File { data } => Some(sink.files[&MemSink::id(data)].clone()),
            _ => None,
        }
    }

    fn kind_at(tree: &Tree, path: &str) -> Option<u8> {
        tree.lookup(path.as_bytes())
            .map(|id| tree.node(id).file_type())
    }

    fn names(tree: &Tree, path: &str) -> Vec<String> {
        let id = tree.lookup(path.as_bytes()).unwrap();
        tree.node(id)
            .children()
            .unwrap()
            .keys()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect()
    }

    fn one_layer(tar: &[u8]) -> (Tree, MemSink) {
        let mut tree = Tree::new();
        let mut sink = MemSink::default();
        apply(&mut tree, &mut sink, tar).unwrap();
        (tree, sink)
    }

    #[test]
    fn new_tree_is_a_bare_root() {
        let tree = Tree::new();
        let root = tree.node(tree.root());
        assert!(root.is_dir());
        assert_eq!(root.meta.mode, 0o755);
        assert_eq!(
            (root.meta.uid, root.meta.gid, root.meta.mtime.secs),
            (0, 0, 0)
        );
        assert_eq!(tree.live_nodes(), 1);
        tree.check_consistency().unwrap();
    }

    #[test]
    fn files_dirs_and_metadata() {
        let tar = Tar::new()
            .dir("etc/")
            .add(
                b"etc/hosts",
                tar::EntryType::Regular,
                b"127.0.0.1 localhost\n",
                b"",
                &[],
                |h| {
                    h.set_mode(0o4755);
                    h.set_uid(1000);
                    h.set_gid(2000);
                    h.set_mtime(1234);
                },
            )
            .file("usr/bin/tool", b"#!/bin/sh\n")
            .add(b"dev/null", tar::EntryType::Char, b"", b"", &[], |h| {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            })
            .add(b"dev/sda", tar::EntryType::Block, b"", b"", &[], |h| {
                h.set_device_major(8).unwrap();
                h.set_device_minor(0).unwrap();
            })
            .add(b"run/fifo", tar::EntryType::Fifo, b"", b"", &[], |_| {})
            .finish();
        let mut tree = Tree::new();
        let mut sink = MemSink::default();
        let stats = apply(&mut tree, &mut sink, &tar).unwrap();
        assert_eq!(
            stats,
            LayerStats {
                entries: 6,
                bytes: 20 + 10
            }
        );
        assert_eq!(
            content(&tree, &sink, "/etc/hosts").unwrap(),
            b"127.0.0.1 localhost\n"
        );
        let hosts = tree.node(tree.lookup(b"etc/hosts").unwrap());
        assert_eq!(hosts.meta.mode, 0o4755);
        assert_eq!((hosts.meta.uid, hosts.meta.gid), (1000, 2000));
        assert_eq!(
            hosts.meta.mtime,
            Timestamp {
                secs: 1234,
                nanos: 0
            }
        );
        assert_eq!(hosts.meta.atime, hosts.meta.mtime);
        assert_eq!(hosts.meta.ctime, hosts.meta.mtime);
        // Implicit parents: 0o755, 0:0, the entry's mtime.
        let usr = tree.node(tree.lookup(b"usr").unwrap());
        assert_eq!(usr.meta.mode, 0o755);
        assert_eq!(usr.meta.mtime.secs, MTIME as i64);
        assert_eq!(
            tree.node(tree.lookup(b"dev/null").unwrap()).kind,
            NodeKind::CharDev { major: 1, minor: 3 }
        );
        assert_eq!(
            tree.node(tree.lookup(b"dev/sda").unwrap()).kind,
            NodeKind::BlockDev { major: 8, minor: 0 }
        );
        assert_eq!(kind_at(&tree, "run/fifo"), Some(file_type::FIFO));
        // root, etc, hosts, usr, bin, tool, dev, null, sda, run, fifo
        assert_eq!(tree.live_nodes(), 11);
        let order: Vec<NodeId> = tree.nodes().map(|(id, _)| id).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn directory_entry_updates_an_existing_directory() {
        let l1 = Tar::new().dir("d/").file("d/keep", b"k").finish();
        let l2 = Tar::new()
            .add(
                b"d/",
                tar::EntryType::Directory,
                b"",
                b"",
                &[("SCHILY.xattr.user.x", b"1")],
                |h| {
                    h.set_mode(0o1777);
                    h.set_uid(7);
                },
            )
            .finish();
        let (mut tree, mut sink) = one_layer(&l1);
        let before = tree.lookup(b"d").unwrap();
        apply(&mut tree, &mut sink, &l2).unwrap();
        assert_eq!(tree.lookup(b"d"), Some(before));
        let d = tree.node(before);
        assert_eq!((d.meta.mode, d.meta.uid), (0o1777, 7));
        assert_eq!(d.meta.xattrs, vec![(b"user.x".to_vec(), b"1".to_vec())]);
        assert_eq!(content(&tree, &sink, "d/keep").unwrap(), b"k");
    }

    #[test]
    fn root_entry_updates_root_metadata_and_other_root_entries_are_ignored() {
        let tar = Tar::new()
            .add(b"./", tar::EntryType::Directory, b"", b"", &[], |h| {
                h.set_mode(0o700)
            })
            .file(".", b"ignored")
            .file("a/..", b"ignored too")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(tree.node(0).meta.mode, 0o700);
        assert_eq!(tree.node(0).meta.mtime.secs, MTIME as i64);
        assert_eq!(tree.live_nodes(), 1);
        assert!(sink.files.is_empty());
    }

    #[test]
    fn duplicate_entries_later_wins() {
        let tar = Tar::new().file("f", b"one").file("f", b"two").finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(content(&tree, &sink, "f").unwrap(), b"two");
        assert_eq!(sink.freed.len(), 1);
    }

    #[test]
    fn whiteouts_remove_files_and_trees() {
        let l1 = Tar::new()
            .file("a/f", b"f")
            .file("a/sub/g", b"g")
            .file("a/sub/deep/h", b"h")
            .file("b", b"b")
            .finish();
        let l2 = Tar::new()
            .file("a/.wh.sub", b"")
            .file(".wh.b", b"")
            .file("a/.wh.nothing", b"")
            .file("missing/dir/.wh.x", b"")
            .file("b/.wh.x", b"") // parent is gone (and was a file)
            .finish();
        let (mut tree, mut sink) = one_layer(&l1);
        apply(&mut tree, &mut sink, &l2).unwrap();
        assert_eq!(names(&tree, "/"), ["a"]);
        assert_eq!(names(&tree, "a"), ["f"]);
        assert_eq!(sink.freed.len(), 3);
        assert!(
            tree.lookup(b"missing").is_none(),
            "a whiteout creates nothing"
        );
    }

    #[test]
    fn whiteout_in_the_same_layer_and_aufs_metadata() {
        let tar = Tar::new()
            .file("x", b"x")
            .file(".wh.x", b"")
            .file(".wh..wh.plnk", b"")
            .dir(".wh..wh.plnk/")
            .file(".wh..wh.aufs", b"")
            .finish();
        let (tree, _) = one_layer(&tar);
        assert_eq!(tree.live_nodes(), 1, "{:?}", names(&tree, "/"));
    }

    #[test]
    fn opaque_directories() {
        let l1 = Tar::new()
            .file("d/old", b"1")
            .file("d/sub/old", b"2")
            .file("d/sub2/old", b"3")
            .file("other/keep", b"4")
            .finish();
        // Opaque marker after a same-layer child, and a child after it; an
        // old subdirectory this layer writes into keeps only the new entry.
        let l2 = Tar::new()
            .file("d/new1", b"n1")
            .file("d/sub/new", b"n2")
            .file("d/.wh..wh..opq", b"")
            .file("d/new2", b"n3")
            .finish();
        let (mut tree, mut sink) = one_layer(&l1);
        apply(&mut tree, &mut sink, &l2).unwrap();
        assert_eq!(names(&tree, "d"), ["new1", "new2", "sub"]);
        assert_eq!(names(&tree, "d/sub"), ["new"]);
        assert_eq!(names(&tree, "other"), ["keep"]);
        assert_eq!(sink.freed.len(), 3);
        // Opaque root, and an opaque marker for a missing directory.
        let l3 = Tar::new()
            .file("top", b"t")
            .file(".wh..wh..opq", b"")
            .file("nope/.wh..wh..opq", b"")
            .finish();
        apply(&mut tree, &mut sink, &l3).unwrap();
        assert_eq!(names(&tree, "/"), ["top"]);
    }

    #[test]
    fn opaque_keeps_hard_links_made_in_this_layer_only() {
        let l1 = Tar::new().file("d/a", b"data").finish();
        let l2 = Tar::new()
            .hardlink("d/b", "d/a")
            .file("d/.wh..wh..opq", b"")
            .finish();
        let (mut tree, mut sink) = one_layer(&l1);
        apply(&mut tree, &mut sink, &l2).unwrap();
        assert_eq!(names(&tree, "d"), ["b"]);
        assert_eq!(content(&tree, &sink, "d/b").unwrap(), b"data");
        assert_eq!(tree.node(tree.lookup(b"d/b").unwrap()).links, 1);
        assert!(sink.freed.is_empty());
    }

    #[test]
    fn file_replaces_directory_and_back() {
        let l1 = Tar::new()
            .file("x/a", b"a")
            .file("x/b/c", b"c")
            .file("y", b"y")
            .finish();
        let l2 = Tar::new()
            .file("x", b"now a file")
            .dir("y/")
            .file("y/inside", b"i")
            .finish();
        let (mut tree, mut sink) = one_layer(&l1);
        apply(&mut tree, &mut sink, &l2).unwrap();
        assert_eq!(content(&tree, &sink, "x").unwrap(), b"now a file");
        assert_eq!(kind_at(&tree, "y"), Some(file_type::DIR));
        assert_eq!(content(&tree, &sink, "y/inside").unwrap(), b"i");
        assert_eq!(sink.freed.len(), 3);
        // A symlink, device or fifo replaces a directory too.
        let l3 = Tar::new()
            .symlink("x", "target")
            .symlink("y", "t2")
            .finish();
        apply(&mut tree, &mut sink, &l3).unwrap();
        assert_eq!(kind_at(&tree, "y"), Some(file_type::SYMLINK));
        assert_eq!(tree.live_nodes(), 3);
    }

    #[test]
    fn entry_under_a_file_is_refused() {
        let tar = Tar::new().file("f", b"").file("f/g", b"").finish();
        let mut tree = Tree::new();
        let err = apply(&mut tree, &mut MemSink::default(), &tar).unwrap_err();
        assert!(matches!(err, LayerError::NotADirectory { .. }), "{err}");
        assert_eq!(err.to_string(), "f/g: f is not a directory");
    }

    #[test]
    fn hard_links_and_link_counts() {
        let l1 = Tar::new()
            .file("bin/a", b"binary")
            .hardlink("bin/b", "bin/a")
            .finish();
        let (mut tree, mut sink) = one_layer(&l1);
        let a = tree.lookup(b"bin/a").unwrap();
        assert_eq!(tree.lookup(b"bin/b"), Some(a));
        assert_eq!(tree.node(a).links, 2);
        assert_eq!(tree.live_nodes(), 3);
        // To a file from an earlier layer, by an absolute, unclean name.
        let l2 = Tar::new().hardlink("usr/c", "/./bin/../bin/a").finish();
        apply(&mut tree, &mut sink, &l2).unwrap();
        assert_eq!(tree.lookup(b"usr/c"), Some(a));
        assert_eq!(tree.node(a).links, 3);
        // Removing names: the data goes with the last one, not before.
        let l3 = Tar::new()
            .file("bin/.wh.a", b"")
            .file("bin/b", b"replaced")
            .finish();
        apply(&mut tree, &mut sink, &l3).unwrap();
        assert_eq!(tree.node(a).links, 1);
        assert_eq!(sink.freed.len(), 0);
        let l4 = Tar::new().file(".wh.usr", b"").finish();
        apply(&mut tree, &mut sink, &l4).unwrap();
        assert_eq!(sink.freed.len(), 1);
        assert!(tree.get(a).is_none());
    }

    #[test]
    fn hard_link_errors_name_both_paths() {
        let tar = Tar::new().hardlink("x", "no/such").finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: hard link target no/such does not exist"
        );
        let tar = Tar::new().dir("d/").hardlink("x", "d").finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert_eq!(err.to_string(), "x: hard link target d is a directory");
        let tar = Tar::new().hardlink("x", "/").finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert!(matches!(err, LayerError::LinkTargetIsDir { .. }), "{err}");
    }

    #[test]
    fn hard_link_over_the_directory_holding_its_target() {
        let tar = Tar::new()
            .file("d/f", b"data")
            .hardlink("d", "d/f")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(content(&tree, &sink, "d").unwrap(), b"data");
        assert_eq!(tree.node(tree.lookup(b"d").unwrap()).links, 1);
        assert!(sink.freed.is_empty());
    }

    #[test]
    fn hard_link_to_itself_and_to_a_symlink() {
        let tar = Tar::new()
            .file("f", b"1")
            .hardlink("f", "f")
            .symlink("s", "f")
            .hardlink("s2", "s")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(tree.node(tree.lookup(b"f").unwrap()).links, 1);
        assert!(sink.freed.is_empty());
        let s = tree.lookup(b"s").unwrap();
        assert_eq!(tree.lookup(b"s2"), Some(s));
        assert_eq!(tree.node(s).links, 2);
    }

    #[test]
    fn symlinked_directories_resolve_inside_the_tree() {
        let tar = Tar::new()
            .dir("etc/")
            .symlink("a", "/etc")
            .file("a/passwd", b"root:x:0:0")
            .dir("x/y/z/")
            .symlink("x/y/z/b", "../../../../..")
            .file("x/y/z/b/escaped", b"e")
            .symlink("rel", "x/y")
            .file("rel/z/deep", b"d")
            .symlink("dangling", "/new/place")
            .file("dangling/f", b"f")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(content(&tree, &sink, "etc/passwd").unwrap(), b"root:x:0:0");
        assert_eq!(kind_at(&tree, "a"), Some(file_type::SYMLINK));
        assert_eq!(content(&tree, &sink, "escaped").unwrap(), b"e");
        assert_eq!(content(&tree, &sink, "x/y/z/deep").unwrap(), b"d");
        assert_eq!(content(&tree, &sink, "new/place/f").unwrap(), b"f");
        // lookup() follows the same rules.
        assert_eq!(tree.lookup(b"a/passwd"), tree.lookup(b"/etc/passwd"));
    }

    #[test]
    fn final_symlink_is_replaced_not_followed() {
        let tar = Tar::new()
            .dir("etc/")
            .symlink("link", "/etc")
            .file("link", b"plain")
            .symlink("l2", "etc")
            .dir("l2/")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(content(&tree, &sink, "link").unwrap(), b"plain");
        assert_eq!(kind_at(&tree, "l2"), Some(file_type::DIR));
        assert!(names(&tree, "etc").is_empty());
    }

    #[test]
    fn symlink_loops_are_refused() {
        let tar = Tar::new()
            .symlink("a", "b")
            .symlink("b", "a")
            .file("a/x", b"")
            .finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert_eq!(err.to_string(), "a/x: too many levels of symbolic links");
        let tar = Tar::new()
            .symlink("self", ".")
            .file("self/self/f", b"ok")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(content(&tree, &sink, "f").unwrap(), b"ok");
        // A whiteout through a loop is refused too.
        let tar = Tar::new().symlink("a", "a").file("a/.wh.x", b"").finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert!(matches!(err, LayerError::SymlinkLoop { .. }));
    }

    #[test]
    fn dot_dot_and_absolute_names_stay_inside() {
        let tar = Tar::new()
            .file("../../etc/shadow", b"1")
            .file("/abs/f", b"2")
            .file("./rel/./g", b"3")
            .file("a/../../../b", b"4")
            .file("//double//slash", b"5")
            .finish();
        let (tree, sink) = one_layer(&tar);
        assert_eq!(content(&tree, &sink, "etc/shadow").unwrap(), b"1");
        assert_eq!(content(&tree, &sink, "abs/f").unwrap(), b"2");
        assert_eq!(content(&tree, &sink, "rel/g").unwrap(), b"3");
        assert_eq!(content(&tree, &sink, "b").unwrap(), b"4");
        assert_eq!(content(&tree, &sink, "double/slash").unwrap(), b"5");
        assert!(
            tree.lookup(b"a").is_none(),
            "a/.. is cleaned away lexically"
        );
    }

    #[test]
    fn long_names() {
        let long_dir = "d".repeat(150);
        let name255 = "n".repeat(255);
        let path = format!("{long_dir}/{name255}");
        let target = format!("/{}", "t".repeat(300));
        let mut t = Tar::new();
        // GNU long names via the tar crate...
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.b.append_data(&mut h, &path, &b"gnu"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        t.b.append_link(&mut h, format!("{long_dir}/gnulink"), &target)
            .unwrap();
        // ...and PAX path/linkpath.
        t.add(
            format!("{long_dir}/pax{}", "p".repeat(100)).as_bytes(),
            tar::EntryType::Regular,
            b"pax",
            b"",
            &[],
            |_| {},
        );
        t.symlink(&format!("{long_dir}/paxlink"), &target);
        let (tree, sink) = one_layer(&t.finish());
        assert_eq!(content(&tree, &sink, &path).unwrap(), b"gnu");
        assert_eq!(
            content(&tree, &sink, &format!("{long_dir}/pax{}", "p".repeat(100))).unwrap(),
            b"pax"
        );
        for l in ["gnulink", "paxlink"] {
            let id = tree.lookup(format!("{long_dir}/{l}").as_bytes()).unwrap();
            assert_eq!(
                tree.node(id).kind,
                NodeKind::Symlink {
                    target: target.clone().into_bytes()
                }
            );
        }
    }

    #[test]
    fn names_over_255_bytes_are_refused() {
        let name = "n".repeat(256);
        let tar = Tar::new().file(&format!("dir/{name}"), b"").finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert!(
            matches!(err, LayerError::NameTooLong { len: 256, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("longer than ext4's limit of 255"));
        // Also in a parent, and when created through a symlink.
        let tar = Tar::new().dir(&format!("{name}/")).finish();
        assert!(matches!(
            apply(&mut Tree::new(), &mut MemSink::default(), &tar),
            Err(LayerError::NameTooLong { .. })
        ));
        let tar = Tar::new()
            .symlink("s", &format!("/{name}"))
            .file("s/f", b"")
            .finish();
        assert!(matches!(
            apply(&mut Tree::new(), &mut MemSink::default(), &tar),
            Err(LayerError::NameTooLong { .. })
        ));
        // A whiteout for such a name is simply a no-op.
        let tar = Tar::new().file(&format!(".wh.{name}"), b"").finish();
        one_layer(&tar);
    }

    #[test]
    fn bad_symlink_targets_and_device_numbers_are_refused() {
        let tar = Tar::new().symlink("s", "").finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert!(
            err.to_string().starts_with("s: symlink target of 0 bytes"),
            "{err}"
        );
        let tar = Tar::new().symlink("s", &"x".repeat(4096)).finish();
        assert!(apply(&mut Tree::new(), &mut MemSink::default(), &tar).is_err());
        let tar = Tar::new().symlink("s", &"x".repeat(4095)).finish();
        one_layer(&tar);
        let tar = Tar::new()
            .add(b"dev/big", tar::EntryType::Block, b"", b"", &[], |h| {
                h.set_device_major(4096).unwrap();
            })
            .finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dev/big: device number 4096:0 is out of range"
        );
    }

    #[test]
    fn pax_times_ids_and_xattrs() {
        let cap: &[u8] = &[
            0x01, 0x00, 0x00, 0x02, 0x0a, 0x20, 0x00, 0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let tar = Tar::new()
            .add(
                b"bin/ping",
                tar::EntryType::Regular,
                b"elf",
                b"",
                &[
                    ("SCHILY.xattr.user.z", b"last"),
                    ("SCHILY.xattr.security.capability", cap),
                    ("SCHILY.xattr.trusted.empty", b""),
                    ("mtime", b"1700000000.123456789"),
                    ("atime", b"1700000001.5"),
                    ("ctime", b"1700000002"),
                    ("uid", b"4000000000"),
                    ("gid", b"70000"),
                    ("uname", b"ignored"),
                ],
                |_| {},
            )
            .add(
                b"old",
                tar::EntryType::Regular,
                b"",
                b"",
                &[("mtime", b"-1.25")],
                |_| {},
            )
            .finish();
        let (tree, sink) = one_layer(&tar);
        let ping = tree.node(tree.lookup(b"bin/ping").unwrap());
        assert_eq!(
            ping.meta.mtime,
            Timestamp {
                secs: 1_700_000_000,
                nanos: 123_456_789
            }
        );
        assert_eq!(
            ping.meta.atime,
            Timestamp {
                secs: 1_700_000_001,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            ping.meta.ctime,
            Timestamp {
                secs: 1_700_000_002,
                nanos: 0
            }
        );
        assert_eq!((ping.meta.uid, ping.meta.gid), (4_000_000_000, 70000));
        assert_eq!(
            ping.meta.xattrs,
            vec![
                (b"security.capability".to_vec(), cap.to_vec()),
                (b"trusted.empty".to_vec(), vec![]),
                (b"user.z".to_vec(), b"last".to_vec()),
            ]
        );
        assert_eq!(content(&tree, &sink, "bin/ping").unwrap(), b"elf");
        let old = tree.node(tree.lookup(b"old").unwrap());
        assert_eq!(
            old.meta.mtime,
            Timestamp {
                secs: -2,
                nanos: 750_000_000
            }
        );
    }

    #[test]
    fn libarchive_xattrs() {
        // bsdtar writes both forms; SCHILY wins where both name the attribute.
        let tar = Tar::new()
            .add(
                b"f",
                tar::EntryType::Regular,
                b"",
                b"",
                &[
                    ("LIBARCHIVE.xattr.user.with%20space", b"aGVsbG8="),
                    ("LIBARCHIVE.xattr.user.both", b"bGE"),
                    ("SCHILY.xattr.user.both", b"schily"),
                ],
                |_| {},
            )
            .finish();
        let (tree, _) = one_layer(&tar);
        let f = tree.node(tree.lookup(b"f").unwrap());
        assert_eq!(
            f.meta.xattrs,
            vec![
                (b"user.both".to_vec(), b"schily".to_vec()),
                (b"user.with space".to_vec(), b"hello".to_vec()),
            ]
        );
    }

    fn sample_layer() -> Vec<u8> {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        Tar::new()
            .file("a/big", &big)
            .file("a/small", b"small")
            .symlink("l", "a")
            .finish()
    }

    fn check_sample(tree: &Tree, sink: &MemSink) {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(content(tree, sink, "a/big").unwrap(), big);
        assert_eq!(content(tree, sink, "l/small").unwrap(), b"small");
    }

    #[test]
    fn gzip_and_zstd_layers() {
        let tar = sample_layer();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for layer in [&tar, &gz, &zst] {
            let (tree, sink) = one_layer(layer);
            check_sample(&tree, &sink);
        }
        // Multi-member gzip (e.g. from pigz / concatenation).
        let (a, b) = tar.split_at(100_000);
        let mut multi = Vec::new();
        for part in [a, b] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            multi.extend(gz.finish().unwrap());
        }
        let (tree, sink) = one_layer(&multi);
        check_sample(&tree, &sink);
    }

    #[test]
    fn corrupt_compressed_layers_are_errors() {
        let tar = sample_layer();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        // zstd frames with a content checksum, as the zstd CLI and Go's
        // klauspost/compress write them (without one, a flipped bit in a
        // literal decodes to other valid bytes: only the layer digest can
        // catch that).
        let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.write_all(&tar).unwrap();
        let zst = enc.finish().unwrap();
        for layer in [&gz, &zst] {
            // Truncated: even the tail that only holds the end marker and CRC.
            for cut in [layer.len() / 2, layer.len() - 4, layer.len() - 1] {
                let mut tree = Tree::new();
                let r = apply(&mut tree, &mut MemSink::default(), &layer[..cut]);
                assert!(r.is_err(), "cut at {cut} of {} ({})", layer.len(), layer[0]);
            }
            // A flipped bit in the middle.
            let mut bad = layer.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0x10;
            let r = apply(&mut Tree::new(), &mut MemSink::default(), &bad);
            assert!(r.is_err(), "flip in {}", layer[0]);
        }
    }

    #[test]
    fn unsupported_compression_and_garbage() {
        for (prefix, name) in [
            (&b"BZh91AY&SY"[..], "bzip2"),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0][..], "xz"),
            (&[0x04, 0x22, 0x4d, 0x18, 0, 0][..], "lz4"),
        ] {
            let err = apply(&mut Tree::new(), &mut MemSink::default(), prefix).unwrap_err();
            assert!(
                matches!(err, LayerError::UnsupportedCompression(n) if n == name),
                "{err}"
            );
            assert!(err.to_string().contains(name));
        }
        let garbage: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &garbage).unwrap_err();
        assert!(matches!(err, LayerError::NotTar), "{err}");
        // A plain tar whose first name looks like a magic number is still tar.
        let tar = Tar::new().file("BZh9-not-bzip2", b"x").finish();
        one_layer(&tar);
    }

    #[test]
    fn empty_layers() {
        let (tree, _) = one_layer(b"");
        assert_eq!(tree.live_nodes(), 1);
        let (tree, _) = one_layer(&Tar::new().finish());
        assert_eq!(tree.live_nodes(), 1);
        let (tree, _) = one_layer(&[0u8; 512]);
        assert_eq!(tree.live_nodes(), 1);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let tar = Tar::new()
            .dir("d/")
            .file("d/f", &[7u8; 1000])
            .add(
                b"p",
                tar::EntryType::Regular,
                b"x",
                b"",
                &[("SCHILY.xattr.user.a", b"b")],
                |_| {},
            )
            .finish();
        // The end-of-archive marker starts after the last entry's padded data.
        let end = tar.len() - tar.iter().rev().take_while(|&&b| b == 0).count();
        let end = end.div_ceil(512) * 512;
        // Like Go, the stream may end cleanly between entries: right after an
        // entry's data, with or without its padding. Anywhere else (inside a
        // header, an extension header or data) is an error.
        let mut clean_ends = vec![];
        let mut archive = tar::Archive::new(&tar[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let data_end = e.raw_file_position() as usize + e.size() as usize;
            clean_ends.push(data_end..=data_end.div_ceil(512) * 512);
        }
        for cut in 1..tar.len() {
            let r = apply(&mut Tree::new(), &mut MemSink::default(), &tar[..cut]);
            // One zero block ends the archive, but a second one that is
            // there must be whole.
            let accepted = clean_ends.iter().any(|r| r.contains(&cut))
                || cut == end + 512
                || cut >= end + 1024;
            if accepted {
                r.unwrap_or_else(|e| panic!("cut at {cut} (end marker at {end}) refused: {e}"));
            } else {
                assert!(
                    r.is_err(),
                    "cut at {cut} (end marker at {end}) was accepted"
                );
            }
        }
    }

    #[test]
    fn hostile_headers_do_not_panic() {
        // Huge sizes: in the header, in PAX, in a GNU long name, in a sparse map.
        let huge = Tar::new()
            .add(b"f", tar::EntryType::Regular, b"", b"", &[], |h| {
                h.set_size(u64::MAX >> 2)
            })
            .finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &huge).unwrap_err();
        assert!(matches!(err, LayerError::FileTooLarge { .. }), "{err}");
        let big = Tar::new()
            .add(b"f", tar::EntryType::Regular, b"", b"", &[], |h| {
                h.set_size(1 << 40)
            })
            .finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &big).unwrap_err();
        assert!(matches!(err, LayerError::Truncated(_)), "{err}");
        let pax = Tar::new()
            .add(
                b"f",
                tar::EntryType::Regular,
                b"",
                b"",
                &[("size", b"99999999999999999999")],
                |_| {},
            )
            .finish();
        assert!(apply(&mut Tree::new(), &mut MemSink::default(), &pax).is_err());
        let mut t = Tar::new();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 50);
        h.set_cksum();
        t.b.append(&h, &[][..]).unwrap();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &t.finish()).unwrap_err();
        assert!(matches!(err, LayerError::Corrupt { .. }), "{err}");
        // A directory or link with a size: no data follows (like Go).
        let dir = Tar::new()
            .add(b"d", tar::EntryType::Directory, b"", b"", &[], |h| {
                h.set_size(1 << 30)
            })
            .file("d/f", b"ok")
            .finish();
        let (tree, sink) = one_layer(&dir);
        assert_eq!(content(&tree, &sink, "d/f").unwrap(), b"ok");
        // Unknown entry types are refused by name.
        let odd = Tar::new()
            .add(b"odd", tar::EntryType::new(b'Z'), b"", b"", &[], |_| {})
            .finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &odd).unwrap_err();
        assert_eq!(err.to_string(), "odd: unsupported tar entry type 'Z'");
    }

    #[test]
    fn progress_reports_input_bytes() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let tar = Tar::new().file("big", &big).finish();
        let mut calls = Vec::new();
        let mut tree = Tree::new();
        tree.apply_layer(&mut &tar[..], &mut MemSink::default(), &mut |n| {
            calls.push(n)
        })
        .unwrap();
        assert!(calls.len() >= 3, "{calls:?}");
        assert!(calls.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*calls.last().unwrap(), tar.len() as u64);
    }

    #[test]
    fn sink_errors_are_reported_as_write_errors() {
        struct Full;
        impl DataSink for Full {
            fn write_data(&mut self, _: &mut dyn Read, _: u64) -> io::Result<FileData> {
                Err(io::Error::other("image full"))
            }
            fn free(&mut self, _: &FileData) {}
        }
        let tar = Tar::new().file("f", b"data").finish();
        let err = Tree::new()
            .apply_layer(&mut &tar[..], &mut Full, &mut |_| {})
            .unwrap_err();
        assert_eq!(err.to_string(), "f: writing file data: image full");
    }

    // ---- property tests -------------------------------------------------

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        File(String, u8),
        Dir(String),
        Symlink(String, String),
        Hardlink(String, String),
        Whiteout(String),
        Opaque(String),
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "..", "."]), 1..4)
            .prop_map(|c| c.join("/"))
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let target = prop_oneof![
            path_strategy(),
            path_strategy().prop_map(|p| format!("/{p}")),
        ];
        prop_oneof![
            4 => (path_strategy(), any::<u8>()).prop_map(|(p, n)| Op::File(p, n)),
            2 => path_strategy().prop_map(Op::Dir),
            1 => (path_strategy(), target).prop_map(|(p, t)| Op::Symlink(p, t)),
            2 => (path_strategy(), path_strategy()).prop_map(|(p, t)| Op::Hardlink(p, t)),
            2 => path_strategy().prop_map(Op::Whiteout),
            1 => prop::option::of(path_strategy()).prop_map(|p| Op::Opaque(p.unwrap_or_default())),
        ]
    }

    fn build_layer(ops: &[Op]) -> Vec<u8> {
        let mut t = Tar::new();
        for op in ops {
            match op {
                Op::File(p, n) => t.file(p, &vec![*n; *n as usize * 37]),
                Op::Dir(p) => t.dir(p),
                Op::Symlink(p, target) => t.symlink(p, target),
                Op::Hardlink(p, target) => t.hardlink(p, target),
                Op::Whiteout(p) => {
                    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                    t.file(&format!("{dir}/.wh.{name}"), b"")
                }
                Op::Opaque(d) => t.file(&format!("{d}/.wh..wh..opq"), b""),
            };
        }
        t.finish()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Random layer stacks never panic; links, liveness and the data
        /// bookkeeping stay exact, whether layers apply or fail midway.
        #[test]
        fn random_layers_keep_the_tree_consistent(
            layers in prop::collection::vec(prop::collection::vec(op_strategy(), 0..12), 1..5)
        ) {
            let mut tree = Tree::new();
            let mut sink = MemSink::default();
            for ops in &layers {
                let _ = apply(&mut tree, &mut sink, &build_layer(ops));
            }
            // Removing everything frees every byte exactly once.
            let _ = apply(&mut tree, &mut sink, &build_layer(&[Op::Opaque(String::new())]));
            prop_assert_eq!(tree.live_nodes(), 1);
            prop_assert!(sink.live.is_empty());
        }

        /// Random bytes, and random damage to a valid layer, never panic.
        #[test]
        fn damaged_layers_never_panic(
            ops in prop::collection::vec(op_strategy(), 1..8),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            fix_checksums in any::<bool>(),
        ) {
            let mut tar = build_layer(&ops);
            for (i, v) in &flips {
                let i = i.index(tar.len());
                tar[i] = *v;
            }
            if fix_checksums {
                for blk in tar.chunks_mut(512) {
                    if blk.len() == 512 && blk.iter().any(|&b| b != 0) {
                        let sum: u32 = blk.iter().enumerate()
                            .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
                        blk[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                    }
                }
            }
            let _ = apply(&mut Tree::new(), &mut MemSink::default(), &tar);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
            let _ = apply(&mut Tree::new(), &mut MemSink::default(), &bytes);
        }
    }

    /// A model of the semantics without symlinks or hard links: a map from
    /// clean paths to what is there, plus the layer that last wrote it.
    #[derive(Debug, Clone, PartialEq)]
    enum M {
        Dir,
        File(Vec<u8>),
    }

    fn model_apply(model: &mut BTreeMap<Vec<String>, (M, u32)>, layer: u32, ops: &[Op]) -> bool {
        fn remove_tree(model: &mut BTreeMap<Vec<String>, (M, u32)>, p: &[String]) {
            model.retain(|k, _| !k.starts_with(p));
        }
        // Ancestors must be dirs (or missing); returns false on a file.
        fn parents_ok(model: &BTreeMap<Vec<String>, (M, u32)>, p: &[String]) -> Option<bool> {
            let mut all_there = true;
            for i in 1..p.len() {
                match model.get(&p[..i]) {
                    Some((M::File(_), _)) => return None,
                    Some((M::Dir, _)) => {}
                    None => all_there = false,
                }
            }
            Some(all_there)
        }
        let clean = |p: &str| -> Vec<String> {
            clean_path(p.as_bytes())
                .iter()
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect()
        };
        for op in ops {
            match op {
                Op::File(p, _) | Op::Dir(p) => {
                    let p = clean(p);
                    if p.is_empty() {
                        continue;
                    }
                    if parents_ok(model, &p).is_none() {
                        return false;
                    }
                    for i in 1..p.len() {
                        model.insert(p[..i].to_vec(), (M::Dir, layer));
                    }
                    match op {
                        Op::File(_, n) => {
                            remove_tree(model, &p);
                            model.insert(p, (M::File(vec![*n; *n as usize * 37]), layer));
                        }
                        _ => {
                            if !matches!(model.get(&p), Some((M::Dir, _))) {
                                remove_tree(model, &p);
                            }
                            model.insert(p, (M::Dir, layer));
                        }
                    }
                }
                Op::Whiteout(p) => {
                    // Named like build_layer names it: DIR/.wh.NAME.
                    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                    if name == "." || name == ".." {
                        return false; // an invalid whiteout name
                    }
                    let mut p = clean(dir);
                    p.push(name.to_string());
                    if parents_ok(model, &p) == Some(true) {
                        remove_tree(model, &p);
                    }
                }
                Op::Opaque(d) => {
                    let d = clean(d);
                    let is_dir = d.is_empty()
                        || (parents_ok(model, &d) == Some(true)
                            && matches!(model.get(&d), Some((M::Dir, _))));
                    if is_dir {
                        let old: Vec<Vec<String>> = model
                            .iter()
                            .filter(|(k, (_, l))| {
                                k.len() > d.len() && k.starts_with(&d) && *l < layer
                            })
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in old {
                            remove_tree(model, &k);
                        }
                    }
                }
                Op::Symlink(..) | Op::Hardlink(..) => unreachable!(),
            }
        }
        true
    }

    fn tree_listing(tree: &Tree, sink: &MemSink) -> BTreeMap<Vec<String>, M> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(0, Vec::<String>::new())];
        while let Some((id, path)) = stack.pop() {
            for (name, &c) in tree.node(id).children().unwrap() {
                let mut p = path.clone();
                p.push(String::from_utf8(name.clone()).unwrap());
                match &tree.node(c).kind {
                    NodeKind::Dir { .. } => {
                        out.insert(p.clone(), M::Dir);
                        stack.push((c, p));
                    }
                    NodeKind::File { data } => {
                        out.insert(p, M::File(sink.files[&MemSink::id(data)].clone()));
                    }
                    k => panic!("unexpected {k:?}"),
                }
            }
        }
        out
    }

    fn simple_op_strategy() -> impl Strategy<Value = Op> {
        op_strategy().prop_filter("no links", |op| {
            !matches!(op, Op::Symlink(..) | Op::Hardlink(..))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Files, directories, whiteouts and opaque directories give exactly
        /// what the model says.
        #[test]
        fn layers_match_the_model(
            layers in prop::collection::vec(prop::collection::vec(simple_op_strategy(), 0..12), 1..5)
        ) {
            let mut tree = Tree::new();
            let mut sink = MemSink::default();
            let mut model = BTreeMap::new();
            for (i, ops) in layers.iter().enumerate() {
                let ok = model_apply(&mut model, i as u32 + 1, ops);
                let r = apply(&mut tree, &mut sink, &build_layer(ops));
                prop_assert_eq!(ok, r.is_ok(), "{:?}", r);
                if !ok {
                    return Ok(());
                }
                let want: BTreeMap<Vec<String>, M> = model.iter().map(|(k, (m, _))| (k.clone(), m.clone())).collect();
                prop_assert_eq!(tree_listing(&tree, &sink), want);
            }
        }
    }
}
