//! Lays out and writes the filesystem: file data streams in first (from the
//! layers, through [`ImageSink`]), then everything whose size is only known at
//! the end — bitmaps, inode tables, directories, extent trees, xattr blocks,
//! the journal — goes after the data. `flex_bg` lets group metadata live
//! anywhere, and `sparse_super2` with no backups keeps the groups free of
//! superblock copies, so nothing has to be moved once written.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::alloc::{ImageSink, MAX_EXTENT_LEN};
use crate::checksum::crc32c;
use crate::dir::{try_build_dir, DirCsum, DirEntry, HashParams};
use crate::hash::HashVersion;
use crate::inode::{self, InodeSpec, Xattr, INODE_SIZE};
use crate::superblock::{self, GroupDesc, Superblock, BLOCKS_PER_GROUP, DESC_SIZE};
use crate::tree::{LayerError, NodeId, NodeKind, Tree};
use crate::types::{file_type, Extent, Timestamp, BLOCK_SIZE};

const BS: usize = BLOCK_SIZE as usize;
/// Room reserved for group descriptors: enough for 2^32 blocks (16 TiB).
const GDT_RESERVED: u32 = 1024;
/// File data starts after the superblock and the descriptor area.
const DATA_START: u32 = 1 + GDT_RESERVED;
const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LOST_FOUND_INO: u32 = 11;
const FIRST_INO: u32 = 12;
/// One inode per this many bytes of free space, as mke2fs's default ratio.
const BYTES_PER_INODE: u64 = 16384;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer {index}: {source}")]
    Layer { index: usize, source: LayerError },
    #[error("writing the image: {0}")]
    Io(#[from] io::Error),
    #[error("the content needs {needed} bytes but the image size is {given} bytes")]
    TooSmall { needed: u64, given: u64 },
    #[error("the image would be larger than ext4's 16 TiB limit for 4 KiB blocks")]
    TooLarge,
    #[error("{path}: extended attributes too large for one block")]
    XattrTooLarge { path: String },
    #[error("{path}: symlink target longer than 4095 bytes")]
    SymlinkTooLong { path: String },
    #[error("directory (inode {ino}): {message}")]
    Directory { ino: u32, message: String },
    #[error("{path}: too fragmented ({extents} extents)")]
    TooFragmented { path: String, extents: usize },
}

/// How to size and label the filesystem.
#[derive(Debug, Clone)]
pub struct Options {
    /// Exact image size in bytes (rounded down to 4 KiB); default: content +
    /// metadata + `headroom`.
    pub size: Option<u64>,
    /// Free space to leave for the container's writes (available as the
    /// kernel counts it); default: the content size, at least 1 GiB. The
    /// image is sparse: free space costs no disk.
    pub headroom: Option<u64>,
    pub uuid: Option<[u8; 16]>,
    pub label: String,
    pub journal: bool,
    /// Superblock timestamps (seconds since the epoch); default: now.
    pub time: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            size: None,
            headroom: None,
            uuid: None,
            label: String::new(),
            journal: true,
            time: None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub layers: usize,
    pub entries: u64,
    pub inodes: u32,
    pub content_bytes: u64,
    pub blocks: u64,
    pub free_blocks: u64,
    pub image_bytes: u64,
}

/// Blocks of a filesystem of `total` blocks that the kernel keeps for its
/// own metadata and never offers to writes (`ext4_calculate_resv_clusters`:
/// 2%, at most 4096): the headroom is on top of them, so that it is what
/// `df` shows as available.
fn kernel_reserve(total: u64) -> u64 {
    (total / 50).min(4096)
}

/// An output that can be sized (a sparse file: set_len, not zeros).
pub trait ImageOutput: Write + Seek {
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl ImageOutput for std::fs::File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

impl ImageOutput for io::Cursor<Vec<u8>> {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.get_mut().resize(len as usize, 0);
        Ok(())
    }
}

