//! Directory blocks: one linear block for small directories, a hash tree
//! (`dir_index`) for the rest; always with `metadata_csum` tails.
//!
//! Layout facts (ext4 disk-layout documentation, "Directory Entries" and
//! "Hash Tree Directories"; kernel `fs/ext4/namei.c`; e2fsprogs
//! `lib/ext2fs/csum.c` and `e2fsck/pass2.c`):
//!
//! - A dirent is `{inode le32, rec_len le16, name_len u8, file_type u8, name}`;
//!   `rec_len` is `8 + name_len` rounded up to 4, except that the last entry
//!   of a block stretches to the 12-byte tail `{0, 12, 0, 0xDE, crc le32}`.
//!   The leaf checksum is `crc32c(dir_seed, block[..4084])`, where `dir_seed`
//!   is `crc32c(crc32c(fs_seed, ino_le32), generation_le32)`.
//! - Block 0 of an indexed directory (`dx_root`): "." (rec_len 12), ".."
//!   (rec_len 4084), `dx_root_info` at offset 24 `{reserved_zero le32,
//!   hash_version, info_length = 8, indirect_levels, unused_flags}`, then at
//!   offset 32 `{limit le16, count le16, block le32}` and `count - 1` entries
//!   `{hash le32, block le32}`. An interior block (`dx_node`) is a fake empty
//!   dirent `{0, rec_len 4096}` followed by the same count/limit array at
//!   offset 8. With `metadata_csum` the limit leaves room for an 8-byte
//!   `dx_tail {dt_reserved, dt_checksum}` right after `limit` entries:
//!   507 entries in the root, 510 in a node (e2fsck requires exactly these
//!   limits), so the tail sits at byte 4088 in both.
//! - dx checksum: `crc32c(dir_seed, block[..count_offset + 8 * count])`, then
//!   continued over the whole 8-byte tail with `dt_checksum` taken as zero.
//! - A dx entry's hash is the least hash in the subtree it points to; the
//!   first entry of each array has an implicit hash (its slot holds
//!   count/limit). Lookup descends to the last entry whose hash is `<=` the
//!   name's hash and, if the name is not in that leaf, steps on to the next
//!   leaf only while the next entry's hash (low bit masked) equals the
//!   name's hash. A run of equal hashes that continues from one leaf into the
//!   next therefore marks the later leaf's hash with the low bit set (the
//!   kernel's "continuation" bit): its `hash | 1` sorts above the run's hash,
//!   so lookups start in the earlier leaf and walk forward.
//!
//! Layout choices here: entries are sorted by (hash, minor hash, name) and
//! packed into leaves filled to about 7/8 ([`LEAF_FILL`]) so that the guest
//! kernel can add names without splitting at once; a run of equal hashes
//! that crosses the fill mark is kept in one leaf while it fits, and only
//! longer runs are split with the continuation bit. Up to 507 leaves hang
//! off the root (`indirect_levels` 0); beyond that, ceil(leaves / 510)
//! interior nodes share the leaves evenly (`indirect_levels` 1). Block order:
//! root, interior nodes, leaves.

use crate::checksum::crc32c;
use crate::hash::{dx_hash, HashVersion};
use crate::types::{file_type, BLOCK_SIZE};

const BS: usize = BLOCK_SIZE as usize;
/// Size of `ext4_dir_entry_tail`.
const TAIL: usize = 12;
/// Bytes of a leaf available to entries.
const LEAF_SPACE: usize = BS - TAIL;
/// Leaves are filled up to this many bytes of entries (7/8 of the space)
/// before a new one is started.
pub const LEAF_FILL: usize = LEAF_SPACE * 7 / 8;
/// `count_offset` of the root's dx array: "." (12) + ".." (12) + info (8).
const ROOT_COUNT_OFFSET: usize = 32;
/// `count_offset` of an interior node's dx array: the fake dirent header.
const NODE_COUNT_OFFSET: usize = 8;
/// Size of `dx_tail`.
const DX_TAIL: usize = 8;
/// dx entries that fit in the root with a `dx_tail` (507).
pub const ROOT_LIMIT: usize = (BS - ROOT_COUNT_OFFSET - DX_TAIL) / 8;
/// dx entries that fit in an interior node with a `dx_tail` (510).
pub const NODE_LIMIT: usize = (BS - NODE_COUNT_OFFSET - DX_TAIL) / 8;
/// The most leaves a two-level tree (no `large_dir`) can address.
pub const MAX_LEAVES: usize = ROOT_LIMIT * NODE_LIMIT;

/// One name in a directory ("." and ".." are not given; the builder adds
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// 1..=255 bytes, no `/`, no NUL.
    pub name: &'a [u8],
    pub inode: u32,
    /// One of [`crate::types::file_type`].
    pub file_type: u8,
}

/// What a directory's block checksums depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirCsum {
    /// The filesystem checksum seed: `crc32c(!0, s_uuid)` (or
    /// `s_checksum_seed` with the `metadata_csum_seed` feature).
    pub seed: u32,
    /// The directory's inode number.
    pub inode: u32,
    /// The directory inode's `i_generation`.
    pub generation: u32,
}

impl DirCsum {
    /// The per-inode seed: `crc32c(crc32c(seed, inode_le32), generation_le32)`.
    pub fn dir_seed(&self) -> u32 {
        let s = crc32c(self.seed, &self.inode.to_le_bytes());
        crc32c(s, &self.generation.to_le_bytes())
    }
}

/// How names are hashed: the superblock's `s_def_hash_version`, its
/// signed/unsigned flag (`s_flags`) and `s_hash_seed` (four little-endian
/// words; see [`crate::hash::seed_from_uuid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub version: HashVersion,
    pub unsigned: bool,
    pub seed: [u32; 4],
}

/// A directory's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltDir {
    /// `n * 4096` bytes, in logical block order (the directory's `i_size`).
    pub blocks: Vec<u8>,
    /// The inode needs `EXT4_INDEX_FL` (0x1000): block 0 is a `dx_root`.
    pub indexed: bool,
}

impl BuiltDir {
    /// Number of 4 KiB blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len() / BS
    }
}

/// Why a directory cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    #[error("directory entry name of {len} bytes (must be 1 to 255)")]
    NameLength { len: usize },
    #[error("directory entry name contains '/' or NUL")]
    NameBytes,
    #[error("directory has too many entries ({entries}) for a two-level hash tree")]
    TooManyEntries { entries: usize },
}

/// `rec_len` of an entry whose name has `name_len` bytes (not the last in
/// its block).
#[inline]
pub const fn rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

