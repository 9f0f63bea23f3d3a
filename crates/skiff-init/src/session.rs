//! The control channel's life: handshake, serve, and back to the handshake
//! when the host goes away, on the same descriptor, forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use skiff_proto::session::guest_handshake;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::agent::AgentService;
use crate::clock;
use crate::fd_io::FdIo;

/// The port as one session's connection. `skiff_proto::serve` returns as
/// soon as it has handed the connection to a task of its own, so the end of
/// the session is observed here instead: the task drops this when the
/// HTTP/2 connection ends, and that closes `_ended`.
struct SessionIo {
    io: FdIo,
    _ended: oneshot::Sender<()>,
}

impl AsyncRead for SessionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SessionIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves sessions on `port` one after another. Only returns if the port
/// itself fails persistently (it never does for a healthy virtio port).
pub async fn serve_forever(port: FdIo, agent: AgentService) {
    loop {
        let mut io = port.clone();
        let nonce = clock::nonce();
        match guest_handshake(&mut io, &nonce).await {
            Ok(session) => crate::debug!("session {session}: handshake done"),
            Err(e) => {
                crate::error!("control channel handshake: {e}");
                // An I/O error on the port: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let (ended_tx, ended) = oneshot::channel();
        if let Err(e) = skiff_proto::serve(
            SessionIo {
                io,
                _ended: ended_tx,
            },
            agent.clone(),
        )
        .await
        {
            crate::error!("control channel: {e}");
        }
        // Err(RecvError) is the normal end: the connection dropped the sender.
        let _ = ended.await;
        crate::debug!("session ended; waiting for the next host");
    }
}
