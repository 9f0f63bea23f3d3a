//! One container process: prepared by CreateProcess (user, cwd, program and
//! stdio resolved), run by StartProcess.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{Gid, Uid};
use skiff_proto::v1::{ExitStatus, ProcessSpec};
use tokio::sync::watch;
use tonic::Status;

use crate::executable::{find_executable, LookupError};
use crate::fd_io::FdIo;
use crate::guest::namespaces::Container;
use crate::reaper::{ExitSender, Reaper};
use crate::{environment, pty, users};

/// The child's ends of its stdio, handed to the process at spawn.
enum ChildStdio {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty {
        slave: OwnedFd,
    },
}

/// skiff-init's ends, relayed by the Stdio call.
pub enum ParentStdio {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty(FdIo),
}

/// Everything resolved at CreateProcess, waiting for StartProcess.
struct Prepared {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    user: users::ResolvedUser,
    stdio: ChildStdio,
}

enum State {
    Created(Box<Prepared>),
    Starting,
    Running(i32),
    /// Never ran (spawn failed).
    Failed,
}

pub struct Process {
    pub id: String,
    /// The container's main process (the first one created).
    pub main: bool,
    pub exit: ExitSender,
    state: Mutex<State>,
    stdio: Mutex<Option<ParentStdio>>,
    /// The pty master, for ResizeTty.
    tty: Option<FdIo>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_status(what: &str, e: std::io::Error) -> Status {
    Status::internal(format!("{what}: {e}"))
}

impl Process {
    /// CreateProcess: resolves everything that can fail before anything runs.
    /// `root` is where /etc/passwd and /etc/group are read (the container's
    /// root is "/" once SetupContainer has run).
    pub fn create(
        spec: &ProcessSpec,
        main: bool,
        root: &Path,
        hostname: &str,
    ) -> Result<Self, Status> {
        if spec.args.is_empty() {
            return Err(Status::invalid_argument("process has no args"));
        }
        let user = users::resolve_in(root, &spec.user).map_err(|e| match e {
            users::UserError::Read { .. } => Status::internal(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        })?;
        let cwd = PathBuf::from(if spec.cwd.is_empty() {
            "/"
        } else {
            spec.cwd.as_str()
        });
        if !cwd.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "cwd {:?} is not absolute",
                spec.cwd
            )));
        }
        // Like docker's WORKDIR: a missing working directory is created.
        std::fs::create_dir_all(&cwd)
            .map_err(|e| io_status(&format!("creating cwd {}", cwd.display()), e))?;
        let home = user.home.clone().unwrap_or_else(|| "/".to_owned());
        let env = environment::with_defaults(&spec.env, &home, hostname, spec.terminal);
        let path_var = environment::lookup(&env, "PATH").unwrap_or(crate::executable::DEFAULT_PATH);
        let program = find_executable(&spec.args[0], path_var, &cwd).map_err(|e| match e {
            LookupError::NotFound(m) => Status::not_found(m),
            LookupError::PermissionDenied(m) => Status::permission_denied(m),
        })?;

        let (child, parent, tty) = if spec.terminal {
            let size = spec.tty_size.unwrap_or_default();
            let p = pty::open(clamp_u16(size.rows), clamp_u16(size.cols))
                .map_err(|e| io_status("opening a pty", e))?;
            let master =
                FdIo::new(p.master, true).map_err(|e| io_status("registering the pty", e))?;
            (
                ChildStdio::Tty { slave: p.slave },
                ParentStdio::Tty(master.clone()),
                Some(master),
            )
        } else {
            let pipe = || {
                rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
                    .map_err(|e| io_status("creating a pipe", e.into()))
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (stdin_child, stdin_parent) = if spec.stdin {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            (
                ChildStdio::Pipes {
                    stdin: stdin_child,
                    stdout: out_w,
                    stderr: err_w,
                },
                ParentStdio::Pipes {
                    stdin: stdin_parent,
                    stdout: out_r,
                    stderr: err_r,
                },
                None,
            )
        };
        let prepared = Prepared {
            program,
            args: spec.args.clone(),
            env,
            cwd,
            user,
            stdio: child,
        };
        Ok(Self {
            id: spec.id.clone(),
            main,
            exit: Arc::new(watch::channel(None).0),
            state: Mutex::new(State::Created(Box::new(prepared))),
            stdio: Mutex::new(Some(parent)),
            tty,
        })
    }

    /// StartProcess: forks and execs, inside the container's namespaces and
    /// confinement when there is a `container`. Returns the pid.
    pub fn start(
        &self,
        reaper: &Reaper,
        container: Option<&Arc<Container>>,
    ) -> Result<i32, Status> {
        let prepared = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Starting) {
                State::Created(p) => p,
                other => {
                    *state = other;
                    return Err(Status::failed_precondition(format!(
                        "process {} was already started",
                        self.id
                    )));
                }
            }
        };
        let mut cmd = command(*prepared, container.cloned(), self.main)
            .map_err(|e| io_status("opening /dev/null", e))?;
        let spawned = match container {
            Some(c) => c.spawn_inside(self.main, || {
                reaper.spawn(&mut cmd, self.exit.clone(), self.main)
            }),
            None => reaper.spawn(&mut cmd, self.exit.clone(), self.main),
        };
        match spawned {
            Ok(pid) => {
                *lock(&self.state) = State::Running(pid);
                Ok(pid)
            }
            Err(e) => {
                *lock(&self.state) = State::Failed;
                // Waiters learn what a shell would have reported.
                let (status, code) = spawn_error(&self.id, &e);
                self.exit.send_replace(Some(ExitStatus {
                    exit_code: code,
                    signal: 0,
                    exited_us: crate::clock::boottime_us(),
                }));
                Err(status)
            }
        }
        // `cmd` (holding the child's ends of the pipes) is dropped here, so
        // the relay sees end of file once the process is gone.
    }

    /// The pid once started.
    pub fn pid(&self) -> Option<i32> {
        match *lock(&self.state) {
            State::Running(pid) => Some(pid),
            _ => None,
        }
    }

    pub fn has_started(&self) -> bool {
        !matches!(*lock(&self.state), State::Created(_) | State::Starting)
    }

    /// Takes the parent's ends of stdio; None when already attached.
    pub fn take_stdio(&self) -> Option<ParentStdio> {
        lock(&self.stdio).take()
    }

    pub fn tty(&self) -> Option<&FdIo> {
        self.tty.as_ref()
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }
}

