//! SetupContainer: the container's filesystem becomes the root of
//! everything that runs afterwards, the way switch_root(8) leaves an
//! initramfs; and at Shutdown, its filesystems are unmounted again.

use std::io;
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use skiff_proto::v1::ContainerSetup;

use crate::etc_files;

const NEW_ROOT: &str = "/mnt/rootfs";
/// statfs magic numbers of the filesystems an initramfs lives on.
const RAMFS_MAGIC: u64 = 0x8584_58f6;
const TMPFS_MAGIC: u64 = 0x0102_1994;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("root filesystem device {0} did not appear within 5 s")]
    NoDevice(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Mount(#[from] crate::mounts::MountError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(Errno) -> SetupError {
    let what = what.into();
    move |e| SetupError::Io {
        what,
        source: e.into(),
    }
}

fn std_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Io { what, source }
}

/// Where a build step's changes are, kept open across the switch of root
/// (after it, the overlay's layers are no longer reachable by path).
pub struct ChangesDirs {
    /// The overlay's upper directory: what the step wrote.
    pub upper: std::os::fd::OwnedFd,
}

const LOWER: &str = "/mnt/lower";
const CHANGES: &str = "/mnt/changes";

/// Waits for a disk by its by-serial path; returns its device path.
async fn find_device(path: &str) -> Result<String, SetupError> {
    let wanted = path.to_owned();
    let found = tokio::task::spawn_blocking(move || crate::mounts::wait_for_device(&wanted))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| SetupError::NoDevice(path.to_owned()))?;
    Ok(found.to_string_lossy().into_owned())
}

pub async fn setup(req: &ContainerSetup) -> Result<Option<ChangesDirs>, SetupError> {
    let fstype = if req.rootfs_fstype.is_empty() {
        "ext4"
    } else {
        req.rootfs_fstype.as_str()
    };
    let device = find_device(&req.rootfs_device).await?;
    let device = device.as_str();
    std::fs::create_dir_all(NEW_ROOT).map_err(std_err(format!("creating {NEW_ROOT}")))?;
    let mut changes = None;
    let writable = if !req.changes_device.is_empty() {
        let upper_device = find_device(&req.changes_device).await?;
        changes = Some(mount_overlay(device, fstype, &upper_device)?);
        true
    } else {
        // Mounted writable first even for a read-only container, so missing
        // mount points and the /etc files can be created; made read-only at
        // the end. A device that cannot be written is mounted read-only at once.
        match rustix::mount::mount(device, NEW_ROOT, fstype, MountFlags::empty(), None) {
            Ok(()) => true,
            Err(Errno::ROFS | Errno::ACCESS) => {
                rustix::mount::mount(device, NEW_ROOT, fstype, MountFlags::RDONLY, None).map_err(
                    io_err(format!(
                        "mounting {device} ({fstype}) read-only on {NEW_ROOT}"
                    )),
                )?;
                false
            }
            Err(e) => {
                return Err(io_err(format!(
                    "mounting {device} ({fstype}) on {NEW_ROOT}"
                ))(e))
            }
        }
    };
    switch_root()?;
    crate::mounts::mount_system("/")
        .map_err(std_err("mounting /proc, /sys and /dev in the container"))?;
    if writable {
        write_etc(req)?;
    } else if !req.hostname.is_empty() || !req.hosts.is_empty() || !req.nameservers.is_empty() {
        crate::error!("root filesystem is not writable: /etc/hostname, /etc/hosts and /etc/resolv.conf left as they are");
    }
    if !req.hostname.is_empty() {
        rustix::system::sethostname(req.hostname.as_bytes()).map_err(io_err("sethostname"))?;
    }
    for m in &req.mounts {
        crate::mounts::mount(m)?;
    }
    if req.readonly && writable {
        rustix::mount::mount_remount("/", MountFlags::RDONLY, c"")
            .map_err(io_err("making / read-only"))?;
    }
    Ok(changes)
}

