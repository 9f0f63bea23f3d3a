//! `logs`: the container's log file, followed while its monitor runs.

use super::{monitor_alive, Container, ContainerError, Result};
use crate::logs::{LogRecord, ReadOptions};

/// Calls `out` for each record; with `follow`, until the container stops.
pub fn logs(
    c: &Container,
    opts: &ReadOptions,
    out: &mut dyn FnMut(LogRecord) -> std::io::Result<()>,
) -> Result<()> {
    let dir = c.dir().to_path_buf();
    let mut still_running = || monitor_alive(&dir);
    crate::logs::read(&c.log_path(), opts, &mut still_running, out)
        .map_err(|e| ContainerError::Invalid(format!("reading the logs of {}: {e}", c.name())))
}