/// Writes a filesystem holding `layers` applied in order into `out`.
/// `progress` receives the layer bytes read so far (all layers together).
pub fn build<W: ImageOutput, R: Read + Send>(
    layers: impl IntoIterator<Item = R>,
    out: &mut W,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, Error> {
    let mut tree = Tree::new();
    let mut stats = Stats::default();
    let data_end;
    {
        let mut sink = ImageSink::new(out, DATA_START);
        let mut base = 0u64;
        for (index, layer) in layers.into_iter().enumerate() {
            let read = AtomicU64::new(0);
            let st = apply_pipelined(&mut tree, layer, &mut sink, &read, &mut |n| {
                progress(base + n)
            })
            .map_err(|source| Error::Layer { index, source })?;
            base += read.load(Ordering::Relaxed);
            stats.layers += 1;
            stats.entries += st.entries;
        }
        sink.flush()?;
        data_end = sink.end();
        stats.content_bytes = sink.bytes_in;
    }
    Layout::plan(&tree, data_end, opts)?.write(&tree, out, opts, &mut stats)?;
    Ok(stats)
}

/// Applies one layer; a compressed layer is decompressed on a second thread
/// so that inflating and writing the image overlap (gzip alone is most of
/// the work otherwise).
fn apply_pipelined<W: Write + Seek, R: Read + Send>(
    tree: &mut Tree,
    mut layer: R,
    sink: &mut ImageSink<'_, W>,
    read: &AtomicU64,
    progress: &mut dyn FnMut(u64),
) -> Result<crate::tree::LayerStats, LayerError> {
    let mut prefix = Vec::with_capacity(512);
    (&mut layer)
        .take(512)
        .read_to_end(&mut prefix)
        .map_err(LayerError::Io)?;
    let compression = crate::layer::detect_compression(&prefix)?;
    read.store(prefix.len() as u64, Ordering::Relaxed);
    let raw = Counted {
        inner: io::Cursor::new(prefix).chain(layer),
        read,
    };
    if compression == crate::layer::Compression::None {
        let mut raw = raw;
        return tree.apply_layer(&mut raw, sink, &mut |_| {
            progress(read.load(Ordering::Relaxed))
        });
    }
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
        s.spawn(move || {
            let mut dec: Box<dyn Read> = match compression {
                crate::layer::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
                _ => match zstd::stream::read::Decoder::new(raw) {
                    Ok(d) => Box::new(d),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                },
            };
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let mut n = 0;
                // Fill the buffer: fewer, larger messages.
                while n < buf.len() {
                    match dec.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if n == 0 {
                    return;
                }
                buf.truncate(n);
                if tx.send(Ok(buf)).is_err() {
                    return; // the reader gave up (an error in the layer)
                }
            }
        });
        let mut piped = Piped {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        tree.apply_layer(&mut piped, sink, &mut |_| {
            progress(read.load(Ordering::Relaxed))
        })
    })
}

/// Counts the (compressed) bytes read, for progress.
struct Counted<'a, R> {
    inner: R,
    read: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The reading end of the decompression thread.
