//! The superblock, group descriptors and the JBD2 journal superblock.

use crate::checksum::crc32c;

pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub const COMPAT_EXT_ATTR: u32 = 0x8;
pub const COMPAT_DIR_INDEX: u32 = 0x20;
pub const COMPAT_SPARSE_SUPER2: u32 = 0x200;
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const INCOMPAT_EXTENTS: u32 = 0x40;
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

pub const BLOCKS_PER_GROUP: u32 = 32768;
pub const DESC_SIZE: usize = 32;
pub const BG_INODE_ZEROED: u16 = 0x4;
/// Hashes of names with bytes ≥ 0x80 depend on char signedness; x86 is signed.
const FLAGS_SIGNED_HASH: u32 = 0x1;

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub inodes_per_group: u32,
    pub time: u32,
    pub uuid: [u8; 16],
    pub label: [u8; 16],
    pub hash_seed: [u8; 16],
    pub journal: Option<[u8; 68]>,
}

impl Superblock {
    /// The 1024-byte superblock with its checksum.
    pub fn encode(&self) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        put32(&mut b, 0x00, self.inodes_count);
        put32(&mut b, 0x04, self.blocks_count);
        put32(&mut b, 0x08, 0); // no blocks reserved for root: containers own the fs
        put32(&mut b, 0x0C, self.free_blocks);
        put32(&mut b, 0x10, self.free_inodes);
        put32(&mut b, 0x14, 0); // first data block (4 KiB blocks)
        put32(&mut b, 0x18, 2); // log2(block size) - 10
        put32(&mut b, 0x1C, 2);
        put32(&mut b, 0x20, BLOCKS_PER_GROUP);
        put32(&mut b, 0x24, BLOCKS_PER_GROUP);
        put32(&mut b, 0x28, self.inodes_per_group);
        put32(&mut b, 0x2C, 0); // mtime
        put32(&mut b, 0x30, self.time); // wtime
        put16(&mut b, 0x34, 0);
        put16(&mut b, 0x36, 0xFFFF); // no forced checks
        put16(&mut b, 0x38, 0xEF53);
        put16(&mut b, 0x3A, 1); // clean
        put16(&mut b, 0x3C, 1); // errors: continue
        put32(&mut b, 0x40, self.time); // lastcheck
        put32(&mut b, 0x4C, 1); // dynamic revision
        put32(&mut b, 0x54, 11); // first non-reserved inode
        put16(&mut b, 0x58, crate::inode::INODE_SIZE as u16);
        let mut compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | COMPAT_SPARSE_SUPER2;
        if self.journal.is_some() {
            compat |= COMPAT_HAS_JOURNAL;
        }
        put32(&mut b, 0x5C, compat);
        put32(
            &mut b,
            0x60,
            INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_FLEX_BG,
        );
        put32(
            &mut b,
            0x64,
            RO_COMPAT_LARGE_FILE
                | RO_COMPAT_HUGE_FILE
                | RO_COMPAT_DIR_NLINK
                | RO_COMPAT_EXTRA_ISIZE
                | RO_COMPAT_METADATA_CSUM,
        );
        b[0x68..0x78].copy_from_slice(&self.uuid);
        b[0x78..0x88].copy_from_slice(&self.label);
        if let Some(j) = &self.journal {
            put32(&mut b, 0xE0, 8); // journal inode
            b[0xFD] = 1; // s_jnl_blocks holds a copy of the journal inode's blocks
            b[0x10C..0x150].copy_from_slice(j);
        }
        b[0xEC..0xFC].copy_from_slice(&self.hash_seed);
        b[0xFC] = 1; // half_md4
        put32(&mut b, 0x108, self.time); // mkfs time
        put16(&mut b, 0x15C, crate::inode::EXTRA_ISIZE);
        put16(&mut b, 0x15E, crate::inode::EXTRA_ISIZE);
        put32(&mut b, 0x160, FLAGS_SIGNED_HASH);
        b[0x174] = 4; // 16 groups per flex group
        b[0x175] = 1; // crc32c
                      // s_backup_bgs: no backup superblocks (sparse_super2 with none).
        put32(&mut b, 0x24C, 0);
        put32(&mut b, 0x250, 0);
        let c = crc32c(!0, &b[..0x3FC]);
        put32(&mut b, 0x3FC, c);
        b
    }
}

pub struct GroupDesc {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u16,
    pub free_inodes: u16,
    pub used_dirs: u16,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
    pub itable_unused: u16,
}

impl GroupDesc {
    pub fn encode(&self, group: u32, fs_seed: u32) -> [u8; DESC_SIZE] {
        let mut b = [0u8; DESC_SIZE];
        put32(&mut b, 0x00, self.block_bitmap);
        put32(&mut b, 0x04, self.inode_bitmap);
        put32(&mut b, 0x08, self.inode_table);
        put16(&mut b, 0x0C, self.free_blocks);
        put16(&mut b, 0x0E, self.free_inodes);
        put16(&mut b, 0x10, self.used_dirs);
        put16(&mut b, 0x12, BG_INODE_ZEROED);
        put16(&mut b, 0x18, self.block_bitmap_csum as u16);
        put16(&mut b, 0x1A, self.inode_bitmap_csum as u16);
        put16(&mut b, 0x1C, self.itable_unused);
        // The whole descriptor with the checksum field zero (as it is here).
        let c = crc32c(crc32c(fs_seed, &group.to_le_bytes()), &b);
        put16(&mut b, 0x1E, c as u16);
        b
    }
}

/// An empty, clean JBD2 journal's superblock, as mke2fs writes it: no
/// features and no checksum (the kernel enables those when it first uses it).
pub fn journal_superblock(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let be = |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    be(&mut b, 0x00, 0xC03B_3998);
    be(&mut b, 0x04, 4); // superblock v2
    be(&mut b, 0x0C, 4096);
    be(&mut b, 0x10, blocks);
    be(&mut b, 0x14, 1); // first log block
    be(&mut b, 0x18, 1); // sequence
    be(&mut b, 0x1C, 0); // start: empty
    b[0x30..0x40].copy_from_slice(uuid);
    be(&mut b, 0x40, 1); // users
    b
}

/// mke2fs's journal size for a filesystem of `blocks` blocks.
pub fn default_journal_blocks(blocks: u64) -> u32 {
    match blocks {
        n if n < 2048 => 0,
        n if n < 32768 => 1024,
        n if n < 256 * 1024 => 4096,
        n if n < 512 * 1024 => 8192,
        n if n < 4096 * 1024 => 16384,
        n if n < 8192 * 1024 => 32768,
        n if n < 16384 * 1024 => 65536,
        n if n < 32768 * 1024 => 131_072,
        _ => 262_144,
    }
}
