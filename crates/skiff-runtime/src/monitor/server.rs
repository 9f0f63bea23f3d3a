//! The monitor's socket: one task per connection, one request per connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::protocol::{
    self, Control, Event, Failure, FrameReader, Request, CONTROL, DATA, STDERR, STDIN, STDOUT,
};
use super::{AttachMsg, Command, MonitorError, Owner, RunHandle, Shared};
use crate::agent::{AgentError, Input, OutputStream, ProcessSpec};
use crate::container::state::ContainerStatus;

pub(crate) const SOCKET: &str = "monitor.sock";

pub(crate) fn bind(dir: &Path) -> Result<UnixListener, MonitorError> {
    let path = dir.join(SOCKET);
    let listener = skiff_util::socket::bind(&path).map_err(|source| MonitorError::Io {
        what: "listening on",
        path: path.clone(),
        source,
    })?;
    // Whoever can connect can exec as root in the container: the owner only.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(
        |source| MonitorError::Io {
            what: "restricting",
            path: path.clone(),
            source,
        },
    )?;
    listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener))
        .map_err(|source| MonitorError::Io {
            what: "listening on",
            path,
            source,
        })
}

pub(crate) async fn serve(listener: UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tracker.spawn(async move {
            if let Err(e) = handle(stream, &shared).await {
                tracing::debug!("monitor connection: {e}");
            }
        });
    }
}

type Writer = OwnedWriteHalf;
type Reader = FrameReader<OwnedReadHalf>;

async fn error(
    w: &mut Writer,
    failure: Failure,
    message: String,
) -> Result<(), protocol::ProtocolError> {
    protocol::write_json(w, &Event::Error { failure, message }).await
}

fn agent_failure(e: &AgentError) -> Failure {
    match e {
        AgentError::Exec { code, .. } => Failure::Exec(*code),
        AgentError::NotFound(_) => Failure::NotFound,
        AgentError::InvalidArgument(_) => Failure::InvalidArgument,
        AgentError::Failed { .. } => Failure::Other,
    }
}

/// The running process, or the error to answer.
fn running(shared: &Shared) -> Result<RunHandle, String> {
    match shared.run() {
        Some(r) if shared.state().status == ContainerStatus::Running => Ok(r),
        _ => Err(format!("container {} is not running", shared.config.name)),
    }
}