struct Piped {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Piped {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the thread finished: end of stream
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// (name, inode, file type) of one directory entry.
type DirEntryOwned = (Vec<u8>, u32, u8);

/// One inode to write.
struct Item {
    ino: u32,
    /// `None` for the synthetic lost+found.
    node: Option<NodeId>,
    path: String,
}

struct DirPlan {
    blocks: Vec<u8>,
    indexed: bool,
    subdirs: u32,
    start: u32,
}

struct Layout {
    uuid: [u8; 16],
    hash_seed: [u8; 16],
    fs_seed: u32,
    items: Vec<Item>,
    dirs: Vec<DirPlan>,
    /// ino → index in `dirs`
    dir_index: HashMap<u32, usize>,
    /// ino → xattr placement
    xattrs: HashMap<u32, XattrPlace>,
    xattr_blocks: Vec<(Vec<u8>, u32)>,
    /// (inode, block, target) of symlinks too long for the inode.
    symlink_blocks: Vec<(u32, u32, Vec<u8>)>,
    /// ino → (tree blocks start) for files with more than four extents
    extent_tree: HashMap<u32, u32>,
    groups: u32,
    ipg: u32,
    itb: u32,
    total_blocks: u32,
    data_end: u32,
    meta_end: u32,
    block_bitmaps: u32,
    inode_bitmaps: u32,
    inode_tables: u32,
    journal_blocks: u32,
    journal_start: u32,
    journal_tree: u32,
    max_ino: u32,
}

enum XattrPlace {
    Ibody(Vec<u8>),
    Block(usize),
}

fn ftype(kind: &NodeKind) -> u8 {
    match kind {
        NodeKind::Dir { .. } => file_type::DIR,
        NodeKind::File { .. } => file_type::REGULAR,
        NodeKind::Symlink { .. } => file_type::SYMLINK,
        NodeKind::CharDev { .. } => file_type::CHARDEV,
        NodeKind::BlockDev { .. } => file_type::BLOCKDEV,
        NodeKind::Fifo => file_type::FIFO,
        NodeKind::Socket => file_type::SOCKET,
    }
}

/// Xattrs as ext4 stores them; unsupported namespaces and malformed ACLs are dropped.
fn ext4_xattrs(meta: &crate::types::Meta) -> Vec<Xattr> {
    let mut v: Vec<Xattr> = meta
        .xattrs
        .iter()
        .filter_map(|(name, value)| {
            let (index, suffix) = inode::split_xattr_name(name)?;
            let value = if index == 2 || index == 3 {
                inode::acl_to_ext4(value)?
            } else {
                value.clone()
            };
            Some(Xattr {
                index,
                name: suffix.to_vec(),
                value,
            })
        })
        .collect();
    inode::sort_xattrs(&mut v);
    v
}

impl Layout {
    fn plan(tree: &Tree, data_end: u32, opts: &Options) -> Result<Self, Error> {
        let rnd = skiff_util::id::random_bytes::<32>();
        let uuid = opts.uuid.unwrap_or_else(|| {
            let mut u = [0u8; 16];
            u.copy_from_slice(&rnd[..16]);
            u[6] = (u[6] & 0x0F) | 0x40; // version 4
            u[8] = (u[8] & 0x3F) | 0x80;
            u
        });
        let mut hash_seed = [0u8; 16];
        hash_seed.copy_from_slice(&rnd[16..32]);
        let fs_seed = crc32c(!0, &uuid);

        // Inode numbers: depth-first so a directory's files sit together.
        let root = tree.root();
        let mut ino_of: HashMap<NodeId, u32> = HashMap::new();
        let mut items = vec![Item {
            ino: ROOT_INO,
            node: Some(root),
            path: "/".into(),
        }];
        ino_of.insert(root, ROOT_INO);
        let root_children = match &tree.node(root).kind {
            NodeKind::Dir { children } => children,
            _ => unreachable!("the tree's root is a directory"),
        };
        let lf_node = root_children.get(&b"lost+found"[..]).copied();
        let synthetic_lf = match lf_node {
            // The layers' own /lost+found, whatever it is (GNU tar and docker
            // extract a file there as a file; e2fsck and the kernel need no
            // lost+found to pass or mount), takes inode 11, as mke2fs's does.
            Some(id) => {
                ino_of.insert(id, LOST_FOUND_INO);
                items.push(Item {
                    ino: LOST_FOUND_INO,
                    node: Some(id),
                    path: "/lost+found".into(),
                });
                false
            }
            None => {
                items.push(Item {
                    ino: LOST_FOUND_INO,
                    node: None,
                    path: "/lost+found".into(),
                });
                true
            }
        };
        let mut next = FIRST_INO;
        let mut stack = vec![(root, ROOT_INO, ROOT_INO, String::new())];
        let mut dir_entries: Vec<(u32, u32, Vec<DirEntryOwned>)> = Vec::new();
        while let Some((id, ino, parent, path)) = stack.pop() {
            let NodeKind::Dir { children } = &tree.node(id).kind else {
                continue;
            };
            let mut entries = Vec::with_capacity(children.len() + 1);
            let mut subdirs = Vec::new();
            for (name, &child) in children {
                let node = tree.node(child);
                let child_path = format!("{path}/{}", String::from_utf8_lossy(name));
                let cino = match ino_of.get(&child) {
                    Some(&i) => i,
                    None => {
                        let i = next;
                        next += 1;
                        ino_of.insert(child, i);
                        items.push(Item {
                            ino: i,
                            node: Some(child),
                            path: child_path.clone(),
                        });
                        i
                    }
                };
                if matches!(node.kind, NodeKind::Dir { .. }) {
                    subdirs.push((child, cino, ino, child_path));
                }
                entries.push((name.clone(), cino, ftype(&node.kind)));
            }
            if id == root && synthetic_lf {
                entries.push((b"lost+found".to_vec(), LOST_FOUND_INO, file_type::DIR));
            }
            dir_entries.push((ino, parent, entries));
            // Reverse so the first child is visited first.
            for s in subdirs.into_iter().rev() {
                stack.push(s);
            }
        }
        if synthetic_lf {
            dir_entries.push((LOST_FOUND_INO, ROOT_INO, Vec::new()));
        }
        let max_ino = next - 1;

        // Directories.
        let hash = HashParams {
            version: HashVersion::HalfMd4,
            unsigned: false,
            seed: crate::hash::seed_from_uuid(&hash_seed),
        };
        let mut dirs = Vec::with_capacity(dir_entries.len());
        let mut dir_index = HashMap::new();
        for (ino, parent, entries) in &dir_entries {
            let des: Vec<DirEntry<'_>> = entries
                .iter()
                .map(|(n, i, t)| DirEntry {
                    name: n,
                    inode: *i,
                    file_type: *t,
                })
                .collect();
            let csum = DirCsum {
                seed: fs_seed,
                inode: *ino,
                generation: 0,
            };
            let built =
                try_build_dir(*ino, *parent, &des, &csum, &hash).map_err(|e| Error::Directory {
                    ino: *ino,
                    message: e.to_string(),
                })?;
            let subdirs = entries.iter().filter(|e| e.2 == file_type::DIR).count() as u32;
            dir_index.insert(*ino, dirs.len());
            dirs.push(DirPlan {
                blocks: built.blocks,
                indexed: built.indexed,
                subdirs,
                start: 0,
            });
        }

        // Xattrs: in the inode when they fit, else a block shared by identical sets.
        let mut xattrs = HashMap::new();
        let mut xattr_blocks: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut block_of: HashMap<Vec<Xattr>, usize> = HashMap::new();
        for it in &items {
            let Some(id) = it.node else { continue };
            let xs = ext4_xattrs(&tree.node(id).meta);
            if xs.is_empty() {
                continue;
            }
            if inode::ibody_size(&xs) <= inode::IBODY_XATTR_SPACE {
                xattrs.insert(it.ino, XattrPlace::Ibody(inode::encode_ibody(&xs)));
            } else if inode::fits_block(&xs) {
                let i = *block_of.entry(xs.clone()).or_insert_with(|| {
                    xattr_blocks.push((Vec::new(), 0));
                    xattr_blocks.len() - 1
                });
                xattr_blocks[i].1 += 1;
                if xattr_blocks[i].0.is_empty() {
                    xattr_blocks[i].0 = inode::encode_xattr_block(&xs, 0);
                }
                xattrs.insert(it.ino, XattrPlace::Block(i));
            } else {
                return Err(Error::XattrTooLarge {
                    path: it.path.clone(),
                });
            }
        }

        // Slow symlinks and extent trees.
        let mut symlink_blocks = Vec::new();
        let mut extent_tree_count = 0usize;
        let mut trees = Vec::new();
        for it in &items {
            let Some(id) = it.node else { continue };
            match &tree.node(id).kind {
                NodeKind::Symlink { target } if target.len() >= 60 => {
                    if target.len() > 4095 {
                        return Err(Error::SymlinkTooLong {
                            path: it.path.clone(),
                        });
                    }
                    symlink_blocks.push((it.ino, target.clone()));
                }
                NodeKind::File { data } if data.extents.len() > 4 => {
                    if data.extents.len() > 4 * 340 * 340 {
                        return Err(Error::TooFragmented {
                            path: it.path.clone(),
                            extents: data.extents.len(),
                        });
                    }
                    let n = inode::extent_tree_blocks(data.extents.len());
                    trees.push((it.ino, n));
                    extent_tree_count += n;
                }
                _ => {}
            }
        }

        let dir_blocks: u64 = dirs.iter().map(|d| (d.blocks.len() / BS) as u64).sum();
        let fixed = dir_blocks
            + xattr_blocks.len() as u64
            + symlink_blocks.len() as u64
            + extent_tree_count as u64;
        let content_blocks = (data_end - DATA_START) as u64;
        let headroom = opts
            .headroom
            .map(|h| h / BLOCK_SIZE)
            .unwrap_or_else(|| content_blocks.max((1u64 << 30) / BLOCK_SIZE));
        let used_inodes = max_ino as u64;
        let wanted_inodes = used_inodes + headroom * BLOCK_SIZE / BYTES_PER_INODE;

        // Geometry depends on the size, which depends on the metadata: iterate.
        // A group holds at most 32768 inodes: enough groups for every inode
        // (the last one not tiny).
        let min_groups = used_inodes.div_ceil(32768).max(1);
        let min_total = (min_groups - 1) * BLOCKS_PER_GROUP as u64 + 1024;
        let mut total = (data_end as u64 + fixed + headroom).max(min_total);
        let mut plan = None;
        for _ in 0..16 {
            let groups = total.div_ceil(BLOCKS_PER_GROUP as u64).max(1);
            if groups > (GDT_RESERVED as u64 * BS as u64 / DESC_SIZE as u64)
                || total >= u32::MAX as u64
            {
                return Err(Error::TooLarge);
            }
            let mut ipg = wanted_inodes.div_ceil(groups).div_ceil(16) * 16;
            ipg = ipg.clamp(16, 32768);
            let itb = ipg * INODE_SIZE as u64 / BLOCK_SIZE;
            let journal = if opts.journal {
                superblock::default_journal_blocks(total) as u64
            } else {
                0
            };
            let jtree =
                inode::extent_tree_blocks(journal.div_ceil(MAX_EXTENT_LEN as u64) as usize) as u64;
            let meta = 2 * groups + groups * itb + fixed + journal + jtree;
            let needed = data_end as u64 + meta;
            let new_total = match opts.size {
                Some(size) => {
                    let given = size / BLOCK_SIZE;
                    if given < needed.max(min_total) {
                        return Err(Error::TooSmall {
                            needed: needed.max(min_total) * BLOCK_SIZE,
                            given: size,
                        });
                    }
                    given
                }
                None => (needed + headroom + kernel_reserve(total)).max(min_total),
            };
            plan = Some((
                groups as u32,
                ipg as u32,
                itb as u32,
                journal as u32,
                jtree as u32,
            ));
            if new_total == total {
                break;
            }
            total = new_total;
        }
        let (groups, ipg, itb, journal_blocks, jtree) = plan.ok_or(Error::TooLarge)?;
        if total.div_ceil(BLOCKS_PER_GROUP as u64) != groups as u64 {
            return Err(Error::TooLarge);
        }

        // Place the metadata after the data.
        let mut at = data_end;
        let mut take = |n: u64| {
            let s = at;
            at += n as u32;
            s
        };
        let block_bitmaps = take(groups as u64);
        let inode_bitmaps = take(groups as u64);
        let inode_tables = take(groups as u64 * itb as u64);
        for d in dirs.iter_mut() {
            d.start = take((d.blocks.len() / BS) as u64);
        }
        for b in xattr_blocks.iter_mut() {
            let blk = take(1);
            let mut block = std::mem::take(&mut b.0);
            // Refcount and checksum depend on the final sharing and place.
            block[4..8].copy_from_slice(&b.1.to_le_bytes());
            inode::seal_xattr_block(&mut block, blk, fs_seed);
            b.0 = block;
            b.1 = blk;
        }
        let symlink_blocks: Vec<(u32, u32, Vec<u8>)> = symlink_blocks
            .into_iter()
            .map(|(ino, target)| (ino, take(1), target))
            .collect();
        let mut extent_tree = HashMap::new();
        for (ino, n) in trees {
            extent_tree.insert(ino, take(n as u64));
        }
        let journal_start = take(journal_blocks as u64);
        let journal_tree = take(jtree as u64);
        let meta_end = at;
        Ok(Layout {
            uuid,
            hash_seed,
            fs_seed,
            items,
            dirs,
            dir_index,
            xattrs,
            xattr_blocks,
            symlink_blocks,
            extent_tree,
            groups,
            ipg,
            itb,
            total_blocks: total as u32,
            data_end,
            meta_end,
            block_bitmaps,
            inode_bitmaps,
            inode_tables,
            journal_blocks,
            journal_start,
            journal_tree,
            max_ino,
        })
    }

