//! `wait`: blocks until the container stops; its exit code.

use std::time::Duration;

use super::state::ContainerStatus;
use super::{Container, ContainerError, Result};
use crate::monitor::client;
use crate::monitor::protocol::{Event, Request};

pub async fn wait(c: &Container) -> Result<i32> {
    let mut c = c.clone();
    // Not started yet: wait for someone to start it.
    while c.status() == ContainerStatus::Created {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c = c.refresh()?;
    }
    if c.status().is_active() {
        // The monitor answers at the very end (a `--rm` container's
        // directory is gone by then, so the code comes from the monitor).
        match client::call(&c, &Request::Wait).await {
            Ok(Event::Exited { code, .. }) => {
                // Done when the monitor is gone too: `wait && rm` must work.
                super::stop::wait_for_monitor_exit(&c).await;
                return Ok(code);
            }
            Ok(_) | Err(ContainerError::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        super::stop::wait_for_monitor_exit(&c).await;
        c = c.refresh()?;
    }
    Ok(c.state.exit_code.unwrap_or(0))
}