/// A build step's root: the image read-only below, an empty upper
/// directory on `upper_device` above. Plain overlayfs semantics (no
/// redirects, no metacopy, no index), so the upper directory holds whole
/// files, whiteouts and opaque markers only: it translates to a layer as is.
fn mount_overlay(
    device: &str,
    fstype: &str,
    upper_device: &str,
) -> Result<ChangesDirs, SetupError> {
    for dir in [LOWER, CHANGES] {
        std::fs::create_dir_all(dir).map_err(std_err(format!("creating {dir}")))?;
    }
    rustix::mount::mount(device, LOWER, fstype, MountFlags::RDONLY, None)
        .map_err(io_err(format!("mounting {device} read-only on {LOWER}")))?;
    rustix::mount::mount(upper_device, CHANGES, "ext4", MountFlags::empty(), None)
        .map_err(io_err(format!("mounting {upper_device} on {CHANGES}")))?;
    for dir in ["upper", "work"] {
        let d = format!("{CHANGES}/{dir}");
        std::fs::create_dir_all(&d).map_err(std_err(format!("creating {d}")))?;
    }
    let options = std::ffi::CString::new(format!(
        "lowerdir={LOWER},upperdir={CHANGES}/upper,workdir={CHANGES}/work,redirect_dir=off,index=off,metacopy=off"
    ))
    .map_err(|e| std_err("overlay options")(io::Error::other(e)))?;
    rustix::mount::mount(
        "overlay",
        NEW_ROOT,
        "overlay",
        MountFlags::empty(),
        Some(options.as_c_str()),
    )
    .map_err(io_err(format!("mounting the overlay on {NEW_ROOT}")))?;
    let open = |path: &str| {
        rustix::fs::open(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(io_err(format!("opening {path}")))
    };
    Ok(ChangesDirs {
        upper: open(&format!("{CHANGES}/upper"))?,
    })
}

/// switch_root(8): empty the initramfs (so the container never sees
/// skiff-init's files and the memory is freed), move the new root onto /,
/// chroot into it.
fn switch_root() -> Result<(), SetupError> {
    // The old pseudo filesystems are mounted again inside the new root; the
    // old ones are detached so nothing keeps the initramfs busy.
    for old in [
        "/dev/pts",
        "/dev/shm",
        "/sys/fs/cgroup",
        "/sys",
        "/proc",
        "/dev",
    ] {
        let _ = rustix::mount::unmount(old, UnmountFlags::DETACH);
    }
    let stat = rustix::fs::statfs("/").map_err(io_err("statfs /"))?;
    let magic = stat.f_type as u64;
    if magic == RAMFS_MAGIC || magic == TMPFS_MAGIC {
        let root_dev = rustix::fs::stat("/").map_err(io_err("stat /"))?.st_dev;
        remove_tree(Path::new("/"), root_dev);
    } else {
        crate::error!(
            "/ is not an initramfs (statfs type {magic:#x}): its files are left in place"
        );
    }
    std::env::set_current_dir(NEW_ROOT).map_err(std_err(format!("chdir {NEW_ROOT}")))?;
    rustix::mount::mount_move(".", "/").map_err(io_err(format!("moving {NEW_ROOT} onto /")))?;
    rustix::process::chroot(".").map_err(io_err("chroot"))?;
    std::env::set_current_dir("/").map_err(std_err("chdir /"))?;
    Ok(())
}

/// Deletes everything under `dir` that lives on device `dev`, without
/// crossing into other filesystems (the new root is mounted below it).
/// Failures are logged: a leftover file must not stop the container.
fn remove_tree(dir: &Path, dev: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(st) = rustix::fs::lstat(&path) else {
            continue;
        };
        if st.st_dev != dev {
            continue;
        }
        let result = if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() {
            remove_tree(&path, dev);
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = result {
            // The mount point of the new root is expected to stay.
            if path != Path::new("/mnt") && path != Path::new(NEW_ROOT) {
                crate::debug!("removing {}: {e}", path.display());
            }
        }
    }
}

fn write_etc(req: &ContainerSetup) -> Result<(), SetupError> {
    std::fs::create_dir_all("/etc").map_err(std_err("creating /etc"))?;
    // Replaced, not written through: the image's file may be a symlink into
    // /run (systemd-resolved) that does not exist here.
    let replace = |path: &str, text: &str| -> Result<(), SetupError> {
        let _ = std::fs::remove_file(path);
        std::fs::write(path, text).map_err(std_err(format!("writing {path}")))
    };
    if !req.hostname.is_empty() {
        replace("/etc/hostname", &format!("{}\n", req.hostname))?;
    }
    replace("/etc/hosts", &etc_files::hosts(req))?;
    if let Some(resolv) = etc_files::resolv_conf(req) {
        replace("/etc/resolv.conf", &resolv)?;
    }
    Ok(())
}

/// Filesystems that hold no data worth flushing.
const VIRTUAL: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "bpf",
    "pstore",
    "hugetlbfs",
    "binfmt_misc",
    "rootfs",
    "ramfs",
];

/// Mount points of /proc/self/mounts that hold data, in mount order.
pub fn data_mounts(mounts: &str) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (_, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (!VIRTUAL.contains(&fstype)).then(|| unescape(target))
        })
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Shutdown: flush and unmount every data filesystem, innermost first; one
/// that is busy is made read-only instead. The root is remounted read-only.
pub fn unmount_all() {
    rustix::fs::sync();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for target in data_mounts(&mounts)
        .iter()
        .rev()
        .filter(|t| t.as_str() != "/")
    {
        if let Err(e) = rustix::mount::unmount(target.as_str(), UnmountFlags::empty()) {
            crate::debug!("unmounting {target}: {e}; making it read-only");
            let _ = rustix::mount::mount_remount(target.as_str(), MountFlags::RDONLY, c"");
        }
    }
    if let Err(e) = rustix::mount::mount_remount("/", MountFlags::RDONLY, c"") {
        crate::debug!("making / read-only: {e}");
    }
    rustix::fs::sync();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_mounts_skip_pseudo_filesystems() {
        let mounts = "\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
devtmpfs /dev devtmpfs rw 0 0
vol0 /data\\040dir 9p rw 0 0
/dev/vdb /mnt/x ext4 ro 0 0
tmpfs /dev/shm tmpfs rw 0 0
";
        assert_eq!(data_mounts(mounts), vec!["/", "/data dir", "/mnt/x"]);
    }

    #[test]
    fn unescape_handles_edges() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("tail\\04"), "tail\\04");
        assert_eq!(unescape("x\\011y"), "x\ty");
    }
}
