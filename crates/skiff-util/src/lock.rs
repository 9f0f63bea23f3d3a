//! Advisory file locks (flock) between skiff processes. A lock ends with the
//! process that holds it, however that process ends: which is also how a
//! reader tells a live holder from a dead one ([`is_held`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::FlockOperation;

/// A lock on a file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
}

/// `Ok(false)` when another holder has it.
fn try_flock(file: &File, op: FlockOperation) -> io::Result<bool> {
    match rustix::fs::flock(file, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` (created if missing) is held.
    pub fn exclusive(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)?;
        Ok(Self { file })
    }

    /// Blocks until a shared lock is held.
    pub fn shared(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        rustix::fs::flock(&file, FlockOperation::LockShared)?;
        Ok(Self { file })
    }

    /// The exclusive lock if it is free now.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        let file = open(path)?;
        Ok(try_flock(&file, FlockOperation::NonBlockingLockExclusive)?.then_some(Self { file }))
    }

    /// A shared lock if nobody holds the exclusive one now.
    pub fn try_shared(path: &Path) -> io::Result<Option<Self>> {
        let file = open(path)?;
        Ok(try_flock(&file, FlockOperation::NonBlockingLockShared)?.then_some(Self { file }))
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

/// Locks an open file exclusively without blocking, for as long as the file is
/// open; `false` if another holder has it.
pub fn try_lock_file(file: &File) -> io::Result<bool> {
    try_flock(file, FlockOperation::NonBlockingLockExclusive)
}

/// Blocks until `file` is locked exclusively, for as long as it is open.
pub fn lock_file(file: &File) -> io::Result<()> {
    Ok(rustix::fs::flock(file, FlockOperation::LockExclusive)?)
}

/// Whether some process holds an exclusive lock on `path` right now (a missing
/// file: nobody).
pub fn is_held(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(!try_flock(&file, FlockOperation::NonBlockingLockShared)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn exclusive_excludes_and_ends_with_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        assert!(!is_held(&p).unwrap());
        let held = FileLock::exclusive(&p).unwrap();
        assert!(is_held(&p).unwrap());
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        assert!(FileLock::try_shared(&p).unwrap().is_none());
        drop(held);
        assert!(!is_held(&p).unwrap());
        let a = FileLock::try_shared(&p).unwrap().expect("shared");
        let b = FileLock::try_shared(&p).unwrap().expect("two shared");
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop((a, b));
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
    }

    #[test]
    fn a_lock_held_by_a_killed_process_is_free() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        // The child locks an fd of its own and execs: one process holds it.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$0" && flock 9 && exec sleep 30"#)
            .arg(&p)
            .spawn()
            .expect("sh and flock(1) from util-linux");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_held(&p).unwrap() {
            assert!(Instant::now() < deadline, "the child never locked");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !is_held(&p).unwrap(),
            "the killed child's lock is still held"
        );
    }
}
