//! Advisory file locks between concurrent skiff processes.

use std::fs::File;
use std::path::Path;

/// Opens (creating) `path` and holds an exclusive flock on it until the file
/// is dropped.
pub fn exclusive(path: &Path) -> std::io::Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(f)
}
