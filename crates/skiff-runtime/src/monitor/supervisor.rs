//! The container's life inside its monitor: boot, run the process, log its
//! output, wait for it, stop it when asked, start it again when the restart
//! policy says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_sandbox::Sandbox;
use tokio::sync::mpsc;

use super::launcher::Launcher;
use super::protocol::Timings;
use super::ready::{ReadyMsg, ReadyWriter};
use super::restart::{should_restart, Backoff};
use super::{health, AttachMsg, Command, MonitorOptions, RunHandle, Shared};
use crate::agent::{Agent, AgentError, ExitStatus, Input, ProcessSpec};
use crate::container::state::ContainerStatus;
use crate::logs::{LogOptions, LogWriter, Stream};
use crate::signal::SIGKILL;
use crate::time::now_rfc3339;

/// The id of the container's main process in the guest.
pub(crate) const MAIN: &str = "main";
/// After the process exited, output still in flight gets this long.
const DRAIN: Duration = Duration::from_secs(5);
/// A container that is not removed gets a clean power-off; its processes
/// have already ended with the main one.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// How one run of the process ended.
struct RunEnd {
    exit: ExitStatus,
    /// Killed without waiting (abort): no restart, no clean power-off.
    aborted: bool,
    ran: Duration,
}

/// Runs the container until it is down for good; the message its attached
/// clients get last.
pub(crate) async fn supervise(
    shared: &Arc<Shared>,
    launcher: &dyn Launcher,
    ready: &mut ReadyWriter,
    mut commands: mpsc::UnboundedReceiver<Command>,
    opts: MonitorOptions,
) -> Option<AttachMsg> {
    let t0 = Instant::now();
    let mut backoff = Backoff::default();
    let mut first = true;
    let mut stopped = false;
    let mut log = match LogOptions::parse(&shared.config.log_opts)
        .and_then(|o| LogWriter::open(&shared.dir.join("container.log"), o))
    {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("the container's log: {e}");
            None
        }
    };
    shared.update(|s| {
        s.status = ContainerStatus::Starting;
        s.monitor_pid = Some(std::process::id());
        s.error = None;
        s.stopped_by_user = false;
        s.exit_code = None;
        s.health = None;
        // A start by hand gives on-failure its whole budget again, as docker does.
        s.restart_count = 0;
    });
    loop {
        let mut timings = Timings::default();
        let t_boot = Instant::now();
        let launched = tokio::select! {
            r = launcher.launch(&shared.config, &shared.dir) => r,
            c = next_stop(&mut commands) => {
                stopped |= c;
                let message = "stopped before it started".to_owned();
                ready.send(&ReadyMsg::Failed { message: message.clone(), exit_code: 125 });
                return Some(finish(shared, None, message, stopped));
            }
        };
        let mut sandbox = match launched {
            Ok(s) => s,
            Err(e) => {
                let message = skiff_util::error::chain(&e);
                ready.send(&ReadyMsg::Failed {
                    message: message.clone(),
                    exit_code: 125,
                });
                return Some(finish(shared, None, message, stopped));
            }
        };
        let bt = sandbox.boot_timings();
        timings.boot_total = t_boot.elapsed();
        timings.vm_connected = bt.qemu_connected;
        timings.kernel_to_init = bt.kernel_to_init;
        timings.init_to_ready = bt.init_to_ready;
        let agent = Agent::new(sandbox.agent());

        let t_setup = Instant::now();
        let (stdin_tx, stdin_rx) = if shared.config.process.open_stdin {
            let (tx, rx) = mpsc::channel::<Input>(8);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let output = match prepare(shared, &agent, stdin_rx).await {
            Ok(o) => o,
            Err(e) => {
                let exit_code = match e {
                    AgentError::Exec { code, .. } => code,
                    _ => 125,
                };
                let message = e.to_string();
                ready.send(&ReadyMsg::Failed {
                    message: message.clone(),
                    exit_code,
                });
                sandbox.kill();
                shared.update(|s| s.exit_code = Some(exit_code));
                return Some(finish(shared, Some(exit_code), message, stopped));
            }
        };
        timings.setup = t_setup.elapsed();
        shared.set_stdin(stdin_tx);

        if first && opts.wait_for_owner {
            ready.send(&ReadyMsg::Waiting);
            let mut owner = shared.owner.subscribe();
            let starter_gone = ready.closed();
            let owner_came = tokio::select! {
                r = owner.wait_for(|o| o.is_some()) => r.is_ok(),
                () = starter_gone => false,
                _ = next_stop(&mut commands) => false,
            };
            if !owner_came {
                sandbox.kill();
                return Some(finish(
                    shared,
                    None,
                    "its starter went away before attaching".into(),
                    true,
                ));
            }
            let size = shared.owner.borrow().and_then(|o| o.tty_size);
            if let (true, Some((rows, cols))) = (shared.config.process.tty, size) {
                let _ = agent.resize(MAIN, rows, cols).await;
            }
        }

        let pid = match agent.start_process(MAIN).await {
            Ok(pid) => pid,
            Err(e) => {
                let message = skiff_util::error::chain(&e);
                ready.send(&ReadyMsg::Failed {
                    message: message.clone(),
                    exit_code: 125,
                });
                sandbox.kill();
                return Some(finish(shared, None, message, stopped));
            }
        };
        let started = Instant::now();
        timings.to_process_start = t0.elapsed();
        shared.set_run(Some(RunHandle {
            agent: agent.clone(),
            pid,
            sandbox_pid: sandbox.host_pid(),
        }));
        shared.update(|s| {
            s.status = ContainerStatus::Running;
            s.pid = Some(pid);
            s.sandbox_pid = sandbox.host_pid();
            s.started_at = Some(now_rfc3339());
            s.finished_at = None;
            s.exit_code = None;
        });
        if first {
            ready.send(&ReadyMsg::Started { pid });
            if !opts.wait_for_owner {
                ready.close();
            }
        }
        first = false;
        shared.broadcast(AttachMsg::Started(pid)).await;
        let health = shared
            .config
            .healthcheck
            .clone()
            .map(|h| tokio::spawn(health::run(shared.clone(), agent.clone(), h)));

        let end = pump(
            shared,
            &agent,
            output,
            &mut commands,
            log.as_mut(),
            &mut stopped,
        )
        .await;
        if let Some(h) = health {
            h.abort();
        }
        if let Some(l) = log.as_mut() {
            let _ = l.flush();
        }
        shared.set_run(None);
        shared.set_stdin(None);
        timings.process_ran = started.elapsed();

        let restarts = shared.state().restart_count;
        let again =
            !end.aborted && should_restart(shared.config.restart, end.exit.code, restarts, stopped);
        let t_exit = Instant::now();
        if let (Some(to), false, 0) = (&shared.config.changes_to, end.aborted, end.exit.code) {
            if let Err(e) = save_changes(&agent, to).await {
                let message = format!(
                    "saving the step's changes: {}",
                    skiff_util::error::chain(&e)
                );
                tracing::warn!("{message}");
                shared.update(|s| s.error = Some(message));
            }
        }
        // A clean power-off flushes what the guest still caches: needed for
        // volumes always, and for the root disk unless it is thrown away.
        let disk_thrown_away = shared.config.auto_remove && shared.config.volumes.is_empty();
        vm_down(sandbox, disk_thrown_away || end.aborted).await;
        timings.exit_to_vm_gone = t_exit.elapsed();
        let exited = AttachMsg::Exited {
            code: end.exit.code,
            signal: end.exit.signal,
            timings: Some(timings),
        };
        if !again {
            shared.update(|s| {
                s.status = ContainerStatus::Exited;
                s.exit_code = Some(end.exit.code);
                s.finished_at = Some(now_rfc3339());
                s.pid = None;
                s.sandbox_pid = None;
                s.stopped_by_user = stopped;
            });
            return Some(exited);
        }
        // Attach sessions end with each run, as docker's do.
        shared.broadcast(exited).await;
        let delay = backoff.delay(end.ran);
        shared.update(|s| {
            s.status = ContainerStatus::Restarting;
            s.exit_code = Some(end.exit.code);
            s.finished_at = Some(now_rfc3339());
            s.pid = None;
            s.sandbox_pid = None;
            s.restart_count += 1;
        });
        tracing::debug!("restarting in {delay:?}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            c = next_stop(&mut commands) => {
                stopped |= c;
                return Some(finish(shared, Some(end.exit.code), String::new(), stopped));
            }
        }
        shared.update(|s| s.status = ContainerStatus::Starting);
    }
}

