//! The container's own PID, mount, IPC and UTS namespaces, as docker gives
//! every container: the main process is PID 1 of a new PID namespace, sees a
//! minimal /dev and a read-only /sys, and every later process (exec, health
//! checks) joins the same namespaces.
//!
//! The namespaces are made on a thread of their own that then forks the
//! process: unshare(2) and setns(2) change the calling thread only, and a
//! new PID namespace is entered by the *children* of the thread that made
//! it. skiff-init's other threads stay where they are.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use rustix::fs::{FileType, Mode, OFlags, CWD};
use rustix::mount::{MountFlags, MoveMountFlags, OpenTreeFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};
use skiff_proto::v1::Security;

use crate::confinement::Confinement;

/// docker's default /dev/shm.
const DEFAULT_SHM: u64 = 64 << 20;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP: &str = "/sys/fs/cgroup/container";

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("--pids-limit needs the pids cgroup controller, which this guest kernel lacks")]
    NoPidsController,
    #[error("sysctl {0}: this guest kernel has no such setting")]
    UnknownSysctl(String),
    #[error(transparent)]
    Confinement(#[from] crate::confinement::ConfinementError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> NamespaceError {
    let what = what.into();
    move |e| NamespaceError::Io {
        what,
        source: e.into(),
    }
}

fn std_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NamespaceError {
    let what = what.into();
    move |source| NamespaceError::Io { what, source }
}

/// The container's namespaces, once its main process runs.
struct Joined {
    mnt: OwnedFd,
    ipc: OwnedFd,
    uts: OwnedFd,
    pid: OwnedFd,
}

/// One container's isolation: its confinement and, after the main process
/// started, the namespaces later processes join.
pub struct Container {
    pub confinement: Confinement,
    shm_size: u64,
    sysctls: Vec<(String, String)>,
    joined: Mutex<Option<Joined>>,
}

impl Container {
    /// At SetupContainer, in the guest's namespaces: the container's cgroup
    /// (with its pids limit) and the prepared confinement.
    pub fn new(s: &Security) -> Result<Self, NamespaceError> {
        let sysctls = s
            .sysctls
            .iter()
            .map(|c| (c.key.clone(), c.value.clone()))
            .collect();
        let procs = container_cgroup(s.pids_limit)?;
        Ok(Self {
            confinement: Confinement::new(s, procs)?,
            shm_size: if s.shm_size == 0 {
                DEFAULT_SHM
            } else {
                s.shm_size
            },
            sysctls,
            joined: Mutex::new(None),
        })
    }

    /// Runs `spawn` (a fork) on a thread inside the container's namespaces:
    /// new ones for the main process, the main process's for every other.
    /// `spawn` returns the child's pid in the guest's PID namespace; a
    /// namespace that cannot be made or joined is an error of its own kind.
    pub fn spawn_inside(
        &self,
        main: bool,
        spawn: impl FnOnce() -> io::Result<i32> + Send,
    ) -> io::Result<i32> {
        let inside = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    if main {
                        self.spawn_main(spawn)
                    } else {
                        self.spawn_joined(spawn)
                    }
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(NamespaceError::Io {
                        what: "the namespace thread".into(),
                        source: io::Error::other("panicked"),
                    })
                })
        });
        inside.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    fn spawn_main(
        &self,
        spawn: impl FnOnce() -> io::Result<i32>,
    ) -> Result<io::Result<i32>, NamespaceError> {
        // The guest's /proc, held open: the child mounts its own over /proc
        // in the new mount namespace, and its pid is looked up here after.
        let proc = rustix::fs::open(
            "/proc",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("opening /proc"))?;
        // SAFETY: FILES is not unshared, so descriptors stay shared with the
        // other threads; FS is this thread's alone from here on.
        unsafe {
            rustix::thread::unshare_unsafe(
                UnshareFlags::FS
                    | UnshareFlags::NEWNS
                    | UnshareFlags::NEWIPC
                    | UnshareFlags::NEWUTS
                    | UnshareFlags::NEWPID,
            )
        }
        .map_err(io_err("creating the container's namespaces"))?;
        if !self.confinement.privileged {
            minimal_dev(self.shm_size)?;
            read_only_sys()?;
        } else {
            mount_at("tmpfs", "/dev/shm", nsnd_noexec(), &shm_data(self.shm_size))?;
        }
        mount_at("mqueue", "/dev/mqueue", nsnd_noexec(), "")?;
        self.write_sysctls()?;
        let pid = match spawn() {
            Ok(pid) => pid,
            Err(e) => return Ok(Err(e)),
        };
        let ns = |name: &str| {
            rustix::fs::openat(
                &proc,
                format!("{pid}/ns/{name}"),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        // A main process that is gone already leaves nothing to join.
        if let (Ok(mnt), Ok(ipc), Ok(uts), Ok(pid_ns)) =
            (ns("mnt"), ns("ipc"), ns("uts"), ns("pid"))
        {
            *self.joined.lock().unwrap_or_else(|p| p.into_inner()) = Some(Joined {
                mnt,
                ipc,
                uts,
                pid: pid_ns,
            });
        }
        Ok(Ok(pid))
    }

    fn spawn_joined(
        &self,
        spawn: impl FnOnce() -> io::Result<i32>,
    ) -> Result<io::Result<i32>, NamespaceError> {
        {
            let joined = self.joined.lock().unwrap_or_else(|p| p.into_inner());
            let Some(j) = joined.as_ref() else {
                return Err(NamespaceError::Io {
                    what: "joining the container".into(),
                    source: io::Error::other("its main process has not started"),
                });
            };
            // setns to a mount namespace needs a filesystem context of the
            // thread's own.
            // SAFETY: as in spawn_main, only FS is unshared.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) }
                .map_err(io_err("unsharing the thread's filesystem context"))?;
            for (fd, kind, name) in [
                (&j.mnt, LinkNameSpaceType::Mount, "mount"),
                (&j.ipc, LinkNameSpaceType::InterProcessCommunication, "IPC"),
                (&j.uts, LinkNameSpaceType::HostNameAndNISDomainName, "UTS"),
                (&j.pid, LinkNameSpaceType::ProcessID, "PID"),
            ] {
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(kind))
                    .map_err(io_err(format!("joining the container's {name} namespace")))?;
            }
        }
        Ok(spawn())
    }

    /// Lets the namespaces go (at shutdown, once the processes are gone), so
    /// that the container's mounts end with skiff-init's and its
    /// filesystems unmount cleanly.
    pub fn leave(&self) {
        *self.joined.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// In the new IPC and UTS namespaces (sysctls act on the writer's).
    fn write_sysctls(&self) -> Result<(), NamespaceError> {
        for (key, value) in &self.sysctls {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(mut f) => std::io::Write::write_all(&mut f, value.as_bytes())
                    .map_err(std_err(format!("sysctl {key}={value}")))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(NamespaceError::UnknownSysctl(key.clone()))
                }
                Err(e) => return Err(std_err(format!("sysctl {key}"))(e)),
            }
        }
        Ok(())
    }
}

