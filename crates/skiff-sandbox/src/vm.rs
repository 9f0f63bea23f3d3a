//! A running QEMU microvm with skiff-init answering on the control channel.
//!
//! Boot: listen on `<state_dir>/control.sock`, start QEMU (it connects at
//! once, before the guest runs), then the session handshake, the HTTP/2
//! connection and `Hello`, raced against QEMU exiting and the boot timeout.
//! On any failure QEMU is killed and the error quotes the end of the guest's
//! console and of QEMU's own log.
//!
//! Lifetime: QEMU runs in its own process group (a terminal's Ctrl-C goes to
//! skiff, which decides), dies with the thread that spawned it
//! (PR_SET_PDEATHSIG), and is killed and reaped when the [`RunningVm`] is
//! dropped. No path leaves a QEMU behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use skiff_proto::v1::agent_client::AgentClient;
use skiff_proto::v1::{HelloRequest, HelloResponse, ShutdownRequest};
use tonic::transport::Channel;

use crate::control::ControlListener;
use crate::qemu::{vm_args, VmConfig};

/// How long QEMU gets to exit by itself after the Shutdown call, before SIGKILL.
const POWER_OFF_WAIT: Duration = Duration::from_secs(5);
/// Extra time for the Shutdown call beyond the processes' grace period.
const SHUTDOWN_RPC_SLACK: Duration = Duration::from_secs(5);
const TAIL_LINES: usize = 20;
/// After the control channel breaks, how long to wait for QEMU to exit by itself.
const EXIT_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("preparing the VM state directory {dir}: {source}")]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("starting QEMU ({path}): {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the VM did not come up: {reason}{logs}")]
    Boot { reason: String, logs: String },
    #[error("skiff-init speaks protocol version {guest}, this skiff speaks {host}; rebuild skiff-init (scripts/build-init.sh) from the same source as skiff")]
    Protocol { guest: u32, host: u32 },
    #[error(
        "the VM did not power off within {waited:?} of the shutdown request{rpc}; QEMU was killed"
    )]
    ShutdownKilled { waited: Duration, rpc: String },
}

/// Where the boot time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTimings {
    /// QEMU started → QEMU connected to the control socket (QEMU's own setup).
    pub qemu_connected: Duration,
    /// Guest kernel start → skiff-init started (guest clock).
    pub kernel_to_init: Duration,
    /// skiff-init started → control channel ready (guest clock: modules loaded).
    pub init_to_ready: Duration,
    /// QEMU started → skiff-init answered Hello (host clock).
    pub total: Duration,
}

pub struct RunningVm {
    /// None once reaped.
    child: Option<tokio::process::Child>,
    pid: u32,
    agent: AgentClient<Channel>,
    hello: HelloResponse,
    timings: BootTimings,
    state_dir: PathBuf,
}