fn clamp_u16(v: u32) -> u16 {
    v.min(u16::MAX as u32) as u16
}

/// The Status for a failed exec, and the exit code a shell would report.
fn spawn_error(id: &str, e: &std::io::Error) -> (Status, i32) {
    let msg = format!("starting process {id}: {e}");
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        Some(rustix::io::Errno::NOENT) => (Status::not_found(msg), 127),
        Some(
            rustix::io::Errno::ACCESS
            | rustix::io::Errno::NOEXEC
            | rustix::io::Errno::ISDIR
            | rustix::io::Errno::PERM,
        ) => (Status::permission_denied(msg), 126),
        _ => (Status::internal(msg), 126),
    }
}

fn command(p: Prepared, container: Option<Arc<Container>>, main: bool) -> std::io::Result<Command> {
    let mut cmd = Command::new(&p.program);
    cmd.arg0(&p.args[0])
        .args(&p.args[1..])
        .env_clear()
        .envs(p.env)
        .current_dir(&p.cwd);
    let terminal = matches!(p.stdio, ChildStdio::Tty { .. });
    match p.stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let stdin = match stdin {
                Some(fd) => Stdio::from(fd),
                None => Stdio::from(rustix::fs::open(
                    "/dev/null",
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?),
            };
            cmd.stdin(stdin)
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(stderr));
        }
        ChildStdio::Tty { slave } => {
            cmd.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
        }
    }
    // Allocated here: pre_exec runs between fork and exec, where only
    // async-signal-safe work (raw syscalls, no allocation) is allowed.
    let groups: Vec<Gid> = p.user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let (uid, gid) = (Uid::from_raw(p.user.uid), Gid::from_raw(p.user.gid));
    // Only root can change ids; a test run by an ordinary user keeps its own.
    let switch_user = rustix::process::geteuid().is_root();
    // SAFETY: the closure only makes raw syscalls through rustix and libc
    // (Confinement's methods are written for this place).
    unsafe {
        cmd.pre_exec(move || {
            // A session (and process group) of its own: group signals and
            // "kill everything" address it without touching skiff-init.
            rustix::process::setsid()?;
            if terminal {
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
            }
            if let Some(c) = &container {
                if main {
                    // PID 1 of the new PID namespace mounts the /proc that
                    // shows it; the guest's goes from this mount namespace.
                    rustix::mount::unmount(c"/proc", rustix::mount::UnmountFlags::DETACH)?;
                    rustix::mount::mount(
                        c"proc",
                        c"/proc",
                        c"proc",
                        rustix::mount::MountFlags::NOSUID
                            | rustix::mount::MountFlags::NODEV
                            | rustix::mount::MountFlags::NOEXEC,
                        None,
                    )?;
                }
                c.confinement
                    .apply_before_user(switch_user && !uid.is_root())?;
            }
            if switch_user {
                // These affect the calling thread only; after fork the child
                // has just this one thread.
                rustix::thread::set_thread_groups(&groups)?;
                rustix::thread::set_thread_res_gid(gid, gid, gid)?;
                rustix::thread::set_thread_res_uid(uid, uid, uid)?;
            }
            if let Some(c) = &container {
                c.confinement.apply_after_user(uid.is_root())?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}
