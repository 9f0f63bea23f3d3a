//! `start`: spawns the container's monitor and waits until the process runs
//! (or, for a foreground start, until it is created and waits for its owner).

use std::io::BufReader;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use skiff_util::lock::FileLock;

use super::{io, Container, ContainerError, Containers, Result, START_LOCK};
use crate::agent::AgentError;
use crate::monitor::ready::{read_until_settled, ReadyMsg};
use crate::monitor::MonitorOptions;

/// The fd at which a monitor finds the write end of its ready pipe.
pub const READY_FD: i32 = 3;

type BuildMonitor = dyn Fn(&std::path::Path, MonitorOptions) -> std::process::Command + Send + Sync;

/// How to run a monitor: the program hosting it (the `skiff` binary
/// re-executed), given the container's directory and the options. The
/// command must call [`crate::monitor::run`] with them and the ready pipe at
/// [`READY_FD`].
pub struct MonitorCommand(Box<BuildMonitor>);

impl MonitorCommand {
    pub fn new(
        f: impl Fn(&std::path::Path, MonitorOptions) -> std::process::Command + Send + Sync + 'static,
    ) -> Self {
        Self(Box::new(f))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// The caller attaches as the owner before the process starts.
    pub attach: bool,
}

/// A started container.
pub struct Started {
    pub monitor_pid: u32,
    /// The main process's pid in the guest; `None` while it waits for its owner.
    pub pid: Option<u32>,
    /// Kept open until the owner has attached: closing it (or dying) before
    /// that makes the monitor give the container up.
    ready: Option<BufReader<std::fs::File>>,
    child: std::process::Child,
}

impl Started {
    /// The owner is attached: the monitor no longer needs the pipe.
    pub fn attached(&mut self) {
        self.ready = None;
    }

    /// Reaps the monitor if it has ended (a foreground caller outlives it).
    pub fn reap(&mut self) {
        let _ = self.child.try_wait();
    }

    /// Waits for the monitor to end.
    pub fn wait_monitor(&mut self) {
        let _ = self.child.wait();
    }
}

/// Starts `c` (an error if it runs already). `on_monitor` learns the
/// monitor's pid as soon as it exists: a caller interrupted meanwhile sends
/// it SIGTERM, and the start ends with the container given up.
pub fn start(
    containers: &Containers,
    c: &Container,
    opts: StartOptions,
    monitor: &MonitorCommand,
    on_monitor: &mut dyn FnMut(u32),
) -> Result<Started> {
    let dir = c.dir().to_path_buf();
    let lock_path = dir.join(START_LOCK);
    let start_lock = FileLock::exclusive(&lock_path).map_err(io("locking", &lock_path))?;
    // Under the lock: removed meanwhile, or started by someone else?
    let c = Container::load(&dir).map_err(|_| ContainerError::NotFound(c.name().to_owned()))?;
    if c.status().is_active() {
        return Err(ContainerError::AlreadyRunning(c.name().to_owned()));
    }
    if !c.status().can_start() {
        return Err(ContainerError::Invalid(format!(
            "container {} cannot be started while {}",
            c.name(),
            c.status()
        )));
    }
    let _ = containers;

    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io("making a pipe for", &dir)(e.into()))?;
    let log_path = dir.join("monitor.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("opening", &log_path))?;
    let log2 = log.try_clone().map_err(io("opening", &log_path))?;
    let mut cmd = (monitor.0)(
        &dir,
        MonitorOptions {
            wait_for_owner: opts.attach,
        },
    );
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let w_raw = w.as_raw_fd();
    // SAFETY: the hook makes only async-signal-safe calls (setsid, dup2).
    unsafe {
        cmd.pre_exec(move || {
            skiff_util::child::new_session()?;
            skiff_util::child::keep_fd_at(w_raw, READY_FD)
        });
    }
    let child = cmd.spawn().map_err(io("starting the monitor of", &dir))?;
    drop(w);
    on_monitor(child.id());

    let mut reader = BufReader::new(std::fs::File::from(r));
    let mut monitor_pid = child.id();
    let mut start_lock = Some(start_lock);
    let settled = read_until_settled(&mut reader, &mut |pid| {
        monitor_pid = pid;
        // The monitor holds the container now: others may look again.
        start_lock = None;
    });
    let failed = |message: String| -> ContainerError {
        ContainerError::Monitor {
            name: c.name().to_owned(),
            message,
        }
    };
    match settled {
        Ok(Some(ReadyMsg::Started { pid })) => Ok(Started {
            monitor_pid,
            pid: Some(pid),
            ready: None,
            child,
        }),
        Ok(Some(ReadyMsg::Waiting)) => Ok(Started {
            monitor_pid,
            pid: None,
            ready: Some(reader),
            child,
        }),
        Ok(Some(ReadyMsg::Failed { message, exit_code })) => {
            let mut child = child;
            let _ = child.wait();
            Err(match exit_code {
                126 | 127 => ContainerError::Agent(AgentError::Exec {
                    code: exit_code,
                    message,
                }),
                _ => failed(message),
            })
        }
        Ok(Some(ReadyMsg::Locked { .. })) | Ok(None) => {
            let mut child = child;
            let status = child.wait();
            let tail = last_line(&log_path);
            Err(failed(format!(
                "its monitor ended during the start ({}){}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                tail.map(|t| format!(": {t}")).unwrap_or_default()
            )))
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The last non-empty line of the monitor's log, for an error message.
fn last_line(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
}

/// What should run again after the host started (there is no daemon to
/// remember it): containers with `--restart always` that ran before, and
/// `unless-stopped` ones that no user stopped. Running ones are left alone.
pub fn wanted_at_boot(containers: &Containers) -> Result<Vec<Container>> {
    use super::config::RestartPolicy;
    Ok(containers
        .list()?
        .into_iter()
        .filter(|c| {
            c.status() == super::state::ContainerStatus::Exited
                && c.state.started_at.is_some()
                && match c.config.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::UnlessStopped => !c.state.stopped_by_user,
                    _ => false,
                }
        })
        .collect())
}