impl RunningVm {
    /// Boots the VM and returns once skiff-init has answered `Hello`.
    ///
    /// PR_SET_PDEATHSIG follows the spawning *thread*: call this from a thread
    /// that lives as long as the VM (the main thread, or a runtime worker of a
    /// runtime that outlives the VM), never from `spawn_blocking`, whose idle
    /// threads exit and would take QEMU with them.
    pub async fn boot(cfg: VmConfig) -> Result<RunningVm, VmError> {
        let dir = cfg.state_dir.clone();
        let state_err = |source| VmError::StateDir {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(state_err)?;
        let control = ControlListener::bind(&dir).map_err(state_err)?;
        control.listener.set_nonblocking(true).map_err(state_err)?;
        let qemu_log = File::create(dir.join("qemu.log")).map_err(state_err)?;
        let qemu_log2 = qemu_log.try_clone().map_err(state_err)?;

        let args = vm_args(&cfg, &control.qemu_path);
        tracing::debug!(
            "qemu: {} {}",
            cfg.qemu.path.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = tokio::process::Command::new(&cfg.qemu.path);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(qemu_log)
            .stderr(qemu_log2)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: the hook only makes async-signal-safe calls.
        unsafe {
            cmd.pre_exec(crate::child::pre_exec_hook(
                control.child_fd(),
                cfg.tap_fds(),
            ))
        };
        let ControlListener { listener, .. } = control;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(state_err)?;

        let started = Instant::now();
        let child = cmd.spawn().map_err(|source| VmError::Spawn {
            path: cfg.qemu.path.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        // Kills and reaps QEMU on every way out of here but success, including
        // the caller dropping this future (Ctrl-C during boot).
        let mut child = BootGuard(Some(child));
        let session = session_id();

        let connect = async {
            let (mut stream, _) = listener
                .accept()
                .await
                .map_err(|e| format!("accepting QEMU's connection: {e}"))?;
            let connected = started.elapsed();
            skiff_proto::session::host_handshake(&mut stream, &session)
                .await
                .map_err(|e| format!("session handshake: {e}"))?;
            let mut agent = skiff_proto::connect(stream)
                .await
                .map_err(|e| format!("HTTP/2 connection: {e}"))?;
            let hello = agent
                .hello(HelloRequest {
                    protocol_version: skiff_proto::PROTOCOL_VERSION,
                    session_id: session.clone(),
                })
                .await
                .map_err(|e| format!("Hello: {e}"))?
                .into_inner();
            Ok::<_, String>((agent, hello, connected))
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(cfg.boot_timeout, connect) => match r {
                Ok(Ok(ok)) => Ok(ok),
                Ok(Err(reason)) => Err((reason, false)),
                Err(_) => Err((format!("skiff-init did not answer within {:?}", cfg.boot_timeout), false)),
            },
            status = child.wait() => Err((match status {
                Ok(s) => format!("QEMU exited ({s}) before skiff-init answered"),
                Err(e) => format!("waiting for QEMU: {e}"),
            }, true)),
        };
        drop(listener);
        let (agent, hello, connected) = match outcome {
            Ok(ok) => ok,
            Err((mut reason, mut exited)) => {
                if !exited {
                    // A guest that powers off closes the control socket a
                    // moment before QEMU is reaped: say that QEMU exited
                    // rather than only quoting the broken connection.
                    if let Ok(Ok(s)) = tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                        reason = format!("QEMU exited ({s}) before skiff-init answered ({reason})");
                        exited = true;
                    }
                }
                if !exited {
                    child.kill();
                }
                return Err(VmError::Boot {
                    reason,
                    logs: log_tails(&dir, true),
                });
            }
        };
        if hello.protocol_version != skiff_proto::PROTOCOL_VERSION {
            child.kill();
            return Err(VmError::Protocol {
                guest: hello.protocol_version,
                host: skiff_proto::PROTOCOL_VERSION,
            });
        }
        let timings = BootTimings {
            qemu_connected: connected,
            kernel_to_init: Duration::from_micros(hello.init_started_us),
            init_to_ready: Duration::from_micros(
                hello.agent_ready_us.saturating_sub(hello.init_started_us),
            ),
            total: started.elapsed(),
        };
        Ok(RunningVm {
            child: child.0.take(),
            pid,
            agent,
            hello,
            timings,
            state_dir: dir,
        })
    }

    /// A client of skiff-init's Agent service (cheap to clone; all clones share
    /// the one connection).
    pub fn agent(&self) -> AgentClient<Channel> {
        self.agent.clone()
    }

    pub fn hello(&self) -> &HelloResponse {
        &self.hello
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn timings(&self) -> BootTimings {
        self.timings
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The guest's serial console (kernel messages; skiff-init's log with debug).
    pub fn console_log(&self) -> PathBuf {
        self.state_dir.join("console.log")
    }

    /// Waits until QEMU exits by itself (the guest powered off or crashed).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => {
                let s = c.wait().await;
                if s.is_ok() {
                    self.child = None;
                }
                s
            }
            None => Err(std::io::Error::other("QEMU has already been reaped")),
        }
    }

    /// Asks skiff-init to stop everything and power off (processes get `grace`
    /// between SIGTERM and SIGKILL), waits for QEMU to exit, and kills it if it
    /// does not. QEMU is gone when this returns, whatever the result.
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), VmError> {
        let req = ShutdownRequest {
            grace_ms: u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
        };
        // An error is fine when the guest powered off before the answer got
        // out; QEMU exiting below is what counts.
        let rpc = match tokio::time::timeout(grace + SHUTDOWN_RPC_SLACK, self.agent.shutdown(req))
            .await
        {
            Ok(Ok(_)) => String::new(),
            Ok(Err(status)) => format!(" (Shutdown call: {})", status.message()),
            Err(_) => " (Shutdown call timed out)".into(),
        };
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        match tokio::time::timeout(POWER_OFF_WAIT, child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                kill_and_reap(&mut child);
                Err(VmError::ShutdownKilled {
                    waited: POWER_OFF_WAIT,
                    rpc,
                })
            }
        }
    }

    /// Kills QEMU now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL, then reap synchronously: a killed QEMU exits within milliseconds,
/// and reaping here (not in tokio's background orphan queue) means the pid is
/// gone when this returns.
/// QEMU while it boots: killed and reaped on drop unless taken out.
struct BootGuard(Option<tokio::process::Child>);

impl BootGuard {
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.0.as_mut() {
            Some(c) => c.wait().await,
            None => std::future::pending().await,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_and_reap(&mut c);
        }
    }
}

impl Drop for BootGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_and_reap(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            _ => return,
        }
    }
    tracing::warn!(
        "QEMU (pid {:?}) did not exit 10 s after SIGKILL",
        child.id()
    );
}

/// A random session id for the handshake (hex, 32 characters).
fn session_id() -> String {
    skiff_util::id::random_hex::<16>()
}

/// The last lines of console.log (and of qemu.log when `with_qemu`), ready to
/// append to an error message.
fn log_tails(dir: &Path, with_qemu: bool) -> String {
    let mut out = String::new();
    let mut files = vec!["console.log"];
    if with_qemu {
        files.push("qemu.log");
    }
    for name in files {
        let text = std::fs::read(dir.join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            out.push_str(&format!("\n--- {name}: empty ---"));
            continue;
        }
        out.push_str(&format!(
            "\n--- last lines of {} ---",
            dir.join(name).display()
        ));
        for l in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
            out.push('\n');
            out.push_str(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_valid_tokens() {
        let a = session_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, session_id());
    }

    #[test]
    fn log_tails_quote_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(tmp.path().join("console.log"), text).unwrap();
        let t = log_tails(tmp.path(), true);
        assert!(
            t.contains("line 49") && t.contains("line 30") && !t.contains("line 29\n"),
            "{t}"
        );
        assert!(t.contains("qemu.log: empty"), "{t}");
    }
}
