//! On-disk encoding of inodes (256 bytes, extra_isize 32), extent trees and
//! extended attributes, with metadata_csum checksums.

use crate::checksum::crc32c;
use crate::types::{Extent, Timestamp, BLOCK_SIZE};

pub const INODE_SIZE: usize = 256;
pub const EXTRA_ISIZE: u16 = 32;
/// In-inode xattrs start after the extra fields.
const IBODY_START: usize = 128 + EXTRA_ISIZE as usize;

pub const S_IFIFO: u16 = 0o010000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFSOCK: u16 = 0o140000;

pub const EXT4_INDEX_FL: u32 = 0x1000;
pub const EXT4_EXTENTS_FL: u32 = 0x80000;

const EXTENT_MAGIC: u16 = 0xF30A;
/// Extents (or index entries) in one extent-tree block: (4096 - 12 header - 4 tail) / 12.
pub const EXTENTS_PER_BLOCK: usize = 340;
const XATTR_MAGIC: u32 = 0xEA02_0000;

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// What goes into an inode; the writer fills it from the tree.
pub struct InodeSpec {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    pub atime: Timestamp,
    pub ctime: Timestamp,
    pub mtime: Timestamp,
    pub crtime: Timestamp,
    pub flags: u32,
    /// 512-byte sectors in use (data, extent tree, xattr block).
    pub sectors: u64,
    /// The 60-byte i_block area (extent root, fast symlink, device number).
    pub i_block: [u8; 60],
    pub xattr_block: u32,
    /// Encoded in-inode xattr area (after the magic), if any.
    pub ibody_xattrs: Option<Vec<u8>>,
}

impl Default for InodeSpec {
    fn default() -> Self {
        Self {
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            links: 0,
            atime: Timestamp::default(),
            ctime: Timestamp::default(),
            mtime: Timestamp::default(),
            crtime: Timestamp::default(),
            flags: 0,
            sectors: 0,
            i_block: [0; 60],
            xattr_block: 0,
            ibody_xattrs: None,
        }
    }
}

/// The times a 256-byte inode holds (1901-12-13 to 2446-05-10): the
/// kernel clamps to them (`s_time_min`, `s_time_max`).
const TIME_MIN: i64 = i32::MIN as i64;
const TIME_MAX: i64 = i32::MAX as i64 + (3 << 32);
/// 2310-04-04 to 2378: epoch 3 with bit 31 set, which e2fsck (until 2242)
/// takes for a pre-1970 time that old kernels mis-encoded, and "fixes".
const E2FSCK_PRE_1970: std::ops::Range<i64> = (3 << 32) - (1 << 31)..3 << 32;

/// Seconds and the `_extra` field: 2 epoch bits, 30 bits of nanoseconds.
/// Times out of range are clamped as the kernel clamps them; the ones that
/// e2fsck would take for pre-1970 ones, to the second before.
fn encode_time(t: Timestamp) -> (u32, u32) {
    let (secs, nanos) = match t.secs {
        s if s < TIME_MIN => (TIME_MIN, 0),
        s if s > TIME_MAX => (TIME_MAX, 0),
        s if E2FSCK_PRE_1970.contains(&s) => (E2FSCK_PRE_1970.start - 1, 0),
        s => (s, t.nanos.min(999_999_999)),
    };
    let lo = secs as i32;
    let epoch = ((secs - lo as i64) >> 32) as u32 & 3;
    (lo as u32, epoch | (nanos << 2))
}

