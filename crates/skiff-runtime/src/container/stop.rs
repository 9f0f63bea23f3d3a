//! `stop`: the stop signal, a grace period, SIGKILL; then the guest syncs and
//! powers off, and the monitor ends. `restart` is a stop and a start.

use super::start::{start, MonitorCommand, StartOptions, Started};
use super::{Container, Containers, Result, MONITOR_LOCK};
use crate::monitor::client;
use crate::monitor::protocol::Request;

/// Stops `c` and returns once nothing of it runs; `false` if it was not
/// running (docker treats that as done, too). `timeout`: seconds before
/// SIGKILL, else the container's own (`--stop-timeout`, default 10).
pub async fn stop(c: &Container, timeout: Option<u32>) -> Result<bool> {
    if !c.status().is_active() {
        return Ok(false);
    }
    let timeout_secs = timeout.unwrap_or(c.config.stop_timeout);
    match client::request(c, &Request::Stop { timeout_secs }).await {
        Ok((mut r, _w)) => {
            // The monitor answers once the container is down; the lock says
            // when it has gone entirely.
            let _ = r.next().await;
        }
        // Gone between the look and the call: nothing left to stop.
        Err(super::ContainerError::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    wait_for_monitor_exit(c).await;
    Ok(true)
}

/// Blocks until the container's monitor has ended (its lock is free).
pub(crate) async fn wait_for_monitor_exit(c: &Container) {
    let lock = c.dir().join(MONITOR_LOCK);
    let _ = tokio::task::spawn_blocking(move || {
        if lock.exists() {
            let _ = skiff_util::lock::FileLock::shared(&lock);
        }
    })
    .await;
}

/// Stops `c` if it runs, then starts it again (detached).
pub async fn restart(
    containers: &Containers,
    c: &Container,
    timeout: Option<u32>,
    monitor: &MonitorCommand,
) -> Result<Started> {
    stop(c, timeout).await?;
    let c = c.refresh()?;
    start(
        containers,
        &c,
        StartOptions::default(),
        monitor,
        &mut |_| {},
    )
}
