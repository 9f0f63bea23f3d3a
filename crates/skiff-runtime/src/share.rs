//! Host directories in a container: one virtiofsd per directory, started by
//! the monitor, confined to that directory (virtiofsd's own namespace
//! sandbox pivots into it), read-only from the host side when asked.
//!
//! The C virtiofsd that Debian's QEMU ships is used: it is installed with
//! QEMU, works with QEMU 7.2 (the Rust one's `--tag` crashes 7.1–8.0), and
//! takes a listening socket as an fd, so no socket path (which a long store
//! path could overflow) is needed. Without virtiofsd a `-v` is refused.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::container::config::BindMount;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("virtiofsd not found (Debian: qemu-system-common's /usr/lib/qemu/virtiofsd; or set SKIFF_VIRTIOFSD)")]
    NoVirtiofsd,
    #[error("sharing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// virtiofsd finds its listening socket here.
const LISTEN_FD: i32 = 3;

/// A directory being shared: QEMU's end of the connection and the tag the
/// guest mounts. virtiofsd is killed when this is dropped.
pub struct Shared {
    pub qemu_end: OwnedFd,
    pub tag: String,
    child: std::process::Child,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn virtiofsd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_VIRTIOFSD") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/lib/qemu/virtiofsd",
        "/usr/libexec/virtiofsd",
        "/usr/lib/virtiofsd",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Starts virtiofsd for `bind` (the container's `index`th), its log in `dir`.
pub fn start(dir: &Path, index: usize, bind: &BindMount) -> Result<Shared, ShareError> {
    let binary = virtiofsd().ok_or(ShareError::NoVirtiofsd)?;
    let io = |source| ShareError::Io {
        path: PathBuf::from(&bind.source),
        source,
    };
    // An abstract socket: no path to clean up or to overflow. Ours is the
    // first connection in its queue, made before virtiofsd runs, and
    // virtiofsd accepts only one: no one else gets at the directory.
    let name = format!("skiff-fs-{}", skiff_util::id::random_hex::<16>());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(io)?;
    let listener = UnixListener::bind_addr(&addr).map_err(io)?;
    let qemu_end = UnixStream::connect_addr(&addr).map_err(io)?;
    let log = std::fs::File::create(dir.join(format!("virtiofsd-{index}.log"))).map_err(io)?;
    let mut cmd = std::process::Command::new(&binary);
    cmd.arg(format!("--fd={LISTEN_FD}"))
        .arg("-o")
        .arg(format!("source={}", bind.source))
        .args(["-o", "cache=auto", "-o", "sandbox=namespace"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let source = CString::new(Path::new(&bind.source).as_os_str().as_bytes())
        .map_err(|_| io(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let listen_fd = listener.as_raw_fd();
    let readonly = bind.readonly;
    let mut die_with_parent = skiff_util::child::die_with_parent();
    // SAFETY: the hook makes only async-signal-safe calls (prctl, getppid,
    // dup2, unshare, mount) on data prepared before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            die_with_parent()?;
            skiff_util::child::keep_fd_at(listen_fd, LISTEN_FD)?;
            if readonly {
                read_only_view(&source)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io)?;
    drop(listener);
    Ok(Shared {
        qemu_end: qemu_end.into(),
        tag: format!("skiff{index}"),
        child,
    })
}

/// In a mount namespace of its own, `source` becomes a read-only bind of
/// itself: virtiofsd (and so the guest) can read it and not write it, whatever
/// the guest's mount flags say.
fn read_only_view(source: &CString) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: syscalls on NUL-terminated strings that live in the closure.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            source.as_ptr(),
            source.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            std::ptr::null(),
            source.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            std::ptr::null(),
        ))
    }
}
