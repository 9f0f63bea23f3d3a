//! The host end of the control channel: a UNIX socket in the state directory
//! that we listen on before QEMU starts, and that QEMU connects to as a
//! client. The connection so exists before the guest boots, and a QEMU that
//! cannot reach it fails at once instead of waiting.
//!
//! A socket path (`sun_path`) holds at most 107 bytes. State directories can be
//! deeper than that, so a long `<state_dir>/control.sock` is reached through a
//! file descriptor of the directory instead: we bind
//! `/proc/self/fd/<dirfd>/control.sock`, and QEMU inherits the same directory
//! at fd 3 and connects to `/proc/self/fd/3/control.sock`. The socket still
//! lives at `<state_dir>/control.sock`; only the name used to reach it is
//! short. No cwd change (process-wide, racy) and no second directory to clean.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::child::STATE_DIR_FD;

pub const SOCKET_NAME: &str = "control.sock";
/// sizeof(sun_path) - 1 for the terminating NUL.
const SUN_PATH_MAX: usize = 107;

pub struct ControlListener {
    pub listener: UnixListener,
    /// The path QEMU connects to.
    pub qemu_path: PathBuf,
    /// The state directory, for the child to inherit at [`STATE_DIR_FD`]
    /// when `qemu_path` goes through it.
    dir_fd: Option<OwnedFd>,
}

impl ControlListener {
    /// Listens on `<state_dir>/control.sock`, replacing a stale socket.
    pub fn bind(state_dir: &Path) -> std::io::Result<Self> {
        let state_dir = std::path::absolute(state_dir)?;
        let path = state_dir.join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if path.as_os_str().len() <= SUN_PATH_MAX {
            let listener = UnixListener::bind(&path)?;
            return Ok(Self {
                listener,
                qemu_path: path,
                dir_fd: None,
            });
        }
        use rustix::fs::{open, Mode, OFlags};
        let dir = open(
            &state_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let ours = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd());
        let listener = UnixListener::bind(ours)?;
        Ok(Self {
            listener,
            qemu_path: format!("/proc/self/fd/{STATE_DIR_FD}/{SOCKET_NAME}").into(),
            dir_fd: Some(dir),
        })
    }

    /// The fd the child must inherit at [`STATE_DIR_FD`], if any.
    pub fn child_fd(&self) -> Option<RawFd> {
        self.dir_fd.as_ref().map(|d| d.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn short_state_dir_binds_directly() {
        let tmp = tempfile::tempdir().unwrap();
        let l = ControlListener::bind(tmp.path()).unwrap();
        assert_eq!(l.qemu_path, tmp.path().join(SOCKET_NAME));
        assert!(l.child_fd().is_none());
        // A stale socket is replaced.
        drop(l);
        ControlListener::bind(tmp.path()).unwrap();
    }

    #[test]
    fn long_state_dir_goes_through_a_directory_fd() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("x".repeat(60)).join("y".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let l = ControlListener::bind(&deep).unwrap();
        assert_eq!(l.qemu_path, Path::new("/proc/self/fd/3/control.sock"));
        assert!(
            deep.join(SOCKET_NAME).exists(),
            "the socket lives in the state dir"
        );
        // A client reaching it through its own fd of the directory, as QEMU does.
        let dir = std::fs::File::open(&deep).unwrap();
        let via = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd());
        let mut c = std::os::unix::net::UnixStream::connect(via).unwrap();
        let (mut s, _) = l.listener.accept().unwrap();
        c.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }
}
