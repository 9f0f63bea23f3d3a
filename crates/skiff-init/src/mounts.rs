//! mount(2) for the Mount call and for skiff-init's own filesystems.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::mount::MountFlags;
use skiff_proto::v1::MountRequest;

use crate::mount_options;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount target {0:?} is not an absolute path")]
    RelativeTarget(String),
    #[error("mount option data contains a NUL byte")]
    BadData,
    #[error("device {0} did not appear within 5 s")]
    NoDevice(String),
    #[error("copying {target} into its new volume: {source}")]
    CopyUp { target: String, source: io::Error },
    #[error("creating {path}: {source}")]
    Mkdir { path: String, source: io::Error },
    #[error("mounting {source_path} on {target} ({fstype}): {error}")]
    Mount {
        source_path: String,
        target: String,
        fstype: String,
        error: io::Error,
    },
}

/// How long a disk may take to appear.
const DEVICE_WAIT: Duration = Duration::from_secs(5);

/// The device node at `path`, or the virtio disk that
/// /dev/disk/by-id/virtio-SERIAL names, waiting up to 5 s for it.
pub fn wait_for_device(path: &str) -> Option<PathBuf> {
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        if Path::new(path).exists() {
            return Some(path.into());
        }
        if let Some(serial) = path.strip_prefix(skiff_proto::DISK_BY_SERIAL) {
            let found = std::fs::read_dir("/sys/block").ok().and_then(|dir| {
                dir.flatten().find_map(|e| {
                    let s = std::fs::read_to_string(e.path().join("serial")).ok()?;
                    (s.trim() == serial).then(|| Path::new("/dev").join(e.file_name()))
                })
            });
            if found.is_some() {
                return found;
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Mount call. Bind mounts ignore flags on the first mount(2), so flags
/// such as "ro" are applied by a second, remounting call. A `copy_up`
/// mount of an empty filesystem first receives what the container has at
/// its target.
pub fn mount(req: &MountRequest) -> Result<(), MountError> {
    if !Path::new(&req.target).is_absolute() {
        return Err(MountError::RelativeTarget(req.target.clone()));
    }
    let source = if req.source.starts_with("/dev/") {
        wait_for_device(&req.source)
            .ok_or_else(|| MountError::NoDevice(req.source.clone()))?
            .to_string_lossy()
            .into_owned()
    } else {
        req.source.clone()
    };
    if req.mkdir {
        std::fs::create_dir_all(&req.target).map_err(|source| MountError::Mkdir {
            path: req.target.clone(),
            source,
        })?;
    }
    let o = mount_options::parse(&req.options);
    let failed = |error: rustix::io::Errno| MountError::Mount {
        source_path: req.source.clone(),
        target: req.target.clone(),
        fstype: if o.bind {
            "bind".to_owned()
        } else {
            req.fstype.clone()
        },
        error: error.into(),
    };
    if o.bind {
        if o.recursive {
            rustix::mount::mount_bind_recursive(req.source.as_str(), req.target.as_str())
                .map_err(failed)?;
        } else {
            rustix::mount::mount_bind(req.source.as_str(), req.target.as_str()).map_err(failed)?;
        }
        if !o.flags.is_empty() {
            rustix::mount::mount_remount(req.target.as_str(), MountFlags::BIND | o.flags, c"")
                .map_err(failed)?;
        }
        return Ok(());
    }
    let data = CString::new(o.data).map_err(|_| MountError::BadData)?;
    let data = if data.is_empty() {
        None
    } else {
        Some(data.as_c_str())
    };
    // What the container has at the target, held open: once the new
    // filesystem covers it, it is still reachable through the descriptor.
    let below = if req.copy_up {
        Some(
            std::fs::File::open(&req.target).map_err(|source| MountError::CopyUp {
                target: req.target.clone(),
                source,
            })?,
        )
    } else {
        None
    };
    rustix::mount::mount(
        source.as_str(),
        req.target.as_str(),
        req.fstype.as_str(),
        o.flags,
        data,
    )
    .map_err(failed)?;
    if let Some(below) = below {
        let target = Path::new(&req.target);
        let copy = || -> io::Result<()> {
            if crate::copy_up::is_empty(target)? {
                let src = PathBuf::from(format!("/proc/self/fd/{}", below.as_raw_fd()));
                crate::copy_up::copy_tree(&src, target)?;
            }
            Ok(())
        };
        copy().map_err(|source| MountError::CopyUp {
            target: req.target.clone(),
            source,
        })?;
    }
    Ok(())
}

/// A filesystem skiff-init itself needs; `ok` lists errors that are fine
/// (already mounted, not supported by this kernel).
pub fn mount_fs(
    fstype: &str,
    target: &str,
    flags: MountFlags,
    data: Option<&std::ffi::CStr>,
    ok: &[rustix::io::Errno],
) -> io::Result<()> {
    if let Err(e) = std::fs::create_dir_all(target) {
        // A read-only root (a container image without the directory) is
        // reported by mount(2) below.
        crate::debug!("creating {target}: {e}");
    }
    match rustix::mount::mount(fstype, target, fstype, flags, data) {
        Ok(()) => Ok(()),
        Err(e) if ok.contains(&e) => Ok(()),
        Err(e) => Err(io::Error::other(format!(
            "mounting {fstype} on {target}: {e}"
        ))),
    }
}

/// The pseudo filesystems every Linux userland expects, under `root`.
pub fn mount_system(root: &str) -> io::Result<()> {
    use rustix::io::Errno;
    let nsnd = MountFlags::NOSUID | MountFlags::NODEV;
    let at = |p: &str| format!("{}{p}", root.trim_end_matches('/'));
    mount_fs(
        "proc",
        &at("/proc"),
        nsnd | MountFlags::NOEXEC,
        None,
        &[Errno::BUSY],
    )?;
    mount_fs(
        "sysfs",
        &at("/sys"),
        nsnd | MountFlags::NOEXEC,
        None,
        &[Errno::BUSY],
    )?;
    mount_fs(
        "devtmpfs",
        &at("/dev"),
        MountFlags::NOSUID,
        Some(c"mode=0755"),
        &[Errno::BUSY],
    )?;
    mount_fs(
        "devpts",
        &at("/dev/pts"),
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
        &[Errno::BUSY],
    )?;
    // Since Linux 4.7 /dev/ptmx opens the devpts instance at /dev/pts, so
    // devtmpfs's own node is left alone.
    mount_fs(
        "tmpfs",
        &at("/dev/shm"),
        nsnd | MountFlags::NOEXEC,
        Some(c"mode=1777"),
        &[Errno::BUSY],
    )?;
    mount_fs(
        "cgroup2",
        &at("/sys/fs/cgroup"),
        nsnd | MountFlags::NOEXEC,
        None,
        &[Errno::BUSY, Errno::NOENT, Errno::NODEV],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_targets_are_refused() {
        let req = MountRequest {
            target: "mnt".into(),
            ..Default::default()
        };
        assert!(matches!(mount(&req), Err(MountError::RelativeTarget(_))));
    }
}
