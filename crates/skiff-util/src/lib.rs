//! Helpers that every skiff crate needs, written once.

/// Files that appear whole or not at all (temp file, fsync, rename, fsync of the directory).
pub mod atomic;
/// Steps between fork and exec: an fd at a fixed number, a new session.
pub mod child;
/// An error and its causes on one line.
pub mod error;
/// Random ids from the kernel's random source.
pub mod id;
/// Advisory locks (flock) between skiff processes.
pub mod lock;
/// UNIX sockets at paths longer than `sun_path` allows.
pub mod socket;