/// Creates the main process and attaches to its output (before it starts).
async fn prepare(
    shared: &Shared,
    agent: &Agent,
    stdin: Option<mpsc::Receiver<Input>>,
) -> Result<crate::agent::Output, AgentError> {
    let p = &shared.config.process;
    agent
        .create_process(&ProcessSpec {
            id: MAIN.into(),
            args: p.args.clone(),
            env: p.env.clone(),
            cwd: p.cwd.clone(),
            user: p.user.clone(),
            tty: p.tty,
            stdin: p.open_stdin,
            tty_size: None,
        })
        .await?;
    agent.stdio(MAIN, stdin).await
}

/// Output to the log and the attached clients until the process has exited
/// and its output is drained; stop, kill and abort requests on the way. No
/// arm waits for a client: a delivery in progress is one more future of the
/// select (and holds further output back), so commands are always heard.
async fn pump(
    shared: &Shared,
    agent: &Agent,
    mut output: crate::agent::Output,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    mut log: Option<&mut LogWriter>,
    stopped: &mut bool,
) -> RunEnd {
    let started = Instant::now();
    let wait_agent = agent.clone();
    let mut wait = Box::pin(async move { wait_agent.wait(MAIN).await });
    let mut exit: Option<ExitStatus> = None;
    let mut output_done = false;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    // After SIGKILL, a guest that still reports no exit is given up on.
    let mut give_up_at: Option<tokio::time::Instant> = None;
    let mut delivering: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>> =
        None;
    let sleep_until = |d: Option<tokio::time::Instant>| async move {
        match d {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let aborted = |exit: Option<ExitStatus>| RunEnd {
        exit: exit.unwrap_or(ExitStatus {
            code: 137,
            signal: SIGKILL,
        }),
        aborted: true,
        ran: started.elapsed(),
    };
    while exit.is_none() || !output_done || delivering.is_some() {
        tokio::select! {
            () = async {
                match delivering.as_mut() {
                    Some(d) => d.await,
                    None => std::future::pending().await,
                }
            }, if delivering.is_some() => {
                delivering = None;
            }
            r = &mut wait, if exit.is_none() => {
                exit = Some(r.unwrap_or_else(|e| {
                    // The guest went away under the process (crash, killed QEMU).
                    tracing::warn!("waiting for the container's process: {e}");
                    ExitStatus { code: 137, signal: SIGKILL }
                }));
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN);
            }
            chunk = output.next(), if !output_done && delivering.is_none() => match chunk {
                Ok(Some((stream, data))) => {
                    if let Some(l) = log.as_deref_mut() {
                        let s = match stream {
                            crate::agent::OutputStream::Stdout => Stream::Stdout,
                            crate::agent::OutputStream::Stderr => Stream::Stderr,
                        };
                        if let Err(e) = l.write(s, &data, std::time::SystemTime::now()) {
                            tracing::warn!("the container's log: {e}");
                        }
                    }
                    delivering = Some(Box::pin(shared.broadcast(AttachMsg::Output(stream, data))));
                }
                Ok(None) => output_done = true,
                Err(e) => {
                    tracing::debug!("output stream ended: {e}");
                    output_done = true;
                }
            },
            c = commands.recv() => match c {
                Some(Command::Stop { timeout }) => {
                    *stopped = true;
                    signal(agent, shared.config.stop_signal).await;
                    kill_at = Some(tokio::time::Instant::now() + timeout);
                }
                Some(Command::Kill { signal: sig }) => {
                    if sig == SIGKILL || sig == shared.config.stop_signal {
                        *stopped = true;
                    }
                    signal(agent, sig).await;
                    if sig == SIGKILL {
                        give_up_at.get_or_insert(tokio::time::Instant::now() + GIVE_UP);
                    }
                }
                Some(Command::Signal { signal: sig }) => signal(agent, sig).await,
                Some(Command::Abort) => {
                    *stopped = true;
                    return aborted(exit);
                }
                None => {}
            },
            () = sleep_until(kill_at), if exit.is_none() => {
                kill_at = None;
                signal(agent, SIGKILL).await;
                give_up_at = Some(tokio::time::Instant::now() + GIVE_UP);
            }
            () = sleep_until(give_up_at), if exit.is_none() => {
                tracing::warn!("no exit {GIVE_UP:?} after SIGKILL: killing the sandbox");
                return aborted(exit);
            }
            () = sleep_until(drain_deadline) => {
                tracing::debug!("output still open {DRAIN:?} after the process exited; not waiting longer");
                break;
            }
        }
    }
    RunEnd {
        exit: exit.unwrap_or_default(),
        aborted: false,
        ran: started.elapsed(),
    }
}

/// How long a signal to the main process may take to be delivered, and how
/// long after SIGKILL the process may take to be reported gone.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(2);
const GIVE_UP: Duration = Duration::from_secs(5);

/// A signal to the main process; a guest that does not answer in time is
/// left to the give-up timer.
async fn signal(agent: &Agent, sig: i32) {
    match tokio::time::timeout(SIGNAL_TIMEOUT, agent.signal(MAIN, sig)).await {
        Ok(Err(e)) => tracing::debug!("signal {sig}: {e}"),
        Err(_) => tracing::warn!("signal {sig}: the guest did not answer"),
        Ok(Ok(())) => {}
    }
}

#[derive(Debug, thiserror::Error)]
enum SaveError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("writing {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A build step's changes into `to`, atomically: a reader finds the whole
/// tar or none.
async fn save_changes(agent: &Agent, to: &std::path::Path) -> Result<(), SaveError> {
    use std::io::Write;
    let write_err = |source| SaveError::Write {
        path: to.to_path_buf(),
        source,
    };
    let mut reader = agent.read_changes().await?;
    let mut out = skiff_util::atomic::AtomicFile::create(to, 0o600).map_err(write_err)?;
    while let Some(chunk) = reader.next().await? {
        out.file().write_all(&chunk).map_err(write_err)?;
    }
    out.commit().map_err(write_err)
}

/// Takes the sandbox down: at once when its disks are thrown away (or nobody
/// waits for a clean end), else with a clean power-off.
async fn vm_down(mut sandbox: Box<dyn Sandbox>, at_once: bool) {
    if at_once {
        sandbox.kill();
    } else if let Err(e) = sandbox.shutdown(SHUTDOWN_GRACE).await {
        tracing::debug!("shutdown: {e}");
    }
}

/// Waits for a request that ends the container before it runs: stop, abort
/// or kill (which has nothing to signal yet); a forwarded signal has nothing
/// to go to and is dropped. Whether a user asked.
async fn next_stop(commands: &mut mpsc::UnboundedReceiver<Command>) -> bool {
    loop {
        match commands.recv().await {
            Some(Command::Signal { .. }) => continue,
            Some(_) => return true,
            None => std::future::pending::<()>().await,
        }
    }
}

/// Records a container that is down without a (new) exit of its process.
fn finish(shared: &Shared, code: Option<i32>, error: String, stopped: bool) -> AttachMsg {
    shared.update(|s| {
        s.status = ContainerStatus::Exited;
        s.exit_code = code
            .or(s.exit_code)
            .or(Some(if stopped { 137 } else { 125 }));
        s.error = (!error.is_empty()).then_some(error);
        s.finished_at = Some(now_rfc3339());
        s.pid = None;
        s.sandbox_pid = None;
        s.stopped_by_user = stopped;
    });
    let st = shared.state();
    AttachMsg::Exited {
        code: st.exit_code.unwrap_or(125),
        signal: 0,
        timings: None,
    }
}
