//! skiff-ext4: writes an ext4 filesystem image directly from a stream of OCI
//! layer tarballs — no mkfs, no mount, no unpacked directory, no root needed to
//! keep ownership. See ARCHITECTURE.md.

pub mod alloc;
pub mod checksum;
pub mod dir;
pub mod hash;
pub mod inode;
pub mod layer;
pub mod superblock;
pub mod tree;
pub mod types;
pub mod writer;