    fn write<W: ImageOutput>(
        &self,
        tree: &Tree,
        out: &mut W,
        opts: &Options,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let time = opts.time.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32)
        });
        let gdt_blocks = (self.groups as usize * DESC_SIZE).div_ceil(BS) as u32;
        let total = self.total_blocks as u64;
        let mut bitmap = vec![0u8; self.groups as usize * BS];
        let mut mark = |start: u64, len: u64| {
            for b in start..start + len {
                bitmap[(b / 8) as usize] |= 1 << (b % 8);
            }
        };
        mark(0, 1 + gdt_blocks as u64);
        mark(self.data_end as u64, (self.meta_end - self.data_end) as u64);
        // Live file data (each hardlinked file once).
        for it in &self.items {
            if let Some(id) = it.node {
                if let NodeKind::File { data } = &tree.node(id).kind {
                    for e in &data.extents {
                        mark(e.physical as u64, e.len as u64);
                    }
                }
            }
        }
        // Bits past the end of the filesystem are set, as e2fsck expects.
        mark(total, self.groups as u64 * BLOCKS_PER_GROUP as u64 - total);

        // Inodes.
        let symlink_block: HashMap<u32, u32> = self
            .symlink_blocks
            .iter()
            .map(|(ino, blk, _)| (*ino, *blk))
            .collect();
        let mut table = vec![0u8; self.max_ino as usize * INODE_SIZE];
        let mut extent_blocks: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut dirs_per_group = vec![0u16; self.groups as usize];
        for ino in 1..=self.max_ino {
            if ino >= FIRST_INO || ino == ROOT_INO || ino == LOST_FOUND_INO || ino == JOURNAL_INO {
                continue;
            }
            let raw = inode::encode_inode(&InodeSpec::default(), ino, self.fs_seed);
            table[(ino as usize - 1) * INODE_SIZE..ino as usize * INODE_SIZE].copy_from_slice(&raw);
        }
        for it in &self.items {
            let mut spec = InodeSpec::default();
            let (meta_mode, meta) = match it.node {
                Some(id) => {
                    let n = tree.node(id);
                    (n.meta.mode & 0o7777, Some(n))
                }
                None => (0o700, None),
            };
            if let Some(n) = meta {
                spec.uid = n.meta.uid;
                spec.gid = n.meta.gid;
                spec.atime = n.meta.atime;
                spec.ctime = n.meta.ctime;
                spec.mtime = n.meta.mtime;
                spec.crtime = n.meta.ctime;
                spec.links = n.links.min(65000) as u16;
            } else {
                let t = Timestamp {
                    secs: time as i64,
                    nanos: 0,
                };
                (spec.atime, spec.ctime, spec.mtime, spec.crtime) = (t, t, t, t);
            }
            let kind = meta.map(|n| &n.kind);
            match kind {
                Some(NodeKind::Dir { .. }) | None => {
                    let d = &self.dirs[self.dir_index[&it.ino]];
                    let nblocks = (d.blocks.len() / BS) as u32;
                    spec.mode = inode::S_IFDIR | meta_mode;
                    spec.size = nblocks as u64 * BLOCK_SIZE;
                    spec.sectors = nblocks as u64 * 8;
                    spec.flags =
                        inode::EXT4_EXTENTS_FL | if d.indexed { inode::EXT4_INDEX_FL } else { 0 };
                    let ext = [Extent {
                        logical: 0,
                        physical: d.start,
                        len: nblocks,
                    }];
                    spec.i_block = inode::build_extent_tree(&ext, &[], it.ino, self.fs_seed).0;
                    let links = 2 + d.subdirs;
                    spec.links = if links > 65000 { 1 } else { links as u16 };
                    dirs_per_group[((it.ino - 1) / self.ipg) as usize] += 1;
                }
                Some(NodeKind::File { data }) => {
                    spec.mode = inode::S_IFREG | meta_mode;
                    spec.size = data.size;
                    spec.flags = inode::EXT4_EXTENTS_FL;
                    let tree_blocks: Vec<u32> = match self.extent_tree.get(&it.ino) {
                        Some(&start) => (start
                            ..start + inode::extent_tree_blocks(data.extents.len()) as u32)
                            .collect(),
                        None => Vec::new(),
                    };
                    let (root, blocks) =
                        inode::build_extent_tree(&data.extents, &tree_blocks, it.ino, self.fs_seed);
                    spec.i_block = root;
                    spec.sectors = (data.allocated_blocks() + blocks.len() as u64) * 8;
                    extent_blocks.extend(blocks);
                }
                Some(NodeKind::Symlink { target }) => {
                    spec.mode = inode::S_IFLNK | 0o777;
                    spec.size = target.len() as u64;
                    if let Some(&blk) = symlink_block.get(&it.ino) {
                        spec.flags = inode::EXT4_EXTENTS_FL;
                        let ext = [Extent {
                            logical: 0,
                            physical: blk,
                            len: 1,
                        }];
                        spec.i_block = inode::build_extent_tree(&ext, &[], it.ino, self.fs_seed).0;
                        spec.sectors = 8;
                    } else {
                        spec.i_block[..target.len()].copy_from_slice(target);
                    }
                }
                Some(NodeKind::CharDev { major, minor })
                | Some(NodeKind::BlockDev { major, minor }) => {
                    spec.mode = meta_mode
                        | if matches!(kind, Some(NodeKind::CharDev { .. })) {
                            inode::S_IFCHR
                        } else {
                            inode::S_IFBLK
                        };
                    let (major, minor) = (*major, *minor);
                    if major < 256 && minor < 256 {
                        spec.i_block[0..4].copy_from_slice(&((major << 8) | minor).to_le_bytes());
                    } else {
                        let enc = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
                        spec.i_block[4..8].copy_from_slice(&enc.to_le_bytes());
                    }
                }
                Some(NodeKind::Fifo) => spec.mode = inode::S_IFIFO | meta_mode,
                Some(NodeKind::Socket) => spec.mode = inode::S_IFSOCK | meta_mode,
            }
            match self.xattrs.get(&it.ino) {
                Some(XattrPlace::Ibody(b)) => spec.ibody_xattrs = Some(b.clone()),
                Some(XattrPlace::Block(i)) => {
                    spec.xattr_block = self.xattr_blocks[*i].1;
                    spec.sectors += 8;
                }
                None => {}
            }
            let raw = inode::encode_inode(&spec, it.ino, self.fs_seed);
            table[(it.ino as usize - 1) * INODE_SIZE..it.ino as usize * INODE_SIZE]
                .copy_from_slice(&raw);
        }
        // The journal inode.
        let mut jcopy = None;
        if self.journal_blocks > 0 {
            let mut ext = Vec::new();
            let mut l = 0;
            while l < self.journal_blocks {
                let len = (self.journal_blocks - l).min(MAX_EXTENT_LEN);
                ext.push(Extent {
                    logical: l,
                    physical: self.journal_start + l,
                    len,
                });
                l += len;
            }
            let jt: Vec<u32> = (self.journal_tree
                ..self.journal_tree + inode::extent_tree_blocks(ext.len()) as u32)
                .collect();
            let (root, blocks) = inode::build_extent_tree(&ext, &jt, JOURNAL_INO, self.fs_seed);
            extent_blocks.extend(blocks);
            let t = Timestamp {
                secs: time as i64,
                nanos: 0,
            };
            let spec = InodeSpec {
                mode: inode::S_IFREG | 0o600,
                size: self.journal_blocks as u64 * BLOCK_SIZE,
                links: 1,
                atime: t,
                ctime: t,
                mtime: t,
                crtime: t,
                flags: inode::EXT4_EXTENTS_FL,
                sectors: (self.journal_blocks as u64 + jt.len() as u64) * 8,
                i_block: root,
                ..Default::default()
            };
            let raw = inode::encode_inode(&spec, JOURNAL_INO, self.fs_seed);
            table[(JOURNAL_INO as usize - 1) * INODE_SIZE..JOURNAL_INO as usize * INODE_SIZE]
                .copy_from_slice(&raw);
            let mut j = [0u8; 68];
            j[..60].copy_from_slice(&root);
            j[60..64].copy_from_slice(&((spec.size >> 32) as u32).to_le_bytes());
            j[64..68].copy_from_slice(&(spec.size as u32).to_le_bytes());
            jcopy = Some(j);
        }

