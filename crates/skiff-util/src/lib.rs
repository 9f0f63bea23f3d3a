//! Helpers that every skiff crate needs, written once.

/// Files that appear whole or not at all (temp file, fsync, rename, fsync of the directory).
pub mod atomic;
/// Random ids from the kernel's random source.
pub mod id;
/// Advisory locks (flock) between skiff processes.
pub mod lock;
