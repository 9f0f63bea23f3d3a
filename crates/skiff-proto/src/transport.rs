//! gRPC over one already-open byte stream: the host's end of the control
//! socket, or the guest's virtio-serial port. There is no listener and no
//! reconnect: one stream is one HTTP/2 connection.

use std::io;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
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
/// [`crate::session::guest_handshake`]): the end of the stream, or an HTTP/2
/// protocol error such as bytes of another session. hyper serves this one
/// connection directly; tonic's `Server` would hand it to a task of its own
/// that, after a protocol error, can linger waiting for the peer to close,
/// which on a virtio-serial port it never does.
pub async fn serve<IO, A>(io: IO, agent: A) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    A: Agent,
{
    let routes = tonic::service::Routes::new(
        AgentServer::new(agent)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20),
    )
    .prepare();
    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .serve_connection(
            TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(routes),
        )
        .await
}
