//! Named volumes: one sparse ext4 image each, written by skiff-ext4 and
//! attached to the VM of the container that mounts it as a virtio-blk disk.
//!
//! ```text
//! volumes/<name>/volume.json   what `volume create` decided
//!                disk.ext4     the filesystem (sparse: free space costs nothing)
//!                use.lock      held by the monitor of the one running container that mounts it
//!                user          that container's id (for the "in use" message)
//! volumes/.lock                held while volumes are created or removed
//! volumes/.tmp-*               a volume being made or removed (cleaned by `ls`)
//! ```
//!
//! A block device, not a shared directory: under TCG and KVM alike the
//! guest's ext4 on virtio-blk writes and reads as fast as the container's
//! own root disk, and it needs neither virtiofsd nor shared guest memory.
//! The price: an ext4 can be mounted by one VM at a time, so a volume is
//! used by one running container at a time.

mod store;

pub use store::{claim, ensure, list, load, prune, remove, Claim, Volume, DEFAULT_SIZE};

use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit, at least 2 characters")]
    BadName(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by container {container} (remove the container first)")]
    InUse { name: String, container: String },
    #[error("volume {name} is mounted by running container {container}; a volume is used by one running container at a time")]
    Busy { name: String, container: String },
    #[error("writing the filesystem of volume {name}")]
    Mkfs {
        name: String,
        #[source]
        source: crate::rootfs::RootfsError,
    },
    #[error("volume {name}: {what} is damaged: {why}")]
    Damaged {
        name: String,
        what: &'static str,
        why: String,
    },
    #[error("listing containers: {0}")]
    Containers(String),
}

pub type Result<T> = std::result::Result<T, VolumeError>;

/// docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn dir(paths: &Paths) -> std::path::PathBuf {
    paths.root().join("volumes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        for ok in ["pgdata", "a1", "x_y.z-w", "00"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-x", ".x", "a/b", "a b", "../x", &"v".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
