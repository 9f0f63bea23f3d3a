//! Types shared by the layer reader (`tree`), the directory builder (`dir`)
//! and the filesystem writer (`writer`).

use std::io;

/// ext4 block size: always 4 KiB.
pub const BLOCK_SIZE: u64 = 4096;

/// A run of blocks of a file: `len` blocks from file block `logical` are at
/// filesystem block `physical`. Holes are simply not covered by any extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub logical: u32,
    pub physical: u32,
    pub len: u32,
}

/// Where a regular file's bytes went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileData {
    pub size: u64,
    /// Sorted by `logical`, not overlapping. Runs longer than ext4's maximum
    /// extent length are split by the writer, not here.
    pub extents: Vec<Extent>,
}

impl FileData {
    /// Blocks that hold data (not holes).
    pub fn allocated_blocks(&self) -> u64 {
        self.extents.iter().map(|e| e.len as u64).sum()
    }
}

/// Receives file contents as layers are read: writes them into the image and
/// says where they went; takes back the blocks of files that later layers
/// delete or replace.
pub trait DataSink {
    /// Writes exactly `size` bytes read from `r`. All-zero blocks become holes.
    fn write_data(&mut self, r: &mut dyn io::Read, size: u64) -> io::Result<FileData>;
    /// The file is gone: its blocks may be reused.
    fn free(&mut self, data: &FileData);
}

/// Timestamps with nanoseconds (seconds may be negative: before 1970).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// Attributes common to every inode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission and special bits only (`0o7777`); the type comes from `NodeKind`.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    pub atime: Timestamp,
    pub ctime: Timestamp,
    /// Full names (`user.foo`, `security.capability`, `trusted.x`,
    /// `system.posix_acl_access` in the VFS format), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// ext4 directory entry file types.
pub mod file_type {
    pub const REGULAR: u8 = 1;
    pub const DIR: u8 = 2;
    pub const CHARDEV: u8 = 3;
    pub const BLOCKDEV: u8 = 4;
    pub const FIFO: u8 = 5;
    pub const SOCKET: u8 = 6;
    pub const SYMLINK: u8 = 7;
}