async fn handle(stream: UnixStream, shared: &Arc<Shared>) -> Result<(), protocol::ProtocolError> {
    let (r, mut w) = stream.into_split();
    let mut reader = FrameReader::new(r);
    let Some(req) = reader.next_json::<Request>().await? else {
        return Ok(());
    };
    match req {
        Request::Attach {
            stdin,
            owner,
            tty_size,
        } => attach(shared, reader, w, stdin, owner, tty_size).await,
        Request::Exec { process, detach } => exec(shared, reader, w, process, detach).await,
        Request::Kill { signal } => {
            if !shared.state().status.can_kill() {
                return error(&mut w, Failure::NotRunning, not_running(shared)).await;
            }
            let _ = shared.commands.send(Command::Kill { signal });
            protocol::write_json(&mut w, &Event::Done).await
        }
        Request::Stop { timeout_secs } => {
            let _ = shared.commands.send(Command::Stop {
                timeout: Duration::from_secs(timeout_secs.into()),
            });
            // Answered by closing the connection once the container is down.
            let mut finished = shared.finished.subscribe();
            let _ = finished.wait_for(|f| *f).await;
            protocol::write_json(&mut w, &Event::Done).await
        }
        Request::Signal { signal } => {
            let _ = shared.commands.send(Command::Signal { signal });
            protocol::write_json(&mut w, &Event::Done).await
        }
        Request::Resize { rows, cols } => {
            if let Some(run) = shared.run() {
                let _ = run.agent.resize(super::supervisor::MAIN, rows, cols).await;
            }
            protocol::write_json(&mut w, &Event::Done).await
        }
        Request::Abort => {
            let _ = shared.commands.send(Command::Abort);
            protocol::write_json(&mut w, &Event::Done).await
        }
        Request::Wait => {
            let mut finished = shared.finished.subscribe();
            let _ = finished.wait_for(|f| *f).await;
            let st = shared.state();
            protocol::write_json(
                &mut w,
                &Event::Exited {
                    code: st.exit_code.unwrap_or(0),
                    signal: 0,
                    timings: None,
                },
            )
            .await
        }
        Request::Top => match running(shared) {
            Ok(run) => match run.agent.list_processes().await {
                Ok((processes, now)) => {
                    protocol::write_json(&mut w, &Event::Top { processes, now }).await
                }
                Err(e) => error(&mut w, agent_failure(&e), e.to_string()).await,
            },
            Err(m) => error(&mut w, Failure::NotRunning, m).await,
        },
        Request::Stats => match running(shared) {
            Ok(run) => match run.agent.stats().await {
                Ok(guest) => {
                    let sandbox_rss = run.sandbox_pid.map(rss_of).unwrap_or(0);
                    protocol::write_json(&mut w, &Event::Stats { guest, sandbox_rss }).await
                }
                Err(e) => error(&mut w, agent_failure(&e), e.to_string()).await,
            },
            Err(m) => error(&mut w, Failure::NotRunning, m).await,
        },
        Request::StatPath { path } => match running(shared) {
            Ok(run) => match run.agent.stat_path(&path).await {
                Ok(stat) => protocol::write_json(&mut w, &Event::PathStat { stat }).await,
                Err(e) => error(&mut w, agent_failure(&e), e.to_string()).await,
            },
            Err(m) => error(&mut w, Failure::NotRunning, m).await,
        },
        Request::CopyOut { path, follow_link } => match running(shared) {
            Ok(run) => copy_out(&run, &mut w, &path, follow_link).await,
            Err(m) => error(&mut w, Failure::NotRunning, m).await,
        },
        Request::CopyIn { dir, keep_owner } => match running(shared) {
            Ok(run) => copy_in(&run, reader, &mut w, &dir, keep_owner).await,
            Err(m) => error(&mut w, Failure::NotRunning, m).await,
        },
    }
}

fn not_running(shared: &Shared) -> String {
    format!("container {} is not running", shared.config.name)
}