fn nsnd_noexec() -> MountFlags {
    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC
}

fn shm_data(size: u64) -> String {
    format!("mode=1777,size={size}")
}

fn mount_at(
    fstype: &str,
    target: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), NamespaceError> {
    let data = CString::new(data).map_err(|_| NamespaceError::Io {
        what: format!("mount options for {target}"),
        source: io::Error::other("NUL byte"),
    })?;
    crate::mounts::mount_fs(fstype, target, flags, Some(data.as_c_str()), &[]).map_err(|source| {
        NamespaceError::Io {
            what: "setting up the container's mounts".into(),
            source,
        }
    })
}

/// docker's /dev: a small tmpfs with the harmless devices, the guest's
/// devpts (the container's ptys come from it), its own /dev/shm.
fn minimal_dev(shm_size: u64) -> Result<(), NamespaceError> {
    // Detached before /dev is covered, attached again on top.
    let pts = rustix::mount::open_tree(
        CWD,
        "/dev/pts",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(io_err("cloning the /dev/pts mount"))?;
    mount_at(
        "tmpfs",
        "/dev",
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        "mode=755,size=65536k",
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = format!("/dev/{name}");
        rustix::fs::mknodat(
            CWD,
            path.as_str(),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .map_err(io_err(format!("creating {path}")))?;
        // mknod obeys the umask; the nodes are for everyone.
        rustix::fs::chmod(path.as_str(), Mode::from_raw_mode(0o666))
            .map_err(io_err(format!("chmod {path}")))?;
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(target, link).map_err(std_err(format!("creating {link}")))?;
    }
    for dir in ["/dev/pts", "/dev/shm", "/dev/mqueue"] {
        std::fs::create_dir(dir).map_err(std_err(format!("creating {dir}")))?;
    }
    rustix::mount::move_mount(
        pts.as_fd(),
        "",
        CWD,
        "/dev/pts",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(io_err("attaching /dev/pts"))?;
    mount_at("tmpfs", "/dev/shm", nsnd_noexec(), &shm_data(shm_size))
}

/// /sys and the cgroups below it read-only, as docker has them.
fn read_only_sys() -> Result<(), NamespaceError> {
    for target in [CGROUP_ROOT, "/sys"] {
        let flags = MountFlags::BIND | MountFlags::RDONLY | nsnd_noexec();
        match rustix::mount::mount_remount(target, flags, c"") {
            // No cgroup2 in this kernel: nothing mounted there.
            Err(rustix::io::Errno::INVAL) if target == CGROUP_ROOT => {}
            other => other.map_err(io_err(format!("making {target} read-only")))?,
        }
    }
    Ok(())
}

/// The container's cgroup: every process joins it; `pids_limit` (when not
/// 0) is its pids.max. Without cgroup2 there is none (unless a limit asks
/// for one).
fn container_cgroup(pids_limit: u32) -> Result<Option<OwnedFd>, NamespaceError> {
    let controllers = std::fs::read_to_string(format!("{CGROUP_ROOT}/cgroup.controllers"));
    let has_pids = controllers
        .as_ref()
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
    if pids_limit != 0 && !has_pids {
        return Err(NamespaceError::NoPidsController);
    }
    if controllers.is_err() {
        return Ok(None);
    }
    match std::fs::create_dir(CGROUP) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(std_err(format!("creating {CGROUP}"))(e)),
    }
    if has_pids {
        std::fs::write(format!("{CGROUP_ROOT}/cgroup.subtree_control"), "+pids")
            .map_err(std_err("enabling the pids controller"))?;
    }
    if pids_limit != 0 {
        std::fs::write(format!("{CGROUP}/pids.max"), pids_limit.to_string())
            .map_err(std_err("setting pids.max"))?;
    }
    let procs = rustix::fs::open(
        format!("{CGROUP}/cgroup.procs"),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(format!("opening {CGROUP}/cgroup.procs")))?;
    Ok(Some(procs))
}
