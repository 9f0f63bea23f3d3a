//! gRPC over one already-open byte stream: the host's end of the control
//! socket, or the guest's virtio-serial port. There is no listener and no
//! reconnect: one stream is one HTTP/2 connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint};

use crate::v1::agent_client::AgentClient;
use crate::v1::agent_server::{Agent, AgentServer};

/// HTTP/2 windows larger than the 64 KiB default: stdio of a busy process
/// should not wait for window updates across a slow (emulated) link.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 8 << 20;

/// Opens the gRPC client over `io` (after [`crate::session::host_handshake`]).
pub async fn connect<IO>(io: IO) -> Result<AgentClient<Channel>, tonic::transport::Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let slot = Arc::new(Mutex::new(Some(io)));
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let io = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            io.map(TokioIo::new).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "the control channel is closed")
            })
        }
    });
    let channel = Endpoint::from_static("http://skiff-guest")
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_with_connector(connector)
        .await?;
    Ok(AgentClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20))
}

/// Serves `agent` on `io` until the connection ends (after
/// [`crate::session::guest_handshake`]). tonic hands the connection to a task
/// of its own and returns once the incoming stream is exhausted, so the end
/// of the connection is observed through the IO being dropped by that task.
pub async fn serve<IO, A>(io: IO, agent: A) -> Result<(), tonic::transport::Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    A: Agent,
{
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
    let incoming = futures_once(ServerIo {
        io,
        _ended: Some(ended_tx),
    });
    let served = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .add_service(
            AgentServer::new(agent)
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
        )
        .serve_with_incoming(incoming)
        .await;
    // Err(RecvError) is the normal end: the connection task dropped the IO.
    let _ = ended.await;
    served
}

/// A stream yielding one connection, then ending.
fn futures_once<T: Send + 'static>(
    item: T,
) -> impl tokio_stream_like::Stream<Item = Result<T, io::Error>> {
    tokio_stream_like::Once(Some(item))
}

mod tokio_stream_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    pub use tonic::codegen::tokio_stream::Stream;

    pub struct Once<T>(pub Option<T>);
    impl<T> Unpin for Once<T> {}
    impl<T> Stream for Once<T> {
        type Item = Result<T, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.take().map(Ok))
        }
    }
}

/// A byte stream that tonic's server accepts as a connection. Dropping it
/// (when the connection ends) drops `_ended`, which is how [`serve`] learns
/// that the connection is over.
pub struct ServerIo<IO> {
    io: IO,
    _ended: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<IO> ServerIo<IO> {
    pub fn new(io: IO) -> Self {
        Self { io, _ended: None }
    }
}

impl<IO> tonic::transport::server::Connected for ServerIo<IO> {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl<IO: AsyncRead + Unpin> AsyncRead for ServerIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ServerIo<IO> {
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
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
