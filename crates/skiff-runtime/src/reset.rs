//! `system reset`: the store back to empty. Every container is killed and
//! removed, every network taken down (bridges and rules included), and the
//! images, base filesystems and caches deleted. The installed guest kernel
//! stays: it is a download, not state.

use crate::container::{self, Containers};
use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("removing container {name}")]
    Container {
        name: String,
        #[source]
        source: container::ContainerError,
    },
    #[error(transparent)]
    List(#[from] container::ContainerError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("removing {path}")]
    Remove {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What went.
#[derive(Debug, Default)]
pub struct Report {
    pub containers: usize,
    pub networks: usize,
}

pub async fn reset(paths: &Paths) -> Result<Report, ResetError> {
    let containers = Containers::new(paths);
    let mut report = Report::default();
    for c in containers.list()? {
        container::remove(&containers, &c, true)
            .await
            .map_err(|source| ResetError::Container {
                name: c.name().to_owned(),
                source,
            })?;
        report.containers += 1;
    }
    report.networks = crate::network::remove::remove_all(paths)?.len();
    let entries = match std::fs::read_dir(paths.root()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(source) => {
            return Err(ResetError::Remove {
                path: paths.root().to_path_buf(),
                source,
            })
        }
    };
    for e in entries.flatten() {
        let path = e.path();
        if path == paths.kernels() {
            continue;
        }
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ResetError::Remove { path, source }),
        }
    }
    Ok(report)
}