/// The sandbox process's resident memory on the host.
fn rss_of(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn write_output(
    w: &mut Writer,
    stream: OutputStream,
    data: &[u8],
) -> Result<(), protocol::ProtocolError> {
    let kind = match stream {
        OutputStream::Stdout => STDOUT,
        OutputStream::Stderr => STDERR,
    };
    protocol::write_frame(w, kind, data).await
}

async fn attach(
    shared: &Arc<Shared>,
    mut reader: Reader,
    mut w: Writer,
    stdin: bool,
    owner: bool,
    tty_size: Option<(u16, u16)>,
) -> Result<(), protocol::ProtocolError> {
    // Room for 16 MiB of output chunks before a client counts as fallen behind.
    let (tx, mut rx) = mpsc::channel::<AttachMsg>(256);
    let id = shared.attach(tx, owner);
    // Unregistered on every way out.
    struct Registered<'a>(&'a Shared, u64);
    impl Drop for Registered<'_> {
        fn drop(&mut self) {
            self.0.detach(self.1);
        }
    }
    let _registered = Registered(shared, id);
    if owner {
        shared.owner.send_replace(Some(Owner { tty_size }));
    } else if let Ok(run) = running(shared) {
        protocol::write_json(&mut w, &Event::Started { pid: run.pid }).await?;
        if let (Some((rows, cols)), true) = (tty_size, shared.config.process.tty) {
            let _ = run.agent.resize(super::supervisor::MAIN, rows, cols).await;
        }
    } else if shared.state().status != ContainerStatus::Starting {
        return error(&mut w, Failure::NotRunning, not_running(shared)).await;
    }
    // The two directions run on their own: a process that is not reading its
    // stdin must not hold up its output, nor the other way round.
    let output = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                AttachMsg::Output(stream, data) => write_output(&mut w, stream, &data).await?,
                AttachMsg::Started(pid) => {
                    protocol::write_json(&mut w, &Event::Started { pid }).await?
                }
                AttachMsg::Exited {
                    code,
                    signal,
                    timings,
                } => {
                    protocol::write_json(
                        &mut w,
                        &Event::Exited {
                            code,
                            signal,
                            timings,
                        },
                    )
                    .await?;
                    break;
                }
            }
        }
        Ok::<_, protocol::ProtocolError>(())
    };
    let input = async {
        loop {
            match reader.next().await {
                Ok(Some(f)) if f.kind == STDIN => {
                    if let (true, Some(tx)) = (stdin, shared.stdin()) {
                        let _ = tx.send(Input::Data(f.payload)).await;
                    }
                }
                Ok(Some(f)) if f.kind == CONTROL => {
                    match serde_json::from_slice::<Control>(&f.payload) {
                        Ok(Control::Resize { rows, cols }) => {
                            if let Some(run) = shared.run() {
                                let _ = run.agent.resize(super::supervisor::MAIN, rows, cols).await;
                            }
                        }
                        Ok(Control::Signal { signal }) => {
                            let _ = shared.commands.send(Command::Signal { signal });
                        }
                        Ok(Control::StdinEof) => {
                            if stdin && shared.config.process.stdin_once {
                                if let Some(tx) = shared.stdin() {
                                    let _ = tx.send(Input::Eof).await;
                                }
                            }
                        }
                        Ok(Control::Detach) => return InputEnd::Detached,
                        Ok(Control::Abort) => {
                            let _ = shared.commands.send(Command::Abort);
                        }
                        Err(_) => return InputEnd::Gone,
                    }
                }
                Ok(Some(_)) | Ok(None) | Err(_) => return InputEnd::Gone,
            }
        }
    };
    tokio::select! {
        r = output => r,
        end = input => {
            // The client went away: an owner takes the container with it.
            if owner && end == InputEnd::Gone {
                let _ = shared.commands.send(Command::Abort);
            }
            Ok(())
        }
    }
}

/// Why a client stopped sending.
#[derive(Debug, PartialEq, Eq)]
enum InputEnd {
    Detached,
    Gone,
}

