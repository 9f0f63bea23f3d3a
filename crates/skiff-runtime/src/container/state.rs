//! What is happening to a container (`state.json`), written by its monitor
//! (or by `create`), and the status every command derives from it: a state
//! that says "running" whose monitor is gone is read as exited.

use serde::{Deserialize, Serialize};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Made, never started (or its start failed before the VM came up).
    Created,
    /// Its monitor is booting the VM.
    Starting,
    Running,
    /// Waiting to start again under its restart policy.
    Restarting,
    /// `stop` is in progress.
    Stopping,
    Exited,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
        }
    }

    /// Whether a monitor owns the container (a VM is up or coming up).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Running | Self::Restarting | Self::Stopping
        )
    }

    pub fn can_start(self) -> bool {
        matches!(self, Self::Created | Self::Exited)
    }

    pub fn can_kill(self) -> bool {
        self.is_active()
    }

    /// exec, attach, cp, top, stats: the process must be up.
    pub fn can_exec(self) -> bool {
        self == Self::Running
    }

    pub fn can_remove(self) -> bool {
        !self.is_active()
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The healthcheck's verdict so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One run of the healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// The last few results, oldest first.
    pub log: Vec<HealthResult>,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// The monitor process, while there is one.
    #[serde(default)]
    pub monitor_pid: Option<u32>,
    /// QEMU (or whatever runs the sandbox) on the host.
    #[serde(default)]
    pub sandbox_pid: Option<u32>,
    /// The container's main process, in the guest.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the last start or run failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub restart_count: u32,
    /// `stop` (or `kill`) ended it: restart policies leave it stopped.
    #[serde(default)]
    pub stopped_by_user: bool,
    #[serde(default)]
    pub health: Option<Health>,
}

impl ContainerState {
    pub fn created() -> Self {
        Self {
            status: ContainerStatus::Created,
            monitor_pid: None,
            sandbox_pid: None,
            pid: None,
            exit_code: None,
            error: None,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            stopped_by_user: false,
            health: None,
        }
    }

    /// Exit code a container whose monitor vanished is given, as docker gives
    /// containers whose state it lost.
    pub const LOST_EXIT_CODE: i32 = 255;

    /// The state as it really is when the monitor is (`monitor_alive`) or is
    /// not running: an active state without a monitor is an exit.
    pub fn effective(mut self, monitor_alive: bool) -> Self {
        if self.status.is_active() && !monitor_alive {
            self.status = ContainerStatus::Exited;
            self.exit_code = Some(self.exit_code.unwrap_or(Self::LOST_EXIT_CODE));
            self.error
                .get_or_insert_with(|| "its monitor process ended unexpectedly".into());
            self.pid = None;
            self.monitor_pid = None;
            self.sandbox_pid = None;
            if let Some(h) = &mut self.health {
                h.status = HealthStatus::Unhealthy;
            }
        } else if !self.status.is_active() {
            self.monitor_pid = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_status_allows() {
        use ContainerStatus::*;
        let all = [Created, Starting, Running, Restarting, Stopping, Exited];
        let allowed = |f: fn(ContainerStatus) -> bool| -> Vec<ContainerStatus> {
            all.into_iter().filter(|s| f(*s)).collect()
        };
        assert_eq!(allowed(ContainerStatus::can_start), [Created, Exited]);
        assert_eq!(
            allowed(ContainerStatus::can_kill),
            [Starting, Running, Restarting, Stopping]
        );
        assert_eq!(allowed(ContainerStatus::can_exec), [Running]);
        assert_eq!(allowed(ContainerStatus::can_remove), [Created, Exited]);
    }

    #[test]
    fn a_running_state_without_its_monitor_reads_as_exited() {
        let mut s = ContainerState::created();
        s.status = ContainerStatus::Running;
        s.monitor_pid = Some(7);
        s.pid = Some(1);
        assert_eq!(s.clone().effective(true), s);
        let dead = s.clone().effective(false);
        assert_eq!(dead.status, ContainerStatus::Exited);
        assert_eq!(dead.exit_code, Some(255));
        assert_eq!(
            dead.error.as_deref(),
            Some("its monitor process ended unexpectedly")
        );
        assert_eq!((dead.pid, dead.monitor_pid), (None, None));
        // An exit the monitor recorded keeps its code.
        s.exit_code = Some(3);
        assert_eq!(s.effective(false).exit_code, Some(3));
        // Created and exited states need no monitor.
        let c = ContainerState::created();
        assert_eq!(c.clone().effective(false), c);
    }

    #[test]
    fn state_json_is_lowercase_statuses() {
        let s = ContainerState::created();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"], "created");
        let back: ContainerState = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
