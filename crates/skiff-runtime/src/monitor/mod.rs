//! The monitor: one process per running container (the `skiff` binary
//! re-executed in its own session, as conmon sits beside podman). It owns the
//! sandbox and the control channel, writes the container's log and state,
//! applies the restart policy and healthcheck, and answers `attach`, `exec`,
//! `stop`, `kill`, `top`, `stats` and `cp` on `monitor.sock`. It holds
//! `monitor.lock` for as long as it lives, and it dies with its VM (and the VM
//! with it: QEMU has a parent-death signal).

pub mod launcher;
pub mod protocol;
pub mod ready;
pub mod restart;

pub(crate) mod client;
mod health;
mod server;
mod supervisor;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::agent::{Agent, Input, OutputStream};
use crate::container::config::ContainerConfig;
use crate::container::state::ContainerState;
use crate::container::{read_json, write_json, MONITOR_LOCK, STATE_FILE};
use launcher::Launcher;
use protocol::Timings;
use ready::{ReadyMsg, ReadyWriter};

/// How the monitor was asked to start the container.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorOptions {
    /// Create the process, then wait for the owner's attach before starting it
    /// (a foreground `run`, `start -a`), so that no output is missed.
    pub wait_for_owner: bool,
}

/// What a client asks of the supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop signal now, SIGKILL after `timeout`; no restart.
    Stop { timeout: Duration },
    /// A signal from `kill`: the stop signal or SIGKILL count as a stop.
    Kill { signal: i32 },
    /// A signal an attached client forwards (its Ctrl-C): no stop.
    Signal { signal: i32 },
    /// Kill the sandbox now; no restart.
    Abort,
}

/// What an attached client receives.
#[derive(Debug, Clone)]
pub(crate) enum AttachMsg {
    Output(OutputStream, Bytes),
    Started(u32),
    Exited {
        code: i32,
        signal: i32,
        timings: Option<Timings>,
    },
}

/// The running process, for exec, top, stats and cp.
#[derive(Clone)]
pub(crate) struct RunHandle {
    pub agent: Agent,
    pub pid: u32,
    pub sandbox_pid: Option<u32>,
}

struct Attacher {
    id: u64,
    tx: mpsc::Sender<AttachMsg>,
    /// The foreground owner gets everything and may slow the container down;
    /// any other client that falls behind is let go.
    owner: bool,
}

/// The owner's attach: its terminal size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Owner {
    pub tty_size: Option<(u16, u16)>,
}

/// What the supervisor and the connections share.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: ContainerConfig,
    state: Mutex<ContainerState>,
    run: Mutex<Option<RunHandle>>,
    /// The main process's stdin, from its creation on (an owner's input
    /// arrives before the process starts).
    stdin: Mutex<Option<mpsc::Sender<Input>>>,
    attachers: Mutex<Vec<Attacher>>,
    pub owner: watch::Sender<Option<Owner>>,
    pub commands: mpsc::UnboundedSender<Command>,
    /// True once the container is down for good.
    pub finished: watch::Sender<bool>,
    pub next_id: AtomicU64,
}

impl Shared {
    pub fn state(&self) -> ContainerState {
        lock(&self.state).clone()
    }

    /// Changes the state and writes `state.json` (atomically).
    pub fn update(&self, f: impl FnOnce(&mut ContainerState)) {
        let mut st = lock(&self.state);
        f(&mut st);
        if let Err(e) = write_json(&self.dir.join(STATE_FILE), &*st) {
            tracing::warn!("{e}");
        }
    }

    pub fn run(&self) -> Option<RunHandle> {
        lock(&self.run).clone()
    }

    pub fn set_run(&self, r: Option<RunHandle>) {
        *lock(&self.run) = r;
    }

    pub fn stdin(&self) -> Option<mpsc::Sender<Input>> {
        lock(&self.stdin).clone()
    }

    pub fn set_stdin(&self, s: Option<mpsc::Sender<Input>>) {
        *lock(&self.stdin) = s;
    }

    pub fn attach(&self, tx: mpsc::Sender<AttachMsg>, owner: bool) -> u64 {
        let id = self.next();
        lock(&self.attachers).push(Attacher { id, tx, owner });
        id
    }

    pub fn detach(&self, id: u64) {
        lock(&self.attachers).retain(|a| a.id != id);
    }

    /// Sends to every attached client. The owner is waited for (a foreground
    /// `run` whose terminal is paused pauses the container's output, as
    /// with docker, rather than losing it); a client that cannot keep up is
    /// disconnected (an `attach | less` left alone must not freeze the log).
    pub async fn broadcast(&self, msg: AttachMsg) {
        let targets: Vec<(u64, mpsc::Sender<AttachMsg>, bool)> = lock(&self.attachers)
            .iter()
            .map(|a| (a.id, a.tx.clone(), a.owner))
            .collect();
        for (id, tx, owner) in targets {
            let sent = if owner {
                tx.send(msg.clone()).await.is_ok()
            } else {
                tx.try_send(msg.clone()).is_ok()
            };
            if !sent {
                self.detach(id);
            }
        }
    }

