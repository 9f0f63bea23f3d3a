//! Reaping children and publishing their exit statuses.
//!
//! As PID 1 every orphan in the system becomes our child, so the reaper must
//! collect everything (`waitpid(-1)`). In a test binary on a host that would
//! steal the children of other tests (and of std::process::Command), so
//! there the reaper only waits for the pids it spawned. Spawning and reaping
//! share one lock: a child that exits at once cannot be reaped before it is
//! registered, and a pid is never signalled after it was reaped (and could
//! have been reused).

use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use skiff_proto::v1::ExitStatus;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::clock::boottime_us;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapMode {
    /// PID 1: `waitpid(-1)`; "kill everything" is `kill(-1)`.
    All,
    /// An ordinary process: only registered pids; "kill everything" is each
    /// registered process group.
    Registered,
}

pub type ExitSender = Arc<watch::Sender<Option<ExitStatus>>>;

struct Running {
    exit: ExitSender,
    /// The container's main process: when it ends, so does every other one.
    main: bool,
}

pub struct Reaper {
    mode: ReapMode,
    running: Mutex<HashMap<i32, Running>>,
}

/// Spawns without keeping the `Child`: dropping it neither waits nor kills,
/// and the pid is waited for by [`Reaper::reap`].
#[allow(clippy::zombie_processes)]
fn spawn_unwaited(cmd: &mut Command) -> io::Result<i32> {
    Ok(cmd.spawn()?.id() as i32)
}

/// The exit status as a shell reports it.
pub fn exit_status(code: Option<i32>, signal: Option<i32>, exited_us: u64) -> ExitStatus {
    match (code, signal) {
        (_, Some(sig)) => ExitStatus {
            exit_code: 128 + sig,
            signal: sig,
            exited_us,
        },
        (Some(code), None) => ExitStatus {
            exit_code: code,
            signal: 0,
            exited_us,
        },
        // Stopped/continued are not reported with the flags used here.
        (None, None) => ExitStatus {
            exit_code: 255,
            signal: 0,
            exited_us,
        },
    }
}

fn from_wait(status: WaitStatus) -> ExitStatus {
    exit_status(
        status.exit_status(),
        status.terminating_signal(),
        boottime_us(),
    )
}

