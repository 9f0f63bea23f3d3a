//! `skiff cp`: tar streams out of the container ([`pack`], ReadArchive) and
//! into it ([`unpack`], WriteArchive). Both stream: a blocking thread does
//! the file system work and exchanges bounded chunks with the gRPC stream,
//! so a slow peer slows the thread and nothing piles up in memory.

pub mod changes;
pub mod pack;
pub mod unpack;

/// The most an ArchiveChunk carries.
pub const CHUNK: usize = 64 * 1024;