        // Group descriptors and bitmaps.
        let mut gdt = vec![0u8; gdt_blocks as usize * BS];
        let mut free_blocks_total = 0u64;
        let mut free_inodes_total = 0u64;
        let ibm_bytes = self.ipg as usize / 8;
        for g in 0..self.groups {
            let bb = &bitmap[g as usize * BS..(g as usize + 1) * BS];
            let used: u32 = bb.iter().map(|b| b.count_ones()).sum();
            let free_blocks = BLOCKS_PER_GROUP - used;
            let first = g * self.ipg + 1;
            let used_inodes = self.max_ino.saturating_sub(first - 1).min(self.ipg);
            let mut ib = vec![0u8; BS];
            for i in 0..used_inodes as usize {
                ib[i / 8] |= 1 << (i % 8);
            }
            for i in self.ipg as usize..BS * 8 {
                ib[i / 8] |= 1 << (i % 8);
            }
            let desc = GroupDesc {
                block_bitmap: self.block_bitmaps + g,
                inode_bitmap: self.inode_bitmaps + g,
                inode_table: self.inode_tables + g * self.itb,
                free_blocks: free_blocks as u16,
                free_inodes: (self.ipg - used_inodes) as u16,
                used_dirs: dirs_per_group[g as usize],
                block_bitmap_csum: crc32c(self.fs_seed, bb),
                inode_bitmap_csum: crc32c(self.fs_seed, &ib[..ibm_bytes]),
                itable_unused: (self.ipg - used_inodes) as u16,
            };
            free_blocks_total += free_blocks as u64;
            free_inodes_total += (self.ipg - used_inodes) as u64;
            gdt[g as usize * DESC_SIZE..(g as usize + 1) * DESC_SIZE]
                .copy_from_slice(&desc.encode(g, self.fs_seed));
            write_at(out, (self.inode_bitmaps + g) as u64, &ib)?;
        }
        write_at(out, self.block_bitmaps as u64, &bitmap)?;
        write_at(out, 1, &gdt)?;
        // Inode tables: only the used part is written; the rest stays a hole (zeros).
        for g in 0..self.groups {
            let first = (g * self.ipg) as usize;
            if first >= self.max_ino as usize {
                break;
            }
            let last = ((g + 1) * self.ipg).min(self.max_ino) as usize;
            write_at(
                out,
                (self.inode_tables + g * self.itb) as u64,
                &table[first * INODE_SIZE..last * INODE_SIZE],
            )?;
        }
        for d in &self.dirs {
            write_at(out, d.start as u64, &d.blocks)?;
        }
        for (block, blk) in &self.xattr_blocks {
            write_at(out, *blk as u64, block)?;
        }
        for (_, blk, target) in &self.symlink_blocks {
            write_at(out, *blk as u64, target)?;
        }
        for (blk, b) in &extent_blocks {
            write_at(out, *blk as u64, b)?;
        }
        if self.journal_blocks > 0 {
            write_at(
                out,
                self.journal_start as u64,
                &superblock::journal_superblock(self.journal_blocks, &self.uuid),
            )?;
        }
        let mut label = [0u8; 16];
        let lb = opts.label.as_bytes();
        label[..lb.len().min(16)].copy_from_slice(&lb[..lb.len().min(16)]);
        let sb = Superblock {
            inodes_count: self.groups * self.ipg,
            blocks_count: self.total_blocks,
            free_blocks: free_blocks_total as u32,
            free_inodes: free_inodes_total as u32,
            inodes_per_group: self.ipg,
            time,
            uuid: self.uuid,
            label,
            hash_seed: self.hash_seed,
            journal: jcopy,
        };
        out.seek(SeekFrom::Start(1024))?;
        out.write_all(&sb.encode())?;
        out.flush()?;
        out.set_len(total * BLOCK_SIZE)?;
        stats.inodes = self.max_ino;
        stats.blocks = total;
        stats.free_blocks = free_blocks_total;
        stats.image_bytes = total * BLOCK_SIZE;
        Ok(())
    }
}

fn write_at<W: Write + Seek>(out: &mut W, block: u64, data: &[u8]) -> io::Result<()> {
    out.seek(SeekFrom::Start(block * BLOCK_SIZE))?;
    out.write_all(data)
}
