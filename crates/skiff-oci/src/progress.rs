//! Progress reports from long operations; the CLI draws them as bars.

use crate::digest::Digest;

/// Receives progress of blob transfers. Implementations must be cheap: they
/// are called for every chunk received.
pub trait Progress: Send + Sync {
    /// A blob transfer begins; `done` bytes are already there (resumed).
    fn start(&self, _digest: &Digest, _size: u64, _done: u64) {}
    /// `done` bytes of the blob have arrived so far.
    fn advance(&self, _digest: &Digest, _done: u64) {}
    /// The blob is complete; `skipped` when nothing had to be transferred.
    fn finish(&self, _digest: &Digest, _skipped: bool) {}
    /// A one-line status message.
    fn message(&self, _msg: &str) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