/// Builds the blocks of directory `self_ino` (whose parent is `parent_ino`)
/// holding `entries` plus "." and "..". Names must be unique and valid
/// (1..=255 bytes, no `/` or NUL). `csum.inode` is normally `self_ino`.
/// The result is the directory's whole contents: `i_size` is
/// `blocks.len()`, and an `indexed` one needs `EXT4_INDEX_FL` on its inode.
///
/// # Panics
/// On an invalid name or when there are more entries than a two-level hash
/// tree holds (millions); [`try_build_dir`] reports those as errors instead.
pub fn build_dir(
    self_ino: u32,
    parent_ino: u32,
    entries: &[DirEntry],
    csum: &DirCsum,
    hash: &HashParams,
) -> BuiltDir {
    match try_build_dir(self_ino, parent_ino, entries, csum, hash) {
        Ok(d) => d,
        Err(e) => panic!("build_dir: {e}"),
    }
}

/// [`build_dir`] that checks names and size instead of panicking.
pub fn try_build_dir(
    self_ino: u32,
    parent_ino: u32,
    entries: &[DirEntry],
    csum: &DirCsum,
    hash: &HashParams,
) -> Result<BuiltDir, DirError> {
    for e in entries {
        if e.name.is_empty() || e.name.len() > 255 {
            return Err(DirError::NameLength { len: e.name.len() });
        }
        if e.name.iter().any(|&b| b == b'/' || b == 0) {
            return Err(DirError::NameBytes);
        }
    }
    let h = |name: &[u8]| dx_hash(name, hash.version, hash.unsigned, &hash.seed);
    match build_with(
        self_ino,
        parent_ino,
        entries,
        csum.dir_seed(),
        hash.version,
        &h,
        LEAF_FILL,
        LEAF_SPACE,
    ) {
        Some(d) => Ok(d),
        // Too many leaves at the normal fill: pack them full.
        None => build_with(
            self_ino,
            parent_ino,
            entries,
            csum.dir_seed(),
            hash.version,
            &h,
            LEAF_SPACE,
            LEAF_SPACE,
        )
        .ok_or(DirError::TooManyEntries {
            entries: entries.len(),
        }),
    }
}

/// The builder proper. `fill` is where a new leaf is started; a run of
/// equal hashes may stretch a leaf up to `max_fill` (`<= LEAF_SPACE`).
/// `None` when the leaves do not fit in two levels.
#[allow(clippy::too_many_arguments)]
fn build_with(
    self_ino: u32,
    parent_ino: u32,
    entries: &[DirEntry],
    dir_seed: u32,
    version: HashVersion,
    hash: &dyn Fn(&[u8]) -> (u32, u32),
    fill: usize,
    max_fill: usize,
) -> Option<BuiltDir> {
    let linear_size =
        rec_len(1) + rec_len(2) + entries.iter().map(|e| rec_len(e.name.len())).sum::<usize>();
    if linear_size <= LEAF_SPACE {
        let mut blocks = vec![0u8; BS];
        let mut w = LeafWriter::new(&mut blocks);
        w.push(self_ino, b".", file_type::DIR);
        w.push(parent_ino, b"..", file_type::DIR);
        for e in entries {
            w.push(e.inode, e.name, e.file_type);
        }
        w.finish(dir_seed);
        return Some(BuiltDir {
            blocks,
            indexed: false,
        });
    }

    // Hash (one sequential pass over the entries) and sort by (hash, minor
    // hash, name).
    let mut keyed: Vec<Keyed> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (hash, minor) = hash(e.name);
            Keyed {
                hash,
                minor,
                idx: i as u32,
                rec_len: rec_len(e.name.len()) as u32,
            }
        })
        .collect();
    keyed.sort_unstable_by(|a, b| {
        (a.hash, a.minor).cmp(&(b.hash, b.minor)).then_with(|| {
            entries[a.idx as usize]
                .name
                .cmp(entries[b.idx as usize].name)
        })
    });

    // Pack leaves in hash order, noting where each entry goes (as an offset
    // from the first leaf) and where each leaf's last entry starts.
    let mut leaves: Vec<Leaf> = Vec::with_capacity(keyed.len() / 64 + 1);
    let mut place = vec![0u32; entries.len()];
    let mut used = 0usize;
    let mut cur = Leaf {
        dx_hash: 0,
        last: 0,
    };
    for (i, k) in keyed.iter().enumerate() {
        let rl = k.rec_len as usize;
        if i > 0 && used + rl > fill {
            let continues_run = keyed[i - 1].hash == k.hash;
            if !(continues_run && used + rl <= max_fill) {
                leaves.push(cur);
                cur = Leaf {
                    dx_hash: k.hash | continues_run as u32,
                    last: 0,
                };
                used = 0;
            }
        }
        cur.last = used as u32;
        place[k.idx as usize] = (leaves.len() * BS + used) as u32;
        used += rl;
    }
    leaves.push(cur);
    let nleaves = leaves.len();
    if nleaves > MAX_LEAVES {
        return None;
    }

    // Interior nodes, when the root cannot address every leaf.
    let nnodes = if nleaves <= ROOT_LIMIT {
        0
    } else {
        nleaves.div_ceil(NODE_LIMIT)
    };
    let first_leaf_block = 1 + nnodes;
    let nblocks = first_leaf_block + nleaves;
    let mut blocks = vec![0u8; nblocks * BS];

    // Leaves: write the entries in their given order (sequential reads,
    // scattered writes), then stretch each leaf's last entry to the tail
    // and checksum the block.
    let base = first_leaf_block * BS;
    for (e, &p) in entries.iter().zip(&place) {
        let off = base + p as usize;
        put_dirent(
            &mut blocks,
            off,
            e.inode,
            rec_len(e.name.len()),
            e.name,
            e.file_type,
        );
    }
    for (l, leaf) in leaves.iter().enumerate() {
        let b = &mut blocks[base + l * BS..base + (l + 1) * BS];
        let last = leaf.last as usize;
        b[last + 4..last + 6].copy_from_slice(&disk_rec_len(LEAF_SPACE - last).to_le_bytes());
        put_tail(b, dir_seed);
    }

    // Root.
    {
        let root = &mut blocks[..BS];
        put_dirent(root, 0, self_ino, rec_len(1), b".", file_type::DIR);
        put_dirent(root, 12, parent_ino, BS - 12, b"..", file_type::DIR);
        // dx_root_info: reserved_zero (already 0), hash_version, info_length,
        // indirect_levels, unused_flags (0).
        root[28] = version.on_disk();
        root[29] = 8;
        root[30] = (nnodes > 0) as u8;
    }
    if nnodes == 0 {
        let dx: Vec<(u32, u32)> = leaves
            .iter()
            .enumerate()
            .map(|(l, leaf)| (leaf.dx_hash, (first_leaf_block + l) as u32))
            .collect();
        put_dx(
            &mut blocks[..BS],
            ROOT_COUNT_OFFSET,
            ROOT_LIMIT,
            &dx,
            dir_seed,
        );
    } else {
        let mut root_dx = Vec::with_capacity(nnodes);
        for n in 0..nnodes {
            // Share the leaves evenly: node n gets [lo, hi).
            let lo = n * nleaves / nnodes;
            let hi = (n + 1) * nleaves / nnodes;
            let dx: Vec<(u32, u32)> = (lo..hi)
                .map(|l| (leaves[l].dx_hash, (first_leaf_block + l) as u32))
                .collect();
            let node = &mut blocks[(1 + n) * BS..(2 + n) * BS];
            // Fake empty dirent spanning the block: inode 0, rec_len 4096.
            node[4..6].copy_from_slice(&disk_rec_len(BS).to_le_bytes());
            put_dx(node, NODE_COUNT_OFFSET, NODE_LIMIT, &dx, dir_seed);
            root_dx.push((leaves[lo].dx_hash, (1 + n) as u32));
        }
        put_dx(
            &mut blocks[..BS],
            ROOT_COUNT_OFFSET,
            ROOT_LIMIT,
            &root_dx,
            dir_seed,
        );
    }
    Some(BuiltDir {
        blocks,
        indexed: true,
    })
}

