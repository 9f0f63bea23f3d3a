//! Containers: one directory each under `containers/<id>/`, one file per
//! operation on them (as youki's libcontainer arranges its own).
//!
//! ```text
//! containers/<id>/config.json    what create decided (config.rs)
//!                 state.json     what is happening (state.rs), written by the monitor
//!                 overlay.qcow2  the writable layer over the image's cached ext4
//!                 monitor.lock   held by the monitor for as long as it lives
//!                 monitor.sock   where the monitor answers (monitor/protocol.rs)
//!                 container.log  the container's output (logs.rs), rotated .1, .2, …
//! ```
//! Locks: `containers/.lock` while names are checked and directories made or
//! removed; `<id>/start.lock` while a monitor is being started or the
//! container removed; `<id>/monitor.lock` is the monitor's liveness.

pub mod config;
pub mod security_config;
pub mod state;

mod attach;
mod cp;
mod create;
mod delete;
mod exec;
mod inspect;
mod kill;
mod logs;
mod port;
mod start;
mod stats;
mod stop;
mod top;
mod wait;

pub use attach::{attach, AttachOptions, Session, SessionEvent, SessionInput};
pub use cp::{copy_from, copy_to, CopySource, CopyTarget};
pub use create::{create, default_name, CreateOptions, HealthOptions, NetworkOptions};
pub use delete::{prune, remove};
pub use exec::{exec, ExecOptions};
pub use inspect::{inspect, ports_json};
pub use kill::kill;
pub use logs::logs;
pub use port::ports;
pub use start::{start, wanted_at_boot, MonitorCommand, StartOptions, Started, READY_FD};
pub use stats::{sample, Sample, Stats};
pub use stop::{restart, stop};
pub use top::{top, Top};
pub use wait::wait;

use std::path::{Path, PathBuf};

use skiff_util::lock::FileLock;

use crate::agent::AgentError;
use crate::Paths;
use config::ContainerConfig;
use state::{ContainerState, ContainerStatus};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{0:?} matches more than one container id; give more of it")]
    Ambiguous(String),
    #[error("the container name {name:?} is already in use by container {id}; remove it (skiff rm {name}) or choose another name")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("container {0} is running: stop it first, or remove it with --force")]
    Running(String),
    #[error("container {name}: {message}")]
    Monitor { name: String, message: String },
    #[error("{0}")]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A container as it is now: its config and its (effective) state.
#[derive(Debug, Clone)]
pub struct Container {
    pub config: ContainerConfig,
    pub state: ContainerState,
    dir: PathBuf,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn short_id(&self) -> &str {
        &self.config.id[..12.min(self.config.id.len())]
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    pub fn status(&self) -> ContainerStatus {
        self.state.status
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("overlay.qcow2")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn monitor_socket(&self) -> PathBuf {
        self.dir.join("monitor.sock")
    }

    /// Reads the container in `dir` as it is now.
    pub fn load(dir: &Path) -> Result<Container> {
        let config: ContainerConfig = read_json(&dir.join("config.json"))?;
        let raw: ContainerState = match read_json(&dir.join(STATE_FILE)) {
            Ok(s) => s,
            // Created but not yet recorded (create writes the state right after).
            Err(ContainerError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ContainerState::created()
            }
            Err(e) => return Err(e),
        };
        let alive = monitor_alive(dir);
        if raw.status.is_active() && !alive {
            // Its monitor was killed: what it held on its network goes now.
            crate::network::repair_lost(&Paths::of_container_dir(dir), &config.id, &config.network);
        }
        Ok(Container {
            config,
            state: raw.effective(alive),
            dir: dir.to_path_buf(),
        })
    }

    /// Re-reads the state.
    pub fn refresh(&self) -> Result<Container> {
        Container::load(&self.dir)
    }
}

pub(crate) const STATE_FILE: &str = "state.json";
pub const MONITOR_LOCK: &str = "monitor.lock";
const START_LOCK: &str = "start.lock";

/// Whether the container's monitor is running (it holds its lock).
pub(crate) fn monitor_alive(dir: &Path) -> bool {
    // An unreadable lock counts as alive: never declare a live VM dead.
    skiff_util::lock::is_held(&dir.join(MONITOR_LOCK)).unwrap_or(true)
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|e| ContainerError::Io {
        what: "parsing",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| ContainerError::Io {
        what: "encoding",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    skiff_util::atomic::write(path, &bytes, 0o644).map_err(io("writing", path))
}

/// The containers of one store.
#[derive(Debug, Clone)]
pub struct Containers {
    paths: Paths,
    dir: PathBuf,
}

impl Containers {
    pub fn new(paths: &Paths) -> Self {
        Self {
            paths: paths.clone(),
            dir: paths.containers(),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The lock held while names are checked and directories come and go.
    pub(crate) fn names_lock(&self) -> Result<FileLock> {
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let p = self.dir.join(".lock");
        FileLock::exclusive(&p).map_err(io("locking", &p))
    }

    /// Every container, newest first. A `--rm` container whose monitor died
    /// (killed, or the host went down) is removed on the way, as docker's
    /// daemon would have removed it.
    pub fn list(&self) -> Result<Vec<Container>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("reading", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            // A directory being created or removed right now is skipped.
            let Ok(c) = Container::load(&ent.path()) else {
                continue;
            };
            // A container that cannot be reaped now is listed as it is.
            match self.reap_if_abandoned(&c) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::debug!("not removing {}: {e}", c.name()),
            }
            out.push(c);
        }
        out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(out)
    }

    /// A container by id, unique id prefix or name.
    pub fn find(&self, what: &str) -> Result<Container> {
        let not_found = || ContainerError::NotFound(what.to_owned());
        if what.is_empty() {
            return Err(not_found());
        }
        // The common cases without a scan: a full id, a name.
        if what.len() == 64 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir = self.dir.join(what);
            if dir.join("config.json").exists() {
                let c = Container::load(&dir)?;
                return if self.reap_if_abandoned(&c)? {
                    Err(not_found())
                } else {
                    Ok(c)
                };
            }
        }
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.config.name == what) {
            return Ok(c.clone());
        }
        let mut by_prefix = all.into_iter().filter(|c| c.config.id.starts_with(what));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(what.to_owned())),
            _ => Err(not_found()),
        }
    }

    /// Removes `c` if it is a `--rm` container that nothing will remove any
    /// more (its monitor is gone); whether it did.
    fn reap_if_abandoned(&self, c: &Container) -> Result<bool> {
        if !c.config.auto_remove || c.state.status.is_active() {
            return Ok(false);
        }
        // Created and never started: still wanted. A monitor that is still
        // there removes its container itself.
        if c.state.status == ContainerStatus::Created || monitor_alive(c.dir()) {
            return Ok(false);
        }
        delete::remove_dir(self, c)?;
        Ok(true)
    }
}