async fn exec(
    shared: &Arc<Shared>,
    mut reader: Reader,
    mut w: Writer,
    p: ProcessSpec,
    detach: bool,
) -> Result<(), protocol::ProtocolError> {
    let run = match running(shared) {
        Ok(r) => r,
        Err(m) => return error(&mut w, Failure::NotRunning, m).await,
    };
    let id = format!("exec-{}", shared.next());
    let spec = ProcessSpec {
        id: id.clone(),
        stdin: p.stdin && !detach,
        ..p
    };
    if let Err(e) = run.agent.create_process(&spec).await {
        return error(&mut w, agent_failure(&e), e.to_string()).await;
    }
    let (in_tx, in_rx) = if spec.stdin {
        let (tx, rx) = mpsc::channel::<Input>(8);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let mut output = match run.agent.stdio(&id, in_rx).await {
        Ok(o) => o,
        Err(e) => return error(&mut w, agent_failure(&e), e.to_string()).await,
    };
    let pid = match run.agent.start_process(&id).await {
        Ok(pid) => pid,
        Err(e) => return error(&mut w, agent_failure(&e), e.to_string()).await,
    };
    protocol::write_json(&mut w, &Event::Started { pid }).await?;
    if detach {
        // Nobody reads its output: drain it so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = output.next().await {} });
        return Ok(());
    }
    // Output and the exit on one side, the client's input on the other, each
    // on its own (see attach).
    let mut process_output = output;
    let output = async {
        let mut client_gone = false;
        while let Ok(Some((stream, data))) = process_output.next().await {
            if !client_gone && write_output(&mut w, stream, &data).await.is_err() {
                client_gone = true;
            }
        }
        let st = run
            .agent
            .wait(&id)
            .await
            .unwrap_or(crate::agent::ExitStatus {
                code: 137,
                signal: 9,
            });
        if !client_gone {
            let exited = Event::Exited {
                code: st.code,
                signal: st.signal,
                timings: None,
            };
            protocol::write_json(&mut w, &exited).await?;
        }
        Ok::<_, protocol::ProtocolError>(())
    };
    let input = async {
        loop {
            match reader.next().await {
                Ok(Some(f)) if f.kind == STDIN => {
                    if let Some(tx) = &in_tx {
                        let _ = tx.send(Input::Data(f.payload)).await;
                    }
                }
                Ok(Some(f)) if f.kind == CONTROL => {
                    match serde_json::from_slice::<Control>(&f.payload) {
                        Ok(Control::Resize { rows, cols }) => {
                            let _ = run.agent.resize(&id, rows, cols).await;
                        }
                        Ok(Control::Signal { signal }) => {
                            let _ = run.agent.signal(&id, signal).await;
                        }
                        Ok(Control::StdinEof) => {
                            if let Some(tx) = &in_tx {
                                let _ = tx.send(Input::Eof).await;
                            }
                        }
                        Ok(Control::Detach) | Ok(Control::Abort) | Err(_) => break,
                    }
                }
                _ => break,
            }
        }
        // The client is done sending (or gone): the process keeps running, as
        // with docker, with its stdin closed.
        if let Some(tx) = &in_tx {
            let _ = tx.send(Input::Eof).await;
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        r = output => r,
        () = input => Ok(()),
    }
}

async fn copy_out(
    run: &RunHandle,
    w: &mut Writer,
    path: &str,
    follow_link: bool,
) -> Result<(), protocol::ProtocolError> {
    // The stat first: its errors (a missing path) come before any data.
    let stat = match run.agent.stat_path(path).await {
        Ok(s) => s,
        Err(e) => return error(w, agent_failure(&e), e.to_string()).await,
    };
    let mut tar = match run.agent.read_archive(path, follow_link).await {
        Ok(t) => t,
        Err(e) => return error(w, agent_failure(&e), e.to_string()).await,
    };
    protocol::write_json(w, &Event::PathStat { stat }).await?;
    loop {
        match tar.next().await {
            Ok(Some(data)) => protocol::write_frame(w, DATA, &data).await?,
            Ok(None) => break,
            Err(e) => return error(w, agent_failure(&e), e.to_string()).await,
        }
    }
    protocol::write_json(w, &Event::Done).await
}

async fn copy_in(
    run: &RunHandle,
    mut reader: Reader,
    w: &mut Writer,
    dir: &str,
    keep_owner: bool,
) -> Result<(), protocol::ProtocolError> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let agent = run.agent.clone();
    let dir = dir.to_owned();
    let unpack = tokio::spawn(async move { agent.write_archive(&dir, keep_owner, rx).await });
    // Client data until its empty frame; a client that vanishes mid-way leaves
    // a truncated archive, which the guest refuses.
    loop {
        match reader.next().await? {
            Some(f) if f.kind == DATA && f.payload.is_empty() => break,
            Some(f) if f.kind == DATA => {
                if tx.send(f.payload).await.is_err() {
                    break;
                }
            }
            Some(f) => return Err(protocol::ProtocolError::Unexpected(f.kind)),
            None => {
                unpack.abort();
                return Ok(());
            }
        }
    }
    drop(tx);
    match unpack.await {
        Ok(Ok(())) => protocol::write_json(w, &Event::Done).await,
        Ok(Err(e)) => error(w, agent_failure(&e), e.to_string()).await,
        Err(_) => error(w, Failure::Other, "unpacking was interrupted".into()).await,
    }
}