/// An entry in hash order.
struct Keyed {
    hash: u32,
    minor: u32,
    /// Index into the caller's entries.
    idx: u32,
    rec_len: u32,
}

/// A leaf being packed.
#[derive(Clone, Copy)]
struct Leaf {
    /// The hash its dx entry carries (low bit: continues a run).
    dx_hash: u32,
    /// Offset of its last entry in the block.
    last: u32,
}

/// Writes the `ext4_dir_entry_tail` at byte 4084 with the leaf checksum.
fn put_tail(b: &mut [u8], dir_seed: u32) {
    let t = LEAF_SPACE;
    // det_reserved_zero1 (inode) = 0, det_rec_len = 12,
    // det_reserved_zero2 (name_len) = 0, det_reserved_ft = 0xDE.
    b[t..t + 4].fill(0);
    b[t + 4..t + 6].copy_from_slice(&(TAIL as u16).to_le_bytes());
    b[t + 6] = 0;
    b[t + 7] = 0xDE;
    let crc = crc32c(dir_seed, &b[..LEAF_SPACE]);
    b[t + 8..t + 12].copy_from_slice(&crc.to_le_bytes());
}

/// `rec_len` as stored: 65536 would not fit in 16 bits (only for 64 KiB
/// blocks, never here), otherwise the value itself.
#[inline]
fn disk_rec_len(len: usize) -> u16 {
    debug_assert!(len < 65536);
    len as u16
}

