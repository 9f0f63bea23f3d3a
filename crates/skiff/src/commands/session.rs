//! The host side of an attach or exec session: the terminal (raw while the
//! container owns it, and its size), stdin, the host's signals, and the
//! output, until the session's process exits or the user detaches.

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use skiff_runtime::agent::OutputStream;
use skiff_runtime::container::{
    self, AttachOptions, Container, Session, SessionEvent, SessionInput,
};
use skiff_runtime::monitor::protocol::Timings;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::terminal;

/// ctrl-p ctrl-q, docker's detach keys.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

#[derive(Debug, Clone, Copy, Default)]
pub struct PumpOptions {
    pub tty: bool,
    /// Send this process's stdin.
    pub stdin: bool,
    /// The foreground `run`: three Ctrl-C within 2 s give up on the container.
    pub owner: bool,
}

#[derive(Debug)]
pub enum PumpEnd {
    Exited {
        code: i32,
        timings: Option<Timings>,
    },
    Detached,
    /// Three interrupts: the container was killed.
    Aborted,
    /// The monitor closed the session without an exit (the container went away).
    Closed,
}

/// Attaches to `c`'s main process (as its `owner`, or not) and runs the
/// session to its end.
pub fn attach_and_pump(
    rt: &tokio::runtime::Runtime,
    c: &Container,
    stdin: bool,
    owner: bool,
) -> anyhow::Result<PumpEnd> {
    let tty = c.config.process.tty;
    let session = rt.block_on(container::attach(
        c,
        AttachOptions {
            stdin,
            owner,
            tty_size: tty.then(terminal::host_size).flatten(),
        },
    ))?;
    rt.block_on(pump(session, PumpOptions { tty, stdin, owner }))
}

/// Runs the session to its end.
pub async fn pump(mut session: Session, o: PumpOptions) -> anyhow::Result<PumpEnd> {
    let input = session.input();
    let stdin_tty = std::io::stdin().is_terminal();
    // Raw mode only for an interactive terminal session; restored by Drop.
    let _raw = if o.tty && o.stdin && stdin_tty {
        Some(terminal::RawMode::enable(rustix::stdio::stdin())?)
    } else {
        None
    };
    // Input goes on its own: a container that does not read its stdin must
    // not stop its output from reaching us (nor the other way round).
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    let input_task = o.stdin.then(|| {
        let (key_tx, keys) = mpsc::channel::<Vec<u8>>(4);
        spawn_stdin_reader(key_tx);
        tokio::spawn(forward_stdin(
            keys,
            input.clone(),
            o.tty && stdin_tty,
            detached_tx,
        ))
    });
    let (sig_tx, mut signals) = mpsc::channel::<i32>(16);
    let signal_task = tokio::spawn(forward_signals(sig_tx));

    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let (mut out_ok, mut err_ok) = (true, true);
    let mut interrupts: Vec<Instant> = Vec::new();
    let mut detach_armed = input_task.is_some();
    let end = loop {
        tokio::select! {
            ev = session.next() => match ev? {
                Some(SessionEvent::Output(stream, data)) => {
                    let (w, ok): (&mut (dyn tokio::io::AsyncWrite + Unpin), &mut bool) = match stream {
                        OutputStream::Stdout => (&mut stdout, &mut out_ok),
                        OutputStream::Stderr => (&mut stderr, &mut err_ok),
                    };
                    // A closed host pipe (`skiff run ... | head`) drops the rest.
                    if *ok && (w.write_all(&data).await.is_err() || w.flush().await.is_err()) {
                        *ok = false;
                    }
                }
                Some(SessionEvent::Started(_)) => {}
                Some(SessionEvent::Exited { code, timings, .. }) => break PumpEnd::Exited { code, timings },
                None => break PumpEnd::Closed,
            },
            r = &mut detached, if detach_armed => {
                if r.is_ok() {
                    break PumpEnd::Detached;
                }
                detach_armed = false;
            }
            sig = signals.recv() => {
                let Some(sig) = sig else { continue };
                if sig == rustix::process::Signal::WINCH.as_raw() {
                    if let Some((rows, cols)) = terminal::host_size() {
                        let _ = input.resize(rows, cols).await;
                    }
                    continue;
                }
                if sig == rustix::process::Signal::INT.as_raw() && o.owner {
                    interrupts.retain(|t| t.elapsed() < Duration::from_secs(2));
                    interrupts.push(Instant::now());
                    if interrupts.len() >= 3 {
                        let _ = input.abort().await;
                        // The monitor answers with the end of the session.
                        while let Ok(Some(_)) = session.next().await {}
                        break PumpEnd::Aborted;
                    }
                }
                let _ = input.signal(sig).await;
            }
        }
    };
    signal_task.abort();
    if let Some(t) = input_task {
        t.abort();
    }
    Ok(end)
}

/// stdin to the session; in a terminal session, ctrl-p ctrl-q detaches.
async fn forward_stdin(
    mut keys: mpsc::Receiver<Vec<u8>>,
    input: SessionInput,
    detach_keys: bool,
    detached: tokio::sync::oneshot::Sender<()>,
) {
    // A ctrl-p at the end of one read may be followed by ctrl-q in the next.
    let mut pending_ctrl_p = false;
    while let Some(mut data) = keys.recv().await {
        if detach_keys {
            if pending_ctrl_p {
                pending_ctrl_p = false;
                if data.first() == Some(&DETACH_KEYS[1]) {
                    let _ = input.detach().await;
                    let _ = detached.send(());
                    return;
                }
                data.insert(0, DETACH_KEYS[0]);
            }
            if data.windows(2).any(|w| w == DETACH_KEYS) {
                let _ = input.detach().await;
                let _ = detached.send(());
                return;
            }
            if data.last() == Some(&DETACH_KEYS[0]) {
                data.pop();
                pending_ctrl_p = true;
            }
        }
        if !data.is_empty() && input.stdin(&data).await.is_err() {
            return;
        }
    }
    let _ = input.stdin_eof().await;
    // Keep the sender: dropping it would read as a detach.
    std::future::pending::<()>().await;
    drop(detached);
}

/// Host stdin in chunks, from a plain thread: a blocking read that may never
/// return must not hold up the runtime's shutdown.
fn spawn_stdin_reader(tx: mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    });
}

/// The signals a session forwards (docker's sig-proxy), and WINCH.
pub fn register_signals() -> Vec<(i32, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{signal, SignalKind};
    [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
        SignalKind::window_change(),
    ]
    .into_iter()
    .filter_map(|k| signal(k).ok().map(|s| (k.as_raw_value(), s)))
    .collect()
}

async fn forward_signals(tx: mpsc::Sender<i32>) {
    let mut tasks = Vec::new();
    for (raw, mut s) in register_signals() {
        let t = tx.clone();
        tasks.push(tokio::spawn(async move {
            while s.recv().await.is_some() {
                if t.send(raw).await.is_err() {
                    return;
                }
            }
        }));
    }
    // Aborting this task ends its children too.
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _all = AbortAll(tasks);
    std::future::pending::<()>().await;
}