/// Encodes an inode and its checksum (seeded per inode: crc32c(fs seed, ino, generation)).
pub fn encode_inode(spec: &InodeSpec, ino: u32, fs_seed: u32) -> [u8; INODE_SIZE] {
    let mut b = [0u8; INODE_SIZE];
    put16(&mut b, 0x00, spec.mode);
    put16(&mut b, 0x02, spec.uid as u16);
    put32(&mut b, 0x04, spec.size as u32);
    let (at, atx) = encode_time(spec.atime);
    let (ct, ctx) = encode_time(spec.ctime);
    let (mt, mtx) = encode_time(spec.mtime);
    let (crt, crtx) = encode_time(spec.crtime);
    put32(&mut b, 0x08, at);
    put32(&mut b, 0x0C, ct);
    put32(&mut b, 0x10, mt);
    put16(&mut b, 0x18, spec.gid as u16);
    put16(&mut b, 0x1A, spec.links);
    put32(&mut b, 0x1C, spec.sectors as u32);
    put32(&mut b, 0x20, spec.flags);
    b[0x28..0x64].copy_from_slice(&spec.i_block);
    put32(&mut b, 0x68, spec.xattr_block);
    put32(&mut b, 0x6C, (spec.size >> 32) as u32);
    put16(&mut b, 0x74, (spec.sectors >> 32) as u16);
    put16(&mut b, 0x78, (spec.uid >> 16) as u16);
    put16(&mut b, 0x7A, (spec.gid >> 16) as u16);
    put16(&mut b, 0x80, EXTRA_ISIZE);
    put32(&mut b, 0x84, ctx);
    put32(&mut b, 0x88, mtx);
    put32(&mut b, 0x8C, atx);
    put32(&mut b, 0x90, crt);
    put32(&mut b, 0x94, crtx);
    if let Some(x) = &spec.ibody_xattrs {
        put32(&mut b, IBODY_START, XATTR_MAGIC);
        b[IBODY_START + 4..IBODY_START + 4 + x.len()].copy_from_slice(x);
    }
    // Checksum with both checksum fields zero (they are), lo at 0x7C, hi at 0x82.
    let seed = crc32c(crc32c(fs_seed, &ino.to_le_bytes()), &0u32.to_le_bytes());
    let c = crc32c(seed, &b);
    put16(&mut b, 0x7C, c as u16);
    put16(&mut b, 0x82, (c >> 16) as u16);
    b
}

/// Room for in-inode xattrs after the 4-byte magic.
pub const IBODY_XATTR_SPACE: usize = INODE_SIZE - IBODY_START - 4;

/// An extended attribute split into ext4's (index, suffix) naming.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Xattr {
    pub index: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Maps a full name to ext4's name index; `None` for namespaces ext4 cannot store.
pub fn split_xattr_name(full: &[u8]) -> Option<(u8, &[u8])> {
    const PREFIXES: [(&[u8], u8); 5] = [
        (b"user.", 1),
        (b"trusted.", 4),
        (b"security.", 6),
        (b"system.", 7),
        (b"", 0),
    ];
    if full == b"system.posix_acl_access" {
        return Some((2, b""));
    }
    if full == b"system.posix_acl_default" {
        return Some((3, b""));
    }
    for (p, idx) in PREFIXES {
        if idx != 0 {
            if let Some(rest) = full.strip_prefix(p) {
                return (!rest.is_empty() && rest.len() <= 255).then_some((idx, rest));
            }
        }
    }
    None
}

/// POSIX ACLs: the VFS xattr format (version 2, 8-byte entries) to ext4's own
/// (version 1, 4-byte entries for the *_OBJ, MASK and OTHER tags).
pub fn acl_to_ext4(vfs: &[u8]) -> Option<Vec<u8>> {
    if vfs.len() < 4
        || !(vfs.len() - 4).is_multiple_of(8)
        || u32::from_le_bytes(vfs[0..4].try_into().ok()?) != 2
    {
        return None;
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in vfs[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[0..4]);
        match tag {
            0x01 | 0x04 | 0x10 | 0x20 => {}
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            _ => return None,
        }
    }
    Some(out)
}

const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn entry_len(x: &Xattr) -> usize {
    pad4(16 + x.name.len())
}

/// Bytes needed in the inode for `xs` (entries, terminator, values).
pub fn ibody_size(xs: &[Xattr]) -> usize {
    xs.iter()
        .map(|x| entry_len(x) + pad4(x.value.len()))
        .sum::<usize>()
        + 4
}

fn put_entry(b: &mut [u8], at: usize, x: &Xattr, value_offs: usize, hash: u32) {
    b[at] = x.name.len() as u8;
    b[at + 1] = x.index;
    put16(b, at + 2, value_offs as u16);
    put32(b, at + 4, 0);
    put32(b, at + 8, x.value.len() as u32);
    put32(b, at + 12, hash);
    b[at + 16..at + 16 + x.name.len()].copy_from_slice(&x.name);
}

/// The in-inode xattr area (without the magic): entries from the front,
/// values from the back; value offsets count from the first entry.
pub fn encode_ibody(xs: &[Xattr]) -> Vec<u8> {
    let mut b = vec![0u8; IBODY_XATTR_SPACE];
    let mut at = 0;
    let mut end = IBODY_XATTR_SPACE;
    for x in xs {
        end -= pad4(x.value.len());
        b[end..end + x.value.len()].copy_from_slice(&x.value);
        put_entry(&mut b, at, x, end, 0);
        at += entry_len(x);
    }
    b
}

