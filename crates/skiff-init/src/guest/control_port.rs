//! Finding and opening the virtio-serial control port.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use skiff_proto::CONTROL_PORT_NAME;

use crate::fd_io::FdIo;

const PORTS: &str = "/sys/class/virtio-ports";

/// The /dev node of the port named [`CONTROL_PORT_NAME`], if it exists yet.
fn find() -> Option<PathBuf> {
    for entry in std::fs::read_dir(PORTS).ok()?.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == CONTROL_PORT_NAME {
            let dev = PathBuf::from("/dev").join(entry.file_name());
            if dev.exists() {
                return Some(dev);
            }
        }
    }
    None
}

/// Waits up to `timeout` for the port (the driver probes asynchronously and
/// devtmpfs creates the node a little later) and opens it.
pub async fn open(timeout: Duration) -> Result<FdIo, String> {
    let deadline = Instant::now() + timeout;
    let path = loop {
        if let Some(p) = find() {
            break p;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no virtio-serial port named {CONTROL_PORT_NAME} under {PORTS}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", path.display()))?;
    crate::debug!("control port {}", path.display());
    FdIo::new(fd, false).map_err(|e| format!("registering {}: {e}", path.display()))
}