#[inline]
fn put_dirent(b: &mut [u8], off: usize, inode: u32, rec_len: usize, name: &[u8], ft: u8) {
    b[off..off + 4].copy_from_slice(&inode.to_le_bytes());
    b[off + 4..off + 6].copy_from_slice(&disk_rec_len(rec_len).to_le_bytes());
    b[off + 6] = name.len() as u8;
    b[off + 7] = ft;
    b[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

/// Writes a dx count/limit array (`dx[0].0` is ignored: implicit hash) at
/// `count_offset`, and its `dx_tail` with the checksum.
fn put_dx(b: &mut [u8], count_offset: usize, limit: usize, dx: &[(u32, u32)], dir_seed: u32) {
    debug_assert!(!dx.is_empty() && dx.len() <= limit);
    let o = count_offset;
    b[o..o + 2].copy_from_slice(&(limit as u16).to_le_bytes());
    b[o + 2..o + 4].copy_from_slice(&(dx.len() as u16).to_le_bytes());
    b[o + 4..o + 8].copy_from_slice(&dx[0].1.to_le_bytes());
    for (i, &(h, blk)) in dx.iter().enumerate().skip(1) {
        let p = o + 8 * i;
        b[p..p + 4].copy_from_slice(&h.to_le_bytes());
        b[p + 4..p + 8].copy_from_slice(&blk.to_le_bytes());
    }
    let tail = o + 8 * limit;
    // dt_reserved stays 0; checksum over the counted entries, then the tail
    // with dt_checksum as zero.
    let mut crc = crc32c(dir_seed, &b[..o + 8 * dx.len()]);
    crc = crc32c(crc, &b[tail..tail + 4]);
    crc = crc32c(crc, &[0u8; 4]);
    b[tail + 4..tail + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends dirents to one block (the linear directory); `finish` stretches
/// the last one and writes the checksummed tail.
struct LeafWriter<'b> {
    b: &'b mut [u8],
    off: usize,
    last: usize,
}

impl<'b> LeafWriter<'b> {
    fn new(b: &'b mut [u8]) -> Self {
        LeafWriter { b, off: 0, last: 0 }
    }

    #[inline]
    fn push(&mut self, inode: u32, name: &[u8], ft: u8) {
        let rl = rec_len(name.len());
        debug_assert!(self.off + rl <= LEAF_SPACE);
        put_dirent(self.b, self.off, inode, rl, name, ft);
        self.last = self.off;
        self.off += rl;
    }

    fn finish(self, dir_seed: u32) {
        debug_assert!(self.off > 0);
        let last = self.last;
        self.b[last + 4..last + 6].copy_from_slice(&disk_rec_len(LEAF_SPACE - last).to_le_bytes());
        put_tail(self.b, dir_seed);
    }
}

// The strict e2fsck check that every ext4 test uses.
#[cfg(test)]
#[path = "../tests/common/fsck.rs"]
mod fsck;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::seed_from_uuid;
    use std::collections::HashMap;

    const FS_UUID: &str = "5f2b8c1e-3a4d-4e6f-9b0c-7d8e9fa1b2c3";
    const HASH_SEED: &str = "6eada55e-48b1-495a-be2b-e8652ae129c4";
    const GENERATION: u32 = 0x5eed_1234;

    fn uuid(s: &str) -> [u8; 16] {
        let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(std::str::from_utf8(&hex[2 * i..2 * i + 2]).unwrap(), 16)
                .unwrap();
        }
        out
    }

    fn params(version: HashVersion, unsigned: bool) -> HashParams {
        HashParams {
            version,
            unsigned,
            seed: seed_from_uuid(&uuid(HASH_SEED)),
        }
    }

    fn csum(inode: u32) -> DirCsum {
        DirCsum {
            seed: crc32c(!0, &uuid(FS_UUID)),
            inode,
            generation: GENERATION,
        }
    }

    fn le16(b: &[u8], o: usize) -> usize {
        u16::from_le_bytes([b[o], b[o + 1]]) as usize
    }
    fn le32(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random distinct names, `len` bytes each (or random 1..=255 when
    /// `len == 0`), from `alphabet`.
    fn random_names(n: usize, len: usize, alphabet: &[u8], seed: u64) -> Vec<Vec<u8>> {
        let mut rng = Rng(seed | 1);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let l = if len == 0 { 1 + rng.below(255) } else { len };
            let name: Vec<u8> = (0..l)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if name != b"." && name != b".." && seen.insert(name.clone()) {
                out.push(name);
            }
        }
        out
    }

    /// Every byte a name may hold except '\n' (which debugfs' listing
    /// cannot frame).
    fn any_bytes() -> Vec<u8> {
        (1u8..=255).filter(|&b| b != b'/' && b != b'\n').collect()
    }

    fn entries_of(names: &[Vec<u8>], inodes: &[u32]) -> Vec<DirEntry<'static>> {
        // Leak: test-only, keeps lifetimes simple.
        let names: &'static [Vec<u8>] = Box::leak(names.to_vec().into_boxed_slice());
        names
            .iter()
            .enumerate()
            .map(|(i, n)| DirEntry {
                name: n,
                inode: inodes[i % inodes.len()],
                file_type: file_type::REGULAR,
            })
            .collect()
    }

    /// Walks one leaf (or linear) block: checks the dirent chain, the tail
    /// and its checksum; returns (name, inode, file_type).
    fn read_leaf(b: &[u8], dir_seed: u32) -> Vec<(Vec<u8>, u32, u8)> {
        assert_eq!(b.len(), BS);
        let mut out = Vec::new();
        let mut off = 0;
        while off < LEAF_SPACE {
            let rl = le16(b, off + 4);
            let nl = b[off + 6] as usize;
            assert!(
                rl >= rec_len(nl) && rl & 3 == 0 && off + rl <= LEAF_SPACE,
                "bad rec_len {rl} at {off}"
            );
            let ino = le32(b, off);
            assert_ne!(ino, 0, "unused dirent at {off}");
            assert!(
                b[off + 8 + nl..off + rec_len(nl)].iter().all(|&x| x == 0),
                "name padding"
            );
            out.push((b[off + 8..off + 8 + nl].to_vec(), ino, b[off + 7]));
            off += rl;
        }
        assert_eq!(off, LEAF_SPACE);
        let t = &b[LEAF_SPACE..];
        assert_eq!(&t[..8], &[0, 0, 0, 0, 12, 0, 0, 0xDE]);
        assert_eq!(
            le32(t, 8),
            crc32c(dir_seed, &b[..LEAF_SPACE]),
            "leaf checksum"
        );
        out
    }

    /// A dx array: (count_offset, [(hash, block)]), with its checksum and
    /// limit checked.
    fn read_dx(b: &[u8], co: usize, dir_seed: u32) -> Vec<(u32, u32)> {
        let limit = le16(b, co);
        let count = le16(b, co + 2);
        assert_eq!(limit, (BS - co - 8) / 8);
        assert!(count >= 1 && count <= limit);
        let tail = co + 8 * limit;
        assert_eq!(tail, BS - 8);
        assert_eq!(le32(b, tail), 0);
        let mut crc = crc32c(dir_seed, &b[..co + 8 * count]);
        crc = crc32c(crc, &b[tail..tail + 4]);
        crc = crc32c(crc, &[0; 4]);
        assert_eq!(le32(b, tail + 4), crc, "dx checksum");
        (0..count)
            .map(|i| {
                (
                    if i == 0 { 0 } else { le32(b, co + 8 * i) },
                    le32(b, co + 8 * i + 4),
                )
            })
            .collect()
    }

    /// Checks the whole directory and returns its entries (without "." and
    /// ".."): layout, checksums, hash order and ranges as e2fsck checks
    /// them.
    fn check_dir(
        d: &BuiltDir,
        self_ino: u32,
        parent: u32,
        cs: &DirCsum,
        hp: &HashParams,
    ) -> Vec<(Vec<u8>, u32, u8)> {
        let seed = cs.dir_seed();
        let blk = |i: usize| &d.blocks[i * BS..(i + 1) * BS];
        assert_eq!(d.blocks.len() % BS, 0);
        if !d.indexed {
            assert_eq!(d.blocks.len(), BS);
            let mut all = read_leaf(blk(0), seed);
            assert_eq!(all[0], (b".".to_vec(), self_ino, file_type::DIR));
            assert_eq!(all[1], (b"..".to_vec(), parent, file_type::DIR));
            return all.split_off(2);
        }
        let root = blk(0);
        assert_eq!(
            (le32(root, 0), le16(root, 4), root[6], root[7]),
            (self_ino, 12, 1, 2)
        );
        assert_eq!(&root[8..12], b".\0\0\0");
        assert_eq!(
            (le32(root, 12), le16(root, 16), root[18], root[19]),
            (parent, BS - 12, 2, 2)
        );
        assert_eq!(&root[20..24], b"..\0\0");
        assert_eq!(
            (le32(root, 24), root[25 + 3], root[29], root[31]),
            (0, hp.version.on_disk(), 8, 0)
        );
        let levels = root[30] as usize;
        assert!(levels <= 1);
        let mut used = vec![false; d.blocks.len() / BS];
        used[0] = true;
        let mut out = Vec::new();
        // (block, lower bound, upper bound exclusive-or-inclusive-last)
        let mut stack: Vec<(usize, usize, u32, u64)> = vec![(0, levels, 0, 1 << 32)];
        while let Some((b, level, lo, hi)) = stack.pop() {
            let co = if b == 0 {
                ROOT_COUNT_OFFSET
            } else {
                NODE_COUNT_OFFSET
            };
            if b != 0 {
                let n = blk(b);
                assert_eq!((le32(n, 0), le16(n, 4), n[6], n[7]), (0, BS, 0, 0));
            }
            let dx = read_dx(blk(b), co, seed);
            for (i, &(h, child)) in dx.iter().enumerate() {
                let child = child as usize;
                assert!(!used[child], "block {child} referenced twice");
                used[child] = true;
                let clo = if i == 0 { lo } else { h & !1 };
                if i > 0 {
                    assert!(clo >= lo && (h & !1) >= (dx[i - 1].0 & !1), "dx hash order");
                }
                let chi = dx.get(i + 1).map_or(hi, |x| (x.0 & !1) as u64);
                if level > 0 {
                    stack.push((child, level - 1, clo, chi));
                } else {
                    for e in read_leaf(blk(child), seed) {
                        let (h, _) = dx_hash(&e.0, hp.version, hp.unsigned, &hp.seed);
                        assert!(
                            h >= clo && (h as u64) <= chi,
                            "hash {h:#x} outside [{clo:#x}, {chi:#x}]"
                        );
                        out.push(e);
                    }
                }
            }
        }
        assert!(used.iter().all(|&u| u), "unreferenced block");
        out
    }

    /// The kernel's lookup (`dx_probe` + `ext4_htree_next_block`).
    fn kernel_lookup(d: &BuiltDir, name: &[u8], hp: &HashParams) -> Option<u32> {
        let blk = |i: usize| &d.blocks[i * BS..(i + 1) * BS];
        let find = |b: &[u8]| {
            let mut off = 0;
            while off < LEAF_SPACE {
                let nl = b[off + 6] as usize;
                if le32(b, off) != 0 && &b[off + 8..off + 8 + nl] == name {
                    return Some(le32(b, off));
                }
                off += le16(b, off + 4);
            }
            None
        };
        if !d.indexed {
            return find(blk(0));
        }
        let (hash, _) = dx_hash(name, hp.version, hp.unsigned, &hp.seed);
        let levels = blk(0)[30] as usize;
        let ent = |b: usize, co: usize, i: usize| -> (u32, usize) {
            let x = blk(b);
            let h = if i == 0 { 0 } else { le32(x, co + 8 * i) };
            (h, le32(x, co + 8 * i + 4) as usize)
        };
        // frames: (block, count_offset, count, at)
        let mut frames: Vec<(usize, usize, usize, usize)> = Vec::new();
        let (mut b, mut co) = (0usize, ROOT_COUNT_OFFSET);
        for _ in 0..=levels {
            let count = le16(blk(b), co + 2);
            let (mut p, mut q) = (1isize, count as isize - 1);
            while p <= q {
                let m = p + (q - p) / 2;
                if ent(b, co, m as usize).0 > hash {
                    q = m - 1;
                } else {
                    p = m + 1;
                }
            }
            let at = (p - 1) as usize;
            frames.push((b, co, count, at));
            b = ent(b, co, at).1;
            co = NODE_COUNT_OFFSET;
        }
        loop {
            if let Some(ino) = find(blk(b)) {
                return Some(ino);
            }
            let mut i = frames.len() - 1;
            loop {
                frames[i].3 += 1;
                if frames[i].3 < frames[i].2 {
                    break;
                }
                if i == 0 {
                    return None;
                }
                i -= 1;
            }
            let (fb, fco, _, at) = frames[i];
            let bhash = ent(fb, fco, at).0;
            if bhash & !1 != hash {
                return None;
            }
            let mut child = ent(fb, fco, at).1;
            for f in frames.iter_mut().skip(i + 1) {
                let count = le16(blk(child), NODE_COUNT_OFFSET + 2);
                *f = (child, NODE_COUNT_OFFSET, count, 0);
                child = ent(child, NODE_COUNT_OFFSET, 0).1;
            }
            b = child;
        }
    }

    /// Structural check plus a kernel-style lookup of every name.
    fn verify(d: &BuiltDir, entries: &[DirEntry], cs: &DirCsum, hp: &HashParams) {
        let got = check_dir(d, cs.inode, 2, cs, hp);
        let mut want: Vec<_> = entries
            .iter()
            .map(|e| (e.name.to_vec(), e.inode, e.file_type))
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        want.sort();
        assert_eq!(got_sorted, want);
        for e in entries {
            assert_eq!(
                kernel_lookup(d, e.name, hp),
                Some(e.inode),
                "lookup {:x?}",
                e.name
            );
        }
        assert_eq!(kernel_lookup(d, b"surely-not-there", hp), None);
    }

    #[test]
    fn empty_and_tiny_dirs_are_one_linear_block() {
        let hp = params(HashVersion::HalfMd4, false);
        let cs = csum(20);
        let d = build_dir(20, 2, &[], &cs, &hp);
        assert!(!d.indexed);
        assert_eq!(d.blocks.len(), BS);
        assert_eq!(le16(&d.blocks, 12 + 4), LEAF_SPACE - 12); // ".." absorbs the rest
        verify(&d, &[], &cs, &hp);
        let e = [DirEntry {
            name: b"x",
            inode: 30,
            file_type: file_type::SYMLINK,
        }];
        let d = build_dir(20, 2, &e, &cs, &hp);
        assert!(!d.indexed);
        assert_eq!(le16(&d.blocks, 12 + 4), 12);
        assert_eq!(le16(&d.blocks, 24 + 4), LEAF_SPACE - 24);
        verify(&d, &e, &cs, &hp);
    }

    /// 253 names of 8 bytes + one of 4 fill a linear block exactly; one
    /// more name makes it a 2-leaf htree.
    fn boundary_names(extra: bool) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..253).map(|i| format!("n{i:07}").into_bytes()).collect();
        v.push(b"last".to_vec());
        if extra {
            v.push(b"z".to_vec());
        }
        v
    }

    #[test]
    fn linear_block_boundary() {
        let hp = params(HashVersion::HalfMd4, false);
        let cs = csum(20);
        let names = boundary_names(false);
        let e = entries_of(&names, &[40]);
        let d = build_dir(20, 2, &e, &cs, &hp);
        assert!(!d.indexed);
        verify(&d, &e, &cs, &hp);
        let names = boundary_names(true);
        let e = entries_of(&names, &[40]);
        let d = build_dir(20, 2, &e, &cs, &hp);
        assert!(d.indexed);
        assert_eq!(d.block_count(), 3);
        assert_eq!(d.blocks[30], 0);
        verify(&d, &e, &cs, &hp);
    }

    #[test]
    fn htree_one_and_two_levels_all_hashes() {
        for (version, unsigned) in [
            (HashVersion::HalfMd4, false),
            (HashVersion::HalfMd4, true),
            (HashVersion::Tea, false),
            (HashVersion::Legacy, true),
        ] {
            let hp = params(version, unsigned);
            let cs = csum(77);
            for (n, len, levels) in [(15000, 0, 1u8), (3000, 12, 0)] {
                let names = random_names(n, len, &any_bytes(), 7 + n as u64);
                let e = entries_of(&names, &[12, 13]);
                let d = build_dir(77, 2, &e, &cs, &hp);
                assert!(d.indexed);
                assert_eq!(d.blocks[30], levels, "{version:?} n={n}");
                verify(&d, &e, &cs, &hp);
            }
        }
    }

    #[test]
    fn leaves_are_filled_to_the_target() {
        let hp = params(HashVersion::HalfMd4, false);
        let cs = csum(77);
        let names: Vec<Vec<u8>> = (0..20000)
            .map(|i| format!("file-{i}.txt").into_bytes())
            .collect();
        let e = entries_of(&names, &[12]);
        let d = build_dir(77, 2, &e, &cs, &hp);
        let payload: usize = e.iter().map(|e| rec_len(e.name.len())).sum();
        let leaves = d.block_count() - 1 - if d.blocks[30] == 1 { 2 } else { 0 };
        let fill = payload as f64 / (leaves * LEAF_SPACE) as f64;
        assert!((0.80..=0.875).contains(&fill), "fill {fill}");
    }

    /// A fake hash with many equal values exercises runs that cross leaves
    /// and interior nodes (continuation bit), checked by the kernel-style
    /// lookup.
    #[test]
    fn collision_runs_across_leaves_and_nodes() {
        let hp = params(HashVersion::HalfMd4, false);
        let cs = csum(5);
        let names = random_names(16000, 0, &any_bytes(), 99);
        let e = entries_of(&names, &[12]);
        // Only 64 distinct hashes: runs of ~1000 entries.
        let fake = |n: &[u8]| -> (u32, u32) {
            let h = dx_hash(n, HashVersion::HalfMd4, false, &hp.seed);
            ((h.0 >> 26) << 26, h.1)
        };
        let d = build_with(
            5,
            2,
            &e,
            cs.dir_seed(),
            HashVersion::HalfMd4,
            &fake,
            LEAF_FILL,
            LEAF_SPACE,
        )
        .unwrap();
        assert_eq!(d.blocks[30], 1);
        let mut continued = 0;
        for b in 0..d.block_count() {
            let x = &d.blocks[b * BS..(b + 1) * BS];
            let co = if b == 0 {
                ROOT_COUNT_OFFSET
            } else if le16(x, 4) == BS {
                NODE_COUNT_OFFSET
            } else {
                continue;
            };
            continued += read_dx(x, co, cs.dir_seed())
                .iter()
                .filter(|x| x.0 & 1 == 1)
                .count();
        }
        assert!(continued > 100, "{continued}");
        // Lookup with the same fake hash.
        let hash_of = |n: &[u8]| fake(n).0;
        for en in &e {
            assert_eq!(lookup_with(&d, en.name, hash_of(en.name)), Some(en.inode));
        }
    }

    /// `kernel_lookup` for a given hash value (used with fake hashes).
    fn lookup_with(d: &BuiltDir, name: &[u8], hash: u32) -> Option<u32> {
        // Reuse kernel_lookup by a HashParams-free path: temporarily inline.
        let blk = |i: usize| &d.blocks[i * BS..(i + 1) * BS];
        let levels = blk(0)[30] as usize;
        let ent = |b: usize, co: usize, i: usize| -> (u32, usize) {
            let x = blk(b);
            (
                if i == 0 { 0 } else { le32(x, co + 8 * i) },
                le32(x, co + 8 * i + 4) as usize,
            )
        };
        let mut frames = Vec::new();
        let (mut b, mut co) = (0usize, ROOT_COUNT_OFFSET);
        for _ in 0..=levels {
            let count = le16(blk(b), co + 2);
            let at = (1..count)
                .take_while(|&i| ent(b, co, i).0 <= hash)
                .last()
                .unwrap_or(0);
            frames.push((b, co, count, at));
            b = ent(b, co, at).1;
            co = NODE_COUNT_OFFSET;
        }
        loop {
            let x = blk(b);
            let mut off = 0;
            while off < LEAF_SPACE {
                let nl = x[off + 6] as usize;
                if &x[off + 8..off + 8 + nl] == name {
                    return Some(le32(x, off));
                }
                off += le16(x, off + 4);
            }
            let mut i = frames.len() - 1;
            loop {
                frames[i].3 += 1;
                if frames[i].3 < frames[i].2 {
                    break;
                }
                if i == 0 {
                    return None;
                }
                i -= 1;
            }
            let (fb, fco, _, at) = frames[i];
            if ent(fb, fco, at).0 & !1 != hash {
                return None;
            }
            let mut child = ent(fb, fco, at).1;
            for f in frames.iter_mut().skip(i + 1) {
                let count = le16(blk(child), NODE_COUNT_OFFSET + 2);
                *f = (child, NODE_COUNT_OFFSET, count, 0);
                child = ent(child, NODE_COUNT_OFFSET, 0).1;
            }
            b = child;
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let hp = params(HashVersion::HalfMd4, false);
        let cs = csum(5);
        let long = vec![b'a'; 256];
        for (name, err) in [
            (&b""[..], DirError::NameLength { len: 0 }),
            (&long[..], DirError::NameLength { len: 256 }),
            (&b"a/b"[..], DirError::NameBytes),
            (&b"a\0b"[..], DirError::NameBytes),
        ] {
            let e = [DirEntry {
                name,
                inode: 3,
                file_type: 1,
            }];
            assert_eq!(try_build_dir(5, 2, &e, &cs, &hp), Err(err));
        }
    }

    /// End-to-end: the blocks go into a real ext4 image (made by mkfs.ext4,
    /// the directory inode set up with debugfs), then `e2fsck -fn` must be
    /// clean, `debugfs ls` must list exactly our entries, and — where this
    /// process may loop-mount — the kernel must find every name by lookup
    /// and list each once in readdir. Skipped when e2fsprogs is missing.
    mod e2e {
        use super::*;
        use std::ffi::OsStr;
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        use std::path::{Path, PathBuf};
        use std::process::Command;

        fn have_tools() -> bool {
            ["mkfs.ext4", "debugfs", "e2fsck"]
                .iter()
                .all(|t| Command::new(t).arg("-V").output().is_ok())
        }

        fn must(cmd: &mut Command) -> std::process::Output {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }

        /// Runs a debugfs script read-write; any error message fails.
        fn debugfs_w(img: &Path, dir: &Path, script: &str) {
            let f = dir.join("script");
            std::fs::write(&f, script).unwrap();
            let out = must(Command::new("debugfs").arg("-w").arg("-f").arg(&f).arg(img));
            let err = String::from_utf8_lossy(&out.stderr);
            let bad: Vec<&str> = err.lines().filter(|l| !l.starts_with("debugfs ")).collect();
            assert!(bad.is_empty(), "debugfs: {bad:?}");
        }

        /// `ls -p -r`: (name, inode) pairs. debugfs also lists the fake empty
        /// dirent of each interior htree node (inode 0, no name), as it does
        /// for directories the kernel indexed; those are left out.
        fn ls(img: &Path, path: &str) -> Vec<(Vec<u8>, u32)> {
            let out = must(
                Command::new("debugfs")
                    .arg("-R")
                    .arg(format!("ls -p -r {path}"))
                    .arg(img),
            );
            out.stdout
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"/"))
                .map(|l| {
                    let f: Vec<&[u8]> = l.split(|&b| b == b'/').collect();
                    // "", ino, mode, uid, gid, name, size, ""
                    assert_eq!(f.len(), 8, "{:?}", String::from_utf8_lossy(l));
                    (
                        f[5].to_vec(),
                        std::str::from_utf8(f[1]).unwrap().parse().unwrap(),
                    )
                })
                .filter(|(name, ino): &(Vec<u8>, u32)| !(name.is_empty() && *ino == 0))
                .collect()
        }

        struct Mounted(PathBuf);
        impl Drop for Mounted {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(&self.0).status();
            }
        }

        fn mount(img: &Path, at: &Path) -> Option<Mounted> {
            std::fs::create_dir_all(at).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,ro,noload"])
                .arg(img)
                .arg(at)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            ok.then(|| Mounted(at.to_path_buf()))
        }

        pub(super) struct Case {
            pub names: Vec<Vec<u8>>,
            pub version: HashVersion,
            pub unsigned: bool,
            /// (fill, max_fill) instead of the defaults.
            pub fill: Option<(usize, usize)>,
            /// Expected `indirect_levels` (None: linear).
            pub levels: Option<u8>,
        }

        pub(super) fn run(label: &str, case: Case) -> (BuiltDir, DirCsum) {
            assert!(
                have_tools(),
                "{label}: needs e2fsprogs (mkfs.ext4, debugfs, e2fsck)"
            );
            let hp = params(case.version, case.unsigned);
            let build = |ino: u32, targets: &[u32]| {
                let e = entries_of(&case.names, targets);
                let cs = csum(ino);
                match case.fill {
                    None => build_dir(ino, 2, &e, &cs, &hp),
                    Some((f, m)) => {
                        let h = |n: &[u8]| dx_hash(n, hp.version, hp.unsigned, &hp.seed);
                        build_with(ino, 2, &e, cs.dir_seed(), hp.version, &h, f, m).unwrap()
                    }
                }
            };
            let size = build(1, &[1]).blocks.len();

            let tmp = tempfile::tempdir().unwrap();
            let img = tmp.path().join("fs.img");
            let mb = 64 + 2 * size / (1 << 20);
            must(
                Command::new("mkfs.ext4")
                    .args([
                        "-q",
                        "-F",
                        "-O",
                        "metadata_csum,dir_index",
                        "-b",
                        "4096",
                        "-U",
                        FS_UUID,
                    ])
                    .arg("-E")
                    .arg(format!("hash_seed={HASH_SEED}"))
                    .arg(&img)
                    .arg(format!("{mb}M")),
            );
            // Placeholder contents for the directory-to-be: not all zero,
            // or debugfs would leave holes.
            let blob = tmp.path().join("blob");
            std::fs::write(&blob, vec![0xAAu8; size]).unwrap();
            let n = case.names.len();
            let ntargets = n.div_ceil(60000).max(1);
            let mut script = String::new();
            if case.unsigned {
                script += "ssv flags 2\n";
            }
            let def = ["legacy", "half_md4", "tea"][case.version.on_disk() as usize];
            script += &format!("ssv def_hash_version {def}\n");
            for k in 0..ntargets {
                script += &format!("write /dev/null t{k}\n");
            }
            script += &format!("write {} blob\n", blob.display());
            debugfs_w(&img, tmp.path(), &script);
            let root: HashMap<Vec<u8>, u32> = ls(&img, "/").into_iter().collect();
            let targets: Vec<u32> = (0..ntargets)
                .map(|k| root[format!("t{k}").as_bytes()])
                .collect();
            let ino = root[&b"blob"[..]];

            let d = build(ino, &targets);
            assert_eq!(d.blocks.len(), size);
            match case.levels {
                None => assert!(!d.indexed, "{label}: expected a linear dir"),
                Some(l) => {
                    assert!(d.indexed, "{label}: expected an htree");
                    assert_eq!(d.blocks[30], l, "{label}: indirect_levels");
                }
            }
            // Make it a directory called /d.
            let flags = if d.indexed { 0x81000 } else { 0x80000 };
            let mut script = format!(
                "sif blob mode 040755\nsif blob flags {flags:#x}\nsif blob links_count 2\n\
                 sif blob generation {GENERATION}\nlink blob d\nunlink blob\nsif <2> links_count 4\n\
                 set_bg 0 used_dirs_count 3\nset_bg 0 checksum calc\n"
            );
            for (k, t) in targets.iter().enumerate() {
                let links = (k..n).step_by(ntargets).count() + 1;
                script += &format!("sif <{t}> links_count {links}\n");
            }
            debugfs_w(&img, tmp.path(), &script);
            let out = must(Command::new("debugfs").arg("-R").arg("blocks /d").arg(&img));
            let phys: Vec<u64> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect();
            assert_eq!(phys.len(), d.block_count());
            let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            for (i, p) in phys.iter().enumerate() {
                f.seek(SeekFrom::Start(p * BS as u64)).unwrap();
                f.write_all(&d.blocks[i * BS..(i + 1) * BS]).unwrap();
            }
            drop(f);

            // e2fsck must find nothing wrong (the strict check shared by
            // all ext4 tests).
            fsck::check_fsck(&img);

            // debugfs lists exactly our entries.
            let mut got = ls(&img, "/d");
            let mut want: Vec<(Vec<u8>, u32)> = vec![(b".".to_vec(), ino), (b"..".to_vec(), 2)];
            want.extend(
                case.names
                    .iter()
                    .enumerate()
                    .map(|(i, nm)| (nm.clone(), targets[i % ntargets])),
            );
            got.sort();
            want.sort();
            if got != want {
                let w: std::collections::HashSet<_> = want.iter().collect();
                let extra: Vec<_> = got.iter().filter(|g| !w.contains(g)).take(5).collect();
                panic!(
                    "{label}: debugfs ls differs ({} vs {} entries), e.g. {extra:?}",
                    got.len(),
                    want.len()
                );
            }

            // The kernel: lookups and readdir.
            let mnt = tmp.path().join("mnt");
            match mount(&img, &mnt) {
                Some(m) => {
                    let d_path = m.0.join("d");
                    for (i, nm) in case.names.iter().enumerate() {
                        let md = std::fs::symlink_metadata(d_path.join(OsStr::from_bytes(nm)))
                            .unwrap_or_else(|e| panic!("{label}: kernel lookup of {nm:x?}: {e}"));
                        assert_eq!(md.ino(), targets[i % ntargets] as u64);
                    }
                    assert!(std::fs::symlink_metadata(d_path.join("not-there")).is_err());
                    let mut listed: Vec<Vec<u8>> = std::fs::read_dir(&d_path)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
                        .collect();
                    listed.sort();
                    let mut names = case.names.clone();
                    names.sort();
                    eprintln!("{label}: kernel looked up and listed {} names", names.len());
                    assert!(
                        listed == names,
                        "{label}: kernel readdir differs ({} vs {})",
                        listed.len(),
                        names.len()
                    );
                }
                None => {
                    // Tell "cannot mount here" apart from "our image is bad".
                    let probe = tmp.path().join("probe.img");
                    must(
                        Command::new("mkfs.ext4")
                            .args(["-q", "-F"])
                            .arg(&probe)
                            .arg("8M"),
                    );
                    if mount(&probe, &tmp.path().join("pmnt")).is_some() {
                        panic!("{label}: the kernel refused to mount the image");
                    }
                    panic!(
                        "{label}: cannot loop-mount here (the test needs root and loop devices)"
                    );
                }
            }
            (d, csum(ino))
        }
    }

    fn case(names: Vec<Vec<u8>>, levels: Option<u8>) -> e2e::Case {
        e2e::Case {
            names,
            version: HashVersion::HalfMd4,
            unsigned: false,
            fill: None,
            levels,
        }
    }

    #[test]
    fn e2e_empty_dir() {
        e2e::run("empty", case(vec![], None));
    }

    #[test]
    fn e2e_one_entry() {
        e2e::run("one", case(vec![b"only".to_vec()], None));
    }

    #[test]
    fn e2e_linear_block_exactly_full() {
        e2e::run("full", case(boundary_names(false), None));
    }

    #[test]
    fn e2e_just_overflows_one_block() {
        e2e::run("overflow", case(boundary_names(true), Some(0)));
    }

    #[test]
    fn e2e_5000_entries() {
        let names = (0..5000)
            .map(|i| format!("file-{i}.txt").into_bytes())
            .collect();
        e2e::run("5000", case(names, Some(0)));
    }

    #[test]
    fn e2e_100k_entries_two_levels() {
        let names = (0..100_000)
            .map(|i| format!("some-longer-file-name-{i:06}").into_bytes())
            .collect();
        e2e::run("100k", case(names, Some(1)));
    }

    #[test]
    fn e2e_255_byte_names_two_levels() {
        let alphabet: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'9').collect();
        e2e::run(
            "long",
            case(random_names(10000, 255, &alphabet, 3), Some(1)),
        );
    }

    #[test]
    fn e2e_high_bytes_signed() {
        e2e::run(
            "high-signed",
            case(random_names(3000, 0, &any_bytes(), 11), Some(0)),
        );
    }

    #[test]
    fn e2e_high_bytes_unsigned() {
        let mut c = case(random_names(3000, 0, &any_bytes(), 12), Some(0));
        c.unsigned = true;
        e2e::run("high-unsigned", c);
    }

    #[test]
    fn e2e_tea_and_legacy() {
        for (v, u) in [(HashVersion::Tea, false), (HashVersion::Legacy, true)] {
            let mut c = case(random_names(3000, 0, &any_bytes(), 13), Some(0));
            c.version = v;
            c.unsigned = u;
            e2e::run(&format!("{v:?}"), c);
        }
    }

    /// Pairs of distinct names with equal major hashes (birthday search).
    fn colliding_pairs(hp: &HashParams, want: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut seen: HashMap<u32, u32> = HashMap::new();
        let mut out = Vec::new();
        for i in 0u32.. {
            let name = format!("k{i}");
            let h = dx_hash(name.as_bytes(), hp.version, hp.unsigned, &hp.seed).0;
            if let Some(j) = seen.insert(h, i) {
                out.push((format!("k{j}").into_bytes(), name.into_bytes()));
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// Real half_md4 collisions, one entry per leaf: every pair is split
    /// across two leaves and the later leaf carries the continuation bit.
    #[test]
    fn e2e_collisions_split_across_leaves() {
        let hp = params(HashVersion::HalfMd4, false);
        let pairs = colliding_pairs(&hp, 6);
        let mut names: Vec<Vec<u8>> = pairs
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        names.extend((0..200).map(|i| format!("filler-{i}").into_bytes()));
        let mut c = case(names, Some(0));
        c.fill = Some((1, 1));
        let (d, cs) = e2e::run("collisions", c);
        let dx = read_dx(&d.blocks[..BS], ROOT_COUNT_OFFSET, cs.dir_seed());
        assert_eq!(dx.iter().filter(|x| x.0 & 1 == 1).count(), pairs.len());
    }

    /// As above with two levels, arranged so that a colliding pair straddles
    /// the boundary between two interior nodes (the root's entry for the
    /// second node carries the continuation bit).
    #[test]
    fn e2e_collision_across_interior_nodes() {
        let hp = params(HashVersion::HalfMd4, false);
        let (a, b) = colliding_pairs(&hp, 1).remove(0);
        let key = |n: &[u8]| {
            let (h, m) = dx_hash(n, hp.version, hp.unsigned, &hp.seed);
            (h, m, n.to_vec())
        };
        let (ka, kb) = (key(&a), key(&b));
        let (first, second) = if ka < kb { (ka, kb) } else { (kb, ka) };
        let mut below = Vec::new();
        let mut above = Vec::new();
        for i in 0..4000 {
            let n = format!("filler-{i}").into_bytes();
            let k = key(&n);
            if k.0 < first.0 {
                below.push(n);
            } else if k.0 > second.0 {
                above.push(n);
            }
        }
        // One entry per leaf; leaves L = 2 + fillers; with 510 < L <= 1020
        // the second node starts at leaf L / 2, which must be `second`.
        let (mut nb, mut na) = (350, 350);
        loop {
            let l = 2 + nb + na;
            let pos = nb + 1; // sorted index of `second`
            match pos.cmp(&(l / 2)) {
                std::cmp::Ordering::Less => nb += 1,
                std::cmp::Ordering::Greater => na += 1,
                std::cmp::Ordering::Equal => break,
            }
        }
        assert!(nb <= below.len() && na <= above.len() && 2 + nb + na > 510);
        let mut names = vec![a, b];
        names.extend(below[..nb].iter().cloned());
        names.extend(above[..na].iter().cloned());
        let mut c = case(names, Some(1));
        c.fill = Some((1, 1));
        let (d, cs) = e2e::run("node-boundary", c);
        let dx = read_dx(&d.blocks[..BS], ROOT_COUNT_OFFSET, cs.dir_seed());
        assert_eq!(dx.len(), 2);
        assert_eq!(dx[1].0, second.0 | 1);
    }

    /// 100k names of random bytes, 1 to 255 of them (few to a leaf, high
    /// bytes: what e2e_100k_entries_two_levels lacks); e2fsck, debugfs and
    /// the kernel read every one back.
    #[test]
    fn e2e_100k_random_names() {
        let names = random_names(100_000, 0, &any_bytes(), 5);
        e2e::run("100k random", case(names, Some(1)));
    }
}