fn entry_hash(x: &Xattr) -> u32 {
    let mut h: u32 = 0;
    for &c in &x.name {
        h = (h << 5) ^ (h >> 27) ^ c as u32;
    }
    let mut v = x.value.clone();
    v.resize(pad4(v.len()), 0);
    for w in v.chunks_exact(4) {
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    h
}

/// Whether `xs` fits one xattr block.
pub fn fits_block(xs: &[Xattr]) -> bool {
    32 + ibody_size(xs) <= BLOCK_SIZE as usize
}

/// An xattr block without its checksum (which depends on where it goes):
/// entries sorted by (index, name length, name) as the kernel's lookup expects.
pub fn encode_xattr_block(xs: &[Xattr], refcount: u32) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE as usize];
    put32(&mut b, 0, XATTR_MAGIC);
    put32(&mut b, 4, refcount);
    put32(&mut b, 8, 1);
    let mut at = 32;
    let mut end = BLOCK_SIZE as usize;
    let mut block_hash: u32 = 0;
    for x in xs {
        end -= pad4(x.value.len());
        b[end..end + x.value.len()].copy_from_slice(&x.value);
        let h = entry_hash(x);
        put_entry(&mut b, at, x, end, h);
        block_hash = (block_hash << 16) ^ (block_hash >> 16) ^ h;
        at += entry_len(x);
    }
    put32(&mut b, 12, block_hash);
    b
}

/// Stamps the xattr block checksum for its final location.
pub fn seal_xattr_block(b: &mut [u8], block: u32, fs_seed: u32) {
    put32(b, 16, 0);
    let c = crc32c(crc32c(fs_seed, &(block as u64).to_le_bytes()), b);
    put32(b, 16, c);
}

/// Sorts xattrs the way ext4 stores them.
pub fn sort_xattrs(xs: &mut [Xattr]) {
    xs.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
}

fn extent_header(b: &mut [u8], entries: usize, max: usize, depth: u16) {
    put16(b, 0, EXTENT_MAGIC);
    put16(b, 2, entries as u16);
    put16(b, 4, max as u16);
    put16(b, 6, depth);
    put32(b, 8, 0);
}

fn put_extent(b: &mut [u8], at: usize, e: &Extent) {
    put32(b, at, e.logical);
    put16(b, at + 4, e.len as u16);
    put16(b, at + 6, 0);
    put32(b, at + 8, e.physical);
}

fn put_index(b: &mut [u8], at: usize, logical: u32, leaf: u32) {
    put32(b, at, logical);
    put32(b, at + 4, leaf);
    put16(b, at + 8, 0);
    put16(b, at + 10, 0);
}

/// Blocks an extent tree for `n` extents needs outside the inode.
pub fn extent_tree_blocks(n: usize) -> usize {
    if n <= 4 {
        return 0;
    }
    let mut total = 0;
    let mut level = n;
    while level > 4 {
        level = level.div_ceil(EXTENTS_PER_BLOCK);
        total += level;
    }
    total
}

