//! The client end of a monitor's socket, for the container operations.

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::protocol::{self, Event, Failure, FrameReader, ProtocolError, Request};
use super::server::SOCKET;
use crate::agent::AgentError;
use crate::container::{Container, ContainerError};

pub(crate) type Reader = FrameReader<OwnedReadHalf>;
pub(crate) type Writer = OwnedWriteHalf;

/// The monitor failed us: as a container error.
pub(crate) fn protocol_error(c: &Container, e: ProtocolError) -> ContainerError {
    ContainerError::Monitor {
        name: c.name().to_owned(),
        message: e.to_string(),
    }
}

/// A failure the monitor reported, as a container error.
pub(crate) fn failure(c: &Container, failure: Failure, message: String) -> ContainerError {
    match failure {
        Failure::NotRunning => ContainerError::NotRunning(c.name().to_owned()),
        Failure::NotFound => ContainerError::Agent(AgentError::NotFound(message)),
        Failure::InvalidArgument => ContainerError::Agent(AgentError::InvalidArgument(message)),
        Failure::Exec(code) => ContainerError::Agent(AgentError::Exec { code, message }),
        Failure::Other => ContainerError::Monitor {
            name: c.name().to_owned(),
            message,
        },
    }
}

/// Connects and sends `req`. A container without a monitor is not running.
pub(crate) async fn request(
    c: &Container,
    req: &Request,
) -> Result<(Reader, Writer), ContainerError> {
    let path = c.dir().join(SOCKET);
    let std = skiff_util::socket::connect(&path)
        .map_err(|_| ContainerError::NotRunning(c.name().to_owned()))?;
    std.set_nonblocking(true)
        .map_err(crate::container::io("connecting to", &path))?;
    let stream = UnixStream::from_std(std).map_err(crate::container::io("connecting to", &path))?;
    let (r, mut w) = stream.into_split();
    protocol::write_json(&mut w, req)
        .await
        .map_err(|e| protocol_error(c, e))?;
    Ok((FrameReader::new(r), w))
}

/// Sends `req` and reads the one answer; an `Error` answer is an error.
pub(crate) async fn call(c: &Container, req: &Request) -> Result<Event, ContainerError> {
    let (mut r, _w) = request(c, req).await?;
    match r
        .next_json::<Event>()
        .await
        .map_err(|e| protocol_error(c, e))?
    {
        Some(Event::Error {
            failure: f,
            message,
        }) => Err(failure(c, f, message)),
        Some(e) => Ok(e),
        None => Err(ContainerError::Monitor {
            name: c.name().to_owned(),
            message: "the monitor closed the connection without an answer".into(),
        }),
    }
}
