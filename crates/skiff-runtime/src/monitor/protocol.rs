//! What goes over a monitor's socket (`containers/<id>/monitor.sock`).
//!
//! A connection carries one request, then, for attach and exec, a session.
//! Frames are `[kind: u8][length: u32 BE][payload]`: control messages as JSON,
//! stdio and archive bytes as they are. No generated code: both ends are
//! skiff-runtime, and a frame costs one write.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::agent::{GuestStats, PathStat, ProcessInfo, ProcessSpec};

/// Frame kinds.
pub const CONTROL: u8 = 0;
pub const STDIN: u8 = 1;
pub const STDOUT: u8 = 2;
pub const STDERR: u8 = 3;
/// Archive bytes (cp).
pub const DATA: u8 = 4;

/// Larger frames are a protocol error (stdio chunks are at most 64 KiB).
const MAX_FRAME: usize = 4 << 20;

/// The first message of a connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Output of the main process from now on, and stdin to it. An `owner`
    /// (the foreground `run`) that goes away without detaching takes the
    /// container with it.
    Attach {
        stdin: bool,
        owner: bool,
        tty_size: Option<(u16, u16)>,
    },
    /// The process's `id` is the monitor's to choose.
    Exec {
        process: ProcessSpec,
        detach: bool,
    },
    Kill {
        signal: i32,
    },
    /// Stop signal, `timeout_secs`, SIGKILL; the connection closes once the
    /// process has exited.
    Stop {
        timeout_secs: u32,
    },
    /// Answered with `Exited` once the container is down for good.
    Wait,
    /// A signal an attached client forwards (not a stop), the main process's
    /// terminal size, and giving the container up: on connections of their
    /// own, so that they never wait behind a session's stdin.
    Signal {
        signal: i32,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    Abort,
    Top,
    Stats,
    StatPath {
        path: String,
    },
    /// Tar bytes of `path` as DATA frames, then `Done`.
    CopyOut {
        path: String,
        follow_link: bool,
    },
    /// Tar bytes as DATA frames from the client, an empty DATA frame at the end.
    CopyIn {
        dir: String,
        keep_owner: bool,
    },
}

/// Phase timings of a start, for `--debug`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timings {
    #[serde(with = "micros")]
    pub boot_total: Duration,
    #[serde(with = "micros")]
    pub vm_connected: Duration,
    #[serde(with = "micros")]
    pub kernel_to_init: Duration,
    #[serde(with = "micros")]
    pub init_to_ready: Duration,
    /// Root setup and process creation.
    #[serde(with = "micros")]
    pub setup: Duration,
    /// Monitor start to process start.
    #[serde(with = "micros")]
    pub to_process_start: Duration,
    #[serde(with = "micros")]
    pub process_ran: Duration,
    #[serde(with = "micros")]
    pub exit_to_vm_gone: Duration,
}

mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros().min(u64::MAX as u128) as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    NotRunning,
    NotFound,
    InvalidArgument,
    /// The command could not be run: 126 or 127.
    Exec(i32),
    Other,
}

/// Messages from the monitor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A request without data is done.
    Done,
    Error {
        failure: Failure,
        message: String,
    },
    /// The session's process runs (for attach: it already ran, or just started).
    Started {
        pid: u32,
    },
    /// The session's process ended; the session is over.
    Exited {
        code: i32,
        signal: i32,
        timings: Option<Timings>,
    },
    Top {
        processes: Vec<ProcessInfo>,
        #[serde(with = "micros")]
        now: Duration,
    },
    Stats {
        guest: GuestStats,
        /// The sandbox's resident memory on the host (QEMU's RSS).
        sandbox_rss: u64,
    },
    PathStat {
        stat: PathStat,
    },
}

/// Messages from a client during a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum Control {
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal {
        signal: i32,
    },
    /// The end of the client's stdin.
    StdinEof,
    /// Leave the container running (ctrl-p ctrl-q).
    Detach,
    /// Kill the container now (a third Ctrl-C).
    Abort,
}

/// One frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("a frame of {0} bytes is larger than the protocol allows")]
    TooLarge(usize),
    #[error("bad message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected frame of kind {0}")]
    Unexpected(u8),
}

/// Writes one frame (one write call for small frames).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    if payload.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge(payload.len()));
    }
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf).await?;
    Ok(())
}

pub async fn write_json<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), ProtocolError> {
    write_frame(w, CONTROL, &serde_json::to_vec(msg)?).await
}

/// Reads frames, buffering reads.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(64 << 10),
        }
    }

    /// The next frame; `None` at a clean end of the connection.
    pub async fn next(&mut self) -> Result<Option<Frame>, ProtocolError> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if len > MAX_FRAME {
                    return Err(ProtocolError::TooLarge(len));
                }
                if self.buf.len() >= 5 + len {
                    let kind = self.buf[0];
                    self.buf.advance(5);
                    let payload = self.buf.split_to(len).freeze();
                    return Ok(Some(Frame { kind, payload }));
                }
                self.buf.reserve(5 + len - self.buf.len());
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
    }

    /// The next frame, which must be a control message.
    pub async fn next_json<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ProtocolError> {
        match self.next().await? {
            None => Ok(None),
            Some(f) if f.kind == CONTROL => Ok(Some(serde_json::from_slice(&f.payload)?)),
            Some(f) => Err(ProtocolError::Unexpected(f.kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_across_any_split() {
        let mut wire = Vec::new();
        write_json(&mut wire, &Request::Top).await.unwrap();
        write_frame(&mut wire, STDOUT, b"hello").await.unwrap();
        write_frame(&mut wire, DATA, b"").await.unwrap();
        write_json(
            &mut wire,
            &Event::Exited {
                code: 3,
                signal: 0,
                timings: None,
            },
        )
        .await
        .unwrap();
        // Delivered a byte at a time.
        let (mut a, b) = tokio::io::duplex(1);
        let w = wire.clone();
        tokio::spawn(async move { a.write_all(&w).await });
        let mut r = FrameReader::new(b);
        assert_eq!(r.next_json::<Request>().await.unwrap(), Some(Request::Top));
        let f = r.next().await.unwrap().unwrap();
        assert_eq!((f.kind, &f.payload[..]), (STDOUT, &b"hello"[..]));
        let f = r.next().await.unwrap().unwrap();
        assert_eq!((f.kind, f.payload.len()), (DATA, 0));
        assert_eq!(
            r.next_json::<Event>().await.unwrap(),
            Some(Event::Exited {
                code: 3,
                signal: 0,
                timings: None
            })
        );
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut wire = vec![STDOUT];
        wire.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        let mut r = FrameReader::new(&wire[..]);
        assert!(matches!(r.next().await, Err(ProtocolError::TooLarge(_))));
        let mut r = FrameReader::new(&[STDOUT, 0, 0, 0, 9, b'x'][..]);
        assert!(matches!(r.next().await, Err(ProtocolError::Io(_))));
        let json = serde_json::to_string(&Request::Attach {
            stdin: true,
            owner: false,
            tty_size: Some((24, 80)),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"request":"attach","stdin":true,"owner":false,"tty_size":[24,80]}"#
        );
    }
}