/// Builds the extent tree: the inode's i_block and the tree blocks, which go
/// at `blocks[..]` (exactly `extent_tree_blocks(n)` block numbers).
pub fn build_extent_tree(
    extents: &[Extent],
    blocks: &[u32],
    ino: u32,
    fs_seed: u32,
) -> ([u8; 60], Vec<(u32, Vec<u8>)>) {
    let mut root = [0u8; 60];
    if extents.len() <= 4 {
        extent_header(&mut root, extents.len(), 4, 0);
        for (i, e) in extents.iter().enumerate() {
            put_extent(&mut root, 12 + i * 12, e);
        }
        return (root, vec![]);
    }
    let seed = crc32c(crc32c(fs_seed, &ino.to_le_bytes()), &0u32.to_le_bytes());
    let mut out = Vec::new();
    let mut next_block = blocks.iter().copied();
    // Leaves, then index levels, until the root's four slots suffice.
    let mut level: Vec<(u32, u32)> = Vec::new(); // (first logical, block)
    for chunk in extents.chunks(EXTENTS_PER_BLOCK) {
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        extent_header(&mut b, chunk.len(), EXTENTS_PER_BLOCK, 0);
        for (i, e) in chunk.iter().enumerate() {
            put_extent(&mut b, 12 + i * 12, e);
        }
        let blk = next_block.next().unwrap_or(0);
        out.push((blk, b));
        level.push((chunk[0].logical, blk));
    }
    let mut depth = 1u16;
    while level.len() > 4 {
        let mut up = Vec::new();
        for chunk in level.chunks(EXTENTS_PER_BLOCK) {
            let mut b = vec![0u8; BLOCK_SIZE as usize];
            extent_header(&mut b, chunk.len(), EXTENTS_PER_BLOCK, depth);
            for (i, (l, blk)) in chunk.iter().enumerate() {
                put_index(&mut b, 12 + i * 12, *l, *blk);
            }
            let blk = next_block.next().unwrap_or(0);
            out.push((blk, b));
            up.push((chunk[0].0, blk));
        }
        level = up;
        depth += 1;
    }
    for (_, b) in out.iter_mut() {
        let tail = 12 + EXTENTS_PER_BLOCK * 12;
        let c = crc32c(seed, &b[..tail]);
        put32(b, tail, c);
    }
    extent_header(&mut root, level.len(), 4, depth);
    for (i, (l, blk)) in level.iter().enumerate() {
        put_index(&mut root, 12 + i * 12, *l, *blk);
    }
    (root, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_nanoseconds_and_epochs() {
        assert_eq!(encode_time(Timestamp { secs: 1, nanos: 5 }), (1, 20));
        // 2038+: the epoch bits carry the overflow.
        let (lo, extra) = encode_time(Timestamp {
            secs: 1 << 31,
            nanos: 0,
        });
        assert_eq!((lo, extra & 3), (1 << 31, 1));
        let (lo, extra) = encode_time(Timestamp { secs: -1, nanos: 0 });
        assert_eq!((lo, extra & 3), (u32::MAX, 0));
    }

    /// As the kernel decodes them (`ext4_decode_extra_time`).
    fn decode_time((lo, extra): (u32, u32)) -> (i64, u32) {
        (lo as i32 as i64 + ((extra as i64 & 3) << 32), extra >> 2)
    }

    #[test]
    fn times_out_of_range_are_clamped() {
        let t = |secs, nanos| decode_time(encode_time(Timestamp { secs, nanos }));
        assert_eq!(t(TIME_MIN, 7), (TIME_MIN, 7));
        assert_eq!(t(TIME_MIN - 1, 7), (TIME_MIN, 0));
        assert_eq!(t(TIME_MAX, 7), (TIME_MAX, 7));
        assert_eq!(t(TIME_MAX + 1, 7), (TIME_MAX, 0));
        assert_eq!(t(i64::MAX, 7), (TIME_MAX, 0));
        assert_eq!(t(i64::MIN, 7), (TIME_MIN, 0));
        // 2310-04-04: the last second before the range e2fsck "fixes".
        let last = 10_737_418_239;
        assert_eq!(t(last, 7), (last, 7));
        assert_eq!(t(last + 1, 7), (last, 0));
        assert_eq!(t(3 << 32, 7), (3 << 32, 7));
    }

    #[test]
    fn acl_conversion() {
        let mut vfs = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            vfs.extend_from_slice(&tag.to_le_bytes());
            vfs.extend_from_slice(&perm.to_le_bytes());
            vfs.extend_from_slice(&id.to_le_bytes());
        }
        let e = acl_to_ext4(&vfs).unwrap();
        assert_eq!(e.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert!(acl_to_ext4(b"junk").is_none());
    }

    #[test]
    fn extent_tree_sizes() {
        assert_eq!(extent_tree_blocks(4), 0);
        assert_eq!(extent_tree_blocks(5), 1);
        assert_eq!(extent_tree_blocks(340 * 4), 4);
        assert_eq!(extent_tree_blocks(340 * 4 + 1), 5 + 1);
        let ex: Vec<Extent> = (0..1000)
            .map(|i| Extent {
                logical: i * 2,
                physical: 100 + i * 2,
                len: 1,
            })
            .collect();
        let n = extent_tree_blocks(ex.len());
        let blocks: Vec<u32> = (5000..5000 + n as u32).collect();
        let (root, out) = build_extent_tree(&ex, &blocks, 12, 0);
        assert_eq!(out.len(), n);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 1, "depth");
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 3, "three leaves");
    }
}