impl Reaper {
    /// Starts the reaping task on the current runtime. SIGCHLD is subscribed
    /// before this returns, so no exit of a later child goes unnoticed.
    pub fn start(mode: ReapMode) -> io::Result<Arc<Self>> {
        let reaper = Arc::new(Self {
            mode,
            running: Mutex::new(HashMap::new()),
        });
        let mut sigchld = signal(SignalKind::child())?;
        let weak = Arc::downgrade(&reaper);
        tokio::spawn(async move {
            // A periodic sweep as well: cheap, and a lost wakeup can never
            // leave a zombie (or a Wait) hanging.
            let mut sweep = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = sweep.tick() => {}
                }
                match weak.upgrade() {
                    Some(r) => r.reap(),
                    None => return,
                }
            }
        });
        Ok(reaper)
    }

    pub fn mode(&self) -> ReapMode {
        self.mode
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Running>> {
        // A poisoned map is still a valid map; reaping must go on.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns `cmd` and registers the child under the reaping lock.
    /// Returns its pid; the reaper, not a `Child`, waits for it.
    pub fn spawn(&self, cmd: &mut Command, exit: ExitSender, main: bool) -> io::Result<i32> {
        let mut running = self.lock();
        let pid = spawn_unwaited(cmd)?;
        running.insert(pid, Running { exit, main });
        Ok(pid)
    }

    /// Collects every exited child that is ours to collect.
    pub fn reap(&self) {
        let mut running = self.lock();
        match self.mode {
            ReapMode::All => loop {
                match rustix::process::wait(WaitOptions::NOHANG) {
                    Ok(Some((pid, status))) => {
                        self.finish(&mut running, pid.as_raw_nonzero().get(), status)
                    }
                    Ok(None) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    // ECHILD: no children at all.
                    Err(_) => break,
                }
            },
            ReapMode::Registered => {
                let pids: Vec<i32> = running.keys().copied().collect();
                for pid in pids {
                    let Some(p) = Pid::from_raw(pid) else {
                        continue;
                    };
                    match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
                        Ok(Some((_, status))) => self.finish(&mut running, pid, status),
                        Ok(None) => {}
                        Err(rustix::io::Errno::CHILD) => {
                            // Someone else reaped it: report it as lost
                            // rather than leaving its waiters hanging.
                            self.finish_with(
                                &mut running,
                                pid,
                                exit_status(None, None, boottime_us()),
                            )
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }

    fn finish(&self, running: &mut HashMap<i32, Running>, pid: i32, status: WaitStatus) {
        self.finish_with(running, pid, from_wait(status))
    }

    fn finish_with(&self, running: &mut HashMap<i32, Running>, pid: i32, status: ExitStatus) {
        // An orphan that was never ours (PID 1): reaped, nothing to report.
        let Some(r) = running.remove(&pid) else {
            return;
        };
        crate::debug!(
            "pid {pid} exited: code {} signal {}",
            status.exit_code,
            status.signal
        );
        r.exit.send_replace(Some(status));
        if r.main {
            // Like a PID namespace ending: nothing outlives the container's
            // main process, so background children release its pipes.
            self.kill_all_locked(running, rustix::process::Signal::KILL, Some(pid));
        }
    }

    fn kill_all_locked(
        &self,
        running: &HashMap<i32, Running>,
        sig: Signal,
        ended_main: Option<i32>,
    ) {
        match self.mode {
            ReapMode::All => {
                // kill(-1, sig): every process but PID 1 itself.
                if let Some(one) = Pid::from_raw(1) {
                    let _ = rustix::process::kill_process_group(one, sig);
                }
            }
            ReapMode::Registered => {
                // Every process runs in a session (and group) of its own.
                for pid in running.keys().copied().chain(ended_main) {
                    if let Some(p) = Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process_group(p, sig);
                    }
                }
            }
        }
    }

    /// Sends `sig` to every process (see [`ReapMode`]).
    pub fn kill_all(&self, sig: Signal) {
        let running = self.lock();
        self.kill_all_locked(&running, sig, None);
    }

    /// Signals `pid` (or its group). `Ok(false)`: it has already been reaped
    /// and nothing was sent.
    pub fn signal(&self, pid: i32, sig: Signal, group: bool) -> io::Result<bool> {
        let running = self.lock();
        if !running.contains_key(&pid) {
            return Ok(false);
        }
        let p = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if group {
            rustix::process::kill_process_group(p, sig)?;
        } else {
            rustix::process::kill_process(p, sig)?;
        }
        Ok(true)
    }

    /// Whether any registered process has not been reaped yet.
    pub fn any_running(&self) -> bool {
        !self.lock().is_empty()
    }

    /// PID 1: whether any child at all is left (registered or orphan).
    pub fn any_child(&self) -> bool {
        match self.mode {
            ReapMode::Registered => self.any_running(),
            ReapMode::All => {
                self.reap();
                // Children that have not exited make waitid report nothing;
                // no children at all make it fail with ECHILD.
                let opts = rustix::process::WaitIdOptions::EXITED
                    | rustix::process::WaitIdOptions::NOHANG
                    | rustix::process::WaitIdOptions::NOWAIT;
                !matches!(
                    rustix::process::waitid(rustix::process::WaitId::All, opts),
                    Err(rustix::io::Errno::CHILD)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_like_a_shell() {
        assert_eq!(
            exit_status(Some(0), None, 5),
            ExitStatus {
                exit_code: 0,
                signal: 0,
                exited_us: 5
            }
        );
        assert_eq!(exit_status(Some(3), None, 0).exit_code, 3);
        let killed = exit_status(None, Some(9), 0);
        assert_eq!((killed.exit_code, killed.signal), (137, 9));
        assert_eq!(exit_status(None, Some(15), 0).exit_code, 143);
    }

    #[tokio::test]
    async fn reaps_only_registered_children_and_reports_status() {
        let reaper = Reaper::start(ReapMode::Registered).unwrap();
        let (tx, mut rx) = watch::channel(None);
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exit 7"]);
        reaper.spawn(&mut cmd, Arc::new(tx), false).unwrap();
        // A child the reaper does not know stays for its owner to wait on.
        let mut other = Command::new("/bin/true").spawn().unwrap();
        let status = (*rx.wait_for(|s| s.is_some()).await.unwrap()).unwrap();
        assert_eq!(status.exit_code, 7);
        assert!(other.wait().unwrap().success());
        assert!(!reaper.any_running());
    }
}
