//! `kill`: a signal to the container's main process (SIGKILL by default).

use super::{Container, ContainerError, Result};
use crate::monitor::client;
use crate::monitor::protocol::Request;

pub async fn kill(c: &Container, signal: i32) -> Result<()> {
    if !c.status().can_kill() {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    client::call(c, &Request::Kill { signal }).await?;
    Ok(())
}
