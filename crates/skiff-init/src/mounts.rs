//! mount(2) for the Mount call and for skiff-init's own filesystems.

use std::ffi::CString;
use std::io;
use std::path::Path;

use rustix::mount::MountFlags;
use skiff_proto::v1::MountRequest;

use crate::mount_options;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount target {0:?} is not an absolute path")]
    RelativeTarget(String),
    #[error("mount option data contains a NUL byte")]
    BadData,
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

/// The Mount call. Bind mounts ignore flags on the first mount(2), so flags
/// such as "ro" are applied by a second, remounting call.
pub fn mount(req: &MountRequest) -> Result<(), MountError> {
    if !Path::new(&req.target).is_absolute() {
        return Err(MountError::RelativeTarget(req.target.clone()));
    }
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
    rustix::mount::mount(
        req.source.as_str(),
        req.target.as_str(),
        req.fstype.as_str(),
        o.flags,
        data,
    )
    .map_err(failed)
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