    pub fn next(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("container {0} already has a monitor")]
    AlreadyRunning(String),
    #[error("{0}")]
    Container(#[from] crate::container::ContainerError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the monitor of the container in `dir` to the end; its exit status.
/// `ready`: the write end of the starter's pipe ([`ready`]).
pub fn run(
    dir: &Path,
    launcher: &dyn Launcher,
    ready: Option<OwnedFd>,
    opts: MonitorOptions,
) -> Result<(), MonitorError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| MonitorError::Io {
            what: "starting the monitor's runtime",
            path: dir.to_path_buf(),
            source,
        })?;
    let r = rt.block_on(monitor(dir, launcher, ReadyWriter::new(ready), opts));
    // Blocking helpers (the ready pipe's watcher) must not hold the exit up.
    rt.shutdown_background();
    r
}

async fn monitor(
    dir: &Path,
    launcher: &dyn Launcher,
    mut ready: ReadyWriter,
    opts: MonitorOptions,
) -> Result<(), MonitorError> {
    let fail = |ready: &mut ReadyWriter, message: String| {
        ready.send(&ReadyMsg::Failed {
            message,
            exit_code: 125,
        });
    };
    let lock_path = dir.join(MONITOR_LOCK);
    // Another process may hold the lock for a moment only to see whether it
    // is held (`is_held`): a few tries before concluding a monitor runs.
    let mut tried = skiff_util::lock::FileLock::try_exclusive(&lock_path);
    for _ in 0..10 {
        if !matches!(tried, Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        tried = skiff_util::lock::FileLock::try_exclusive(&lock_path);
    }
    let lock = match tried {
        Ok(Some(l)) => l,
        Ok(None) => {
            let id = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            let e = MonitorError::AlreadyRunning(id.unwrap_or_default());
            fail(&mut ready, e.to_string());
            return Err(e);
        }
        Err(source) => {
            let e = MonitorError::Io {
                what: "locking",
                path: lock_path,
                source,
            };
            fail(&mut ready, e.to_string());
            return Err(e);
        }
    };
    let config: ContainerConfig = match read_json(&dir.join("config.json")) {
        Ok(c) => c,
        Err(e) => {
            fail(&mut ready, e.to_string());
            return Err(e.into());
        }
    };
    let state: ContainerState =
        read_json(&dir.join(STATE_FILE)).unwrap_or_else(|_| ContainerState::created());
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        config,
        state: Mutex::new(state),
        run: Mutex::new(None),
        stdin: Mutex::new(None),
        attachers: Mutex::new(Vec::new()),
        owner: watch::channel(None).0,
        commands: commands_tx,
        finished: watch::channel(false).0,
        next_id: AtomicU64::new(1),
    });
    let listener = match server::bind(dir) {
        Ok(l) => l,
        Err(e) => {
            fail(&mut ready, e.to_string());
            return Err(e);
        }
    };
    ready.send(&ReadyMsg::Locked {
        monitor_pid: std::process::id(),
    });
    let connections = tokio_util::task::TaskTracker::new();
    let server = tokio::spawn(server::serve(listener, shared.clone(), connections.clone()));
    let signals = tokio::spawn(abort_on_signals(shared.clone()));

    let last = supervisor::supervise(&shared, launcher, &mut ready, commands_rx, opts).await;

    // Everything is down; a `--rm` container goes before anyone hears of the
    // end, so that a foreground `run --rm` returns with nothing left.
    server.abort();
    signals.abort();
    let _ = std::fs::remove_file(dir.join(server::SOCKET));
    // Its address and rules go (the network's bridge with its last one).
    let paths = crate::Paths::of_container_dir(dir);
    if let Err(e) = crate::network::detach(&paths, &shared.config.id, &shared.config.network) {
        tracing::warn!("leaving the network: {}", skiff_util::error::chain(&e));
    }
    if shared.config.auto_remove {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(msg) = last {
        // An owner that stopped reading gets no longer than this.
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.broadcast(msg)).await;
    }
    shared.finished.send_replace(true);
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), connections.wait()).await;
    drop(lock);
    Ok(())
}

/// SIGTERM or SIGINT to the monitor (the starter giving up during boot, or a
/// user): the container is killed now.
async fn abort_on_signals(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    // A terminal hang-up is not the container's business.
    let _hup = signal(SignalKind::hangup());
    loop {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        let _ = shared.commands.send(Command::Abort);
    }
}
