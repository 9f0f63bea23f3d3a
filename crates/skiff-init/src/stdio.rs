//! The Stdio call: stdin from the host into the process, stdout/stderr (or
//! the pty) back. The response channel is bounded, so a slow host slows the
//! reader, which lets the pipe fill and the process block: no output is
//! dropped and none piles up in memory.

use std::os::fd::OwnedFd;

use skiff_proto::v1::{output_chunk, OutputChunk, StdinChunk};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::process::ParentStdio;

/// The most a single OutputChunk carries.
pub const CHUNK: usize = 64 * 1024;
/// Chunks in flight towards the gRPC stream.
const QUEUE: usize = 8;

/// The VEOF character of a terminal in its default settings (^D).
const VEOF: u8 = 0x04;

pub type OutputStream = ReceiverStream<Result<OutputChunk, Status>>;

/// Starts relaying `stdio`. `first` is the chunk that named the process (it
/// may already carry data or eof).
pub fn relay(
    stdio: ParentStdio,
    first: StdinChunk,
    inbound: Streaming<StdinChunk>,
) -> Result<OutputStream, Status> {
    let (tx, rx) = mpsc::channel(QUEUE);
    match stdio {
        ParentStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let stdout = receiver(stdout)?;
            let stderr = receiver(stderr)?;
            tokio::spawn(pump(stdout, output_chunk::Stream::Stdout, tx.clone()));
            tokio::spawn(pump(stderr, output_chunk::Stream::Stderr, tx));
            let stdin = match stdin {
                Some(fd) => Some(
                    pipe::Sender::from_owned_fd(fd)
                        .map_err(|e| Status::internal(format!("stdin pipe: {e}")))?,
                ),
                None => None,
            };
            tokio::spawn(feed(stdin, false, first, inbound));
        }
        ParentStdio::Tty(master) => {
            tokio::spawn(pump(master.clone(), output_chunk::Stream::Stdout, tx));
            tokio::spawn(feed(Some(master), true, first, inbound));
        }
    }
    Ok(ReceiverStream::new(rx))
}

fn receiver(fd: OwnedFd) -> Result<pipe::Receiver, Status> {
    pipe::Receiver::from_owned_fd(fd).map_err(|e| Status::internal(format!("output pipe: {e}")))
}

/// Copies one output until end of file.
async fn pump<R: AsyncRead + Unpin>(
    mut from: R,
    stream: output_chunk::Stream,
    tx: mpsc::Sender<Result<OutputChunk, Status>>,
) {
    let mut buf = vec![0u8; CHUNK];
    let mut host_gone = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::debug!("reading {stream:?}: {e}");
                return;
            }
        };
        if host_gone {
            // Nobody listens any more: keep draining so the process does
            // not block on a full pipe forever.
            continue;
        }
        let chunk = OutputChunk {
            stream: stream as i32,
            data: buf[..n].to_vec(),
        };
        if tx.send(Ok(chunk)).await.is_err() {
            host_gone = true;
        }
    }
}

/// Writes the host's stdin into the process. The end of the request stream
/// closes stdin too, as eof would.
async fn feed<W: AsyncWrite + Unpin>(
    mut to: Option<W>,
    tty: bool,
    first: StdinChunk,
    mut inbound: Streaming<StdinChunk>,
) {
    let mut chunk = Some(first);
    while let Some(c) = chunk {
        if !c.data.is_empty() {
            if let Some(w) = to.as_mut() {
                if let Err(e) = w.write_all(&c.data).await {
                    // The process closed its stdin or exited: drop the rest.
                    crate::debug!("writing stdin: {e}");
                    to = None;
                }
            }
        }
        if c.eof {
            if tty {
                if let Some(w) = to.as_mut() {
                    let _ = w.write_all(&[VEOF]).await;
                }
            } else {
                to = None;
            }
        }
        // A broken request stream ends stdin like a closed one.
        chunk = inbound.message().await.unwrap_or_default();
    }
}
