//! `attach`: the main process's output from now on, and input to it, through
//! the container's monitor. A session (also what `exec` gives) is read for
//! events and written through its [`SessionInput`].

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use super::{Container, ContainerError, Result};
use crate::agent::OutputStream;
use crate::monitor::client::{self, Reader, Writer};
use crate::monitor::protocol::{
    self, Control, Event, Request, Timings, CONTROL, STDERR, STDIN, STDOUT,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    /// The foreground `run`: the container goes when this session goes
    /// without detaching.
    pub owner: bool,
    pub tty_size: Option<(u16, u16)>,
}

/// What a session delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Output(OutputStream, Bytes),
    Started(u32),
    /// The end of the session's process: its exit code and signal.
    Exited {
        code: i32,
        signal: i32,
        timings: Option<Timings>,
    },
}

/// An attach or exec session.
pub struct Session {
    reader: Reader,
    input: SessionInput,
    container: Container,
}

/// The writing side of a session (cheap to clone).
#[derive(Clone)]
pub struct SessionInput {
    writer: Arc<Mutex<Writer>>,
    container: Container,
    /// A session of the main process: signals, resizes and aborts go to the
    /// monitor on connections of their own, never behind a stdin backlog.
    main: bool,
}

impl Session {
    pub(crate) fn new(container: &Container, reader: Reader, writer: Writer, main: bool) -> Self {
        Self {
            reader,
            input: SessionInput {
                writer: Arc::new(Mutex::new(writer)),
                container: container.clone(),
                main,
            },
            container: container.clone(),
        }
    }

    pub fn input(&self) -> SessionInput {
        self.input.clone()
    }

    /// The next event; `None` when the monitor closed the session (after a
    /// detach, or when the container went away without an exit to report).
    pub async fn next(&mut self) -> Result<Option<SessionEvent>> {
        let c = &self.container;
        let Some(frame) = self
            .reader
            .next()
            .await
            .map_err(|e| client::protocol_error(c, e))?
        else {
            return Ok(None);
        };
        Ok(Some(match frame.kind {
            STDOUT => SessionEvent::Output(OutputStream::Stdout, frame.payload),
            STDERR => SessionEvent::Output(OutputStream::Stderr, frame.payload),
            CONTROL => match serde_json::from_slice::<Event>(&frame.payload)
                .map_err(|e| client::protocol_error(c, e.into()))?
            {
                Event::Started { pid } => SessionEvent::Started(pid),
                Event::Exited {
                    code,
                    signal,
                    timings,
                } => SessionEvent::Exited {
                    code,
                    signal,
                    timings,
                },
                Event::Error { failure, message } => {
                    return Err(client::failure(c, failure, message))
                }
                other => {
                    return Err(ContainerError::Monitor {
                        name: c.name().to_owned(),
                        message: format!("unexpected {other:?} in a session"),
                    })
                }
            },
            k => {
                return Err(client::protocol_error(
                    c,
                    protocol::ProtocolError::Unexpected(k),
                ))
            }
        }))
    }
}

impl SessionInput {
    async fn send(&self, kind: u8, payload: &[u8]) -> Result<()> {
        let mut w = self.writer.lock().await;
        protocol::write_frame(&mut *w, kind, payload)
            .await
            .map_err(|e| client::protocol_error(&self.container, e))
    }

    async fn control(&self, c: &Control) -> Result<()> {
        let json =
            serde_json::to_vec(c).map_err(|e| client::protocol_error(&self.container, e.into()))?;
        self.send(CONTROL, &json).await
    }

    pub async fn stdin(&self, data: &[u8]) -> Result<()> {
        // Frames of at most 64 KiB, like the guest's own chunks.
        for chunk in data.chunks(64 << 10) {
            self.send(STDIN, chunk).await?;
        }
        Ok(())
    }

    pub async fn stdin_eof(&self) -> Result<()> {
        self.control(&Control::StdinEof).await
    }

    pub async fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        if self.main {
            return client::call(&self.container, &Request::Resize { rows, cols })
                .await
                .map(|_| ());
        }
        self.control(&Control::Resize { rows, cols }).await
    }

    pub async fn signal(&self, signal: i32) -> Result<()> {
        if self.main {
            return client::call(&self.container, &Request::Signal { signal })
                .await
                .map(|_| ());
        }
        self.control(&Control::Signal { signal }).await
    }

    /// Leaves the container running.
    pub async fn detach(&self) -> Result<()> {
        self.control(&Control::Detach).await
    }

    /// Kills the container now.
    pub async fn abort(&self) -> Result<()> {
        if self.main {
            return client::call(&self.container, &Request::Abort)
                .await
                .map(|_| ());
        }
        self.control(&Control::Abort).await
    }
}

/// Attaches to the container's main process.
pub async fn attach(c: &Container, o: AttachOptions) -> Result<Session> {
    if !o.owner && !c.status().can_exec() && c.status() != super::state::ContainerStatus::Starting {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    let (r, w) = client::request(
        c,
        &Request::Attach {
            stdin: o.stdin,
            owner: o.owner,
            tty_size: o.tty_size,
        },
    )
    .await?;
    Ok(Session::new(c, r, w, true))
}
