//! `rm` and `container prune`: a container's directory goes, overlay and log
//! with it. A running one only with force (it is killed first).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use skiff_util::lock::FileLock;

use super::{io, monitor_alive, Container, ContainerError, Containers, Result, START_LOCK};

/// Removes `c`; `force` kills it first if it runs.
pub async fn remove(containers: &Containers, c: &Container, force: bool) -> Result<()> {
    if c.status().is_active() {
        if !force {
            return Err(ContainerError::Running(c.name().to_owned()));
        }
        super::stop::stop(c, Some(0)).await?;
    }
    remove_dir(containers, c)
}

/// Removes the directory of a container that does not run (checked again
/// under its start lock, so that no start races with it).
pub(crate) fn remove_dir(_containers: &Containers, c: &Container) -> Result<()> {
    let dir = c.dir();
    let lock_path = dir.join(START_LOCK);
    let _lock = match FileLock::exclusive(&lock_path) {
        Ok(l) => l,
        // Removed meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("locking", &lock_path)(e)),
    };
    if !dir.exists() {
        return Ok(());
    }
    // A monitor that recorded the exit is finishing (closing connections,
    // removing a --rm container): give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while monitor_alive(dir) {
        let exited = Container::load(dir)
            .map(|c| c.status() == super::state::ContainerStatus::Exited)
            .unwrap_or(false);
        if !exited || std::time::Instant::now() > deadline {
            return Err(ContainerError::Running(c.name().to_owned()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if !dir.exists() {
        return Ok(());
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", dir)(e)),
    }
}

/// Disk space a directory's files take (allocated, not apparent: overlays
/// are sparse).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| if m.is_dir() { 0 } else { m.blocks() * 512 })
        .sum()
}

/// Removes every container that does not run; (id, bytes freed) of each.
pub fn prune(containers: &Containers) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for c in containers.list()? {
        if !c.status().can_remove() {
            continue;
        }
        let bytes = disk_usage(c.dir());
        match remove_dir(containers, &c) {
            Ok(()) => out.push((c.id().to_owned(), bytes)),
            // Started meanwhile: it stays.
            Err(ContainerError::Running(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
