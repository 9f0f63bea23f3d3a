//! UNIX sockets at paths of any length. A socket path (`sun_path`) holds at
//! most 107 bytes, and store roots can be deep: a longer path is reached
//! through a descriptor of its directory (`/proc/self/fd/<n>/<name>`), so the
//! socket still lives where it should and no cwd changes (process-wide, racy).

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// sizeof(sun_path) - 1 for the terminating NUL.
pub const SUN_PATH_MAX: usize = 107;

/// Runs `f` with a short name for `path`: the path itself, or one through an
/// open descriptor of its directory (valid while `f` runs).
fn with_short_path<T>(
    path: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return f(path);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no socket name"))?;
    use rustix::fs::{open, Mode, OFlags};
    let fd = open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    f(&short)
}

/// Listens at `path`, replacing a stale socket file.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    with_short_path(path, |p| UnixListener::bind(p))
}

pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    with_short_path(path, |p| UnixStream::connect(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_deep_path_works() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("s.sock");
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        let l = bind(&path).unwrap();
        assert!(path.exists(), "the socket is where it was asked for");
        let mut c = connect(&path).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hi");
        // A stale socket file is replaced.
        drop(l);
        bind(&path).unwrap();
    }
}
