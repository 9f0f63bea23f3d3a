//! A container's state directory, `containers/<id>/`: config.json (what was
//! asked), state.json (what is happening), overlay.qcow2, and the VM's control
//! socket and logs.

use skiff_util::lock::FileLock;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the container name {0:?} is already in use by container {1}; remove it or choose another name")]
    NameInUse(String, String),
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What the container was created from; written once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: String,
    pub tty: bool,
    pub cpus: u32,
    pub memory_mib: u32,
    pub created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// "created", "running", "exited".
    pub status: String,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub updated: u64,
}

pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 64 hex digits from the kernel's random source (the id docker users expect).
pub fn new_id() -> String {
    skiff_util::id::random_hex::<32>()
}

/// A name like docker's: adjective_noun, from the id.
pub fn default_name(id: &str) -> String {
    const A: [&str; 8] = [
        "brave", "calm", "eager", "jolly", "keen", "lucid", "quiet", "swift",
    ];
    const N: [&str; 8] = [
        "otter", "heron", "lynx", "orca", "wren", "ibex", "puffin", "seal",
    ];
    let n = u32::from_str_radix(&id[..id.len().min(6)], 16).unwrap_or(0) as usize;
    format!("{}_{}_{}", A[n % 8], N[(n / 8) % 8], &id[..id.len().min(4)])
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl ContainerDir {
    /// Creates `containers/<id>/` and writes config.json. The name must be
    /// unused; the check and the creation happen under the containers lock.
    pub fn create(containers: &Path, cfg: &ContainerConfig) -> Result<Self, ContainerError> {
        if !valid_name(&cfg.name) {
            return Err(ContainerError::BadName(cfg.name.clone()));
        }
        std::fs::create_dir_all(containers).map_err(io("creating", containers))?;
        let lock_path = containers.join(".lock");
        let _lock = FileLock::exclusive(&lock_path).map_err(io("locking", &lock_path))?;
        for other in list(containers)? {
            if other.name == cfg.name {
                return Err(ContainerError::NameInUse(
                    cfg.name.clone(),
                    other.id[..12].to_owned(),
                ));
            }
        }
        let path = containers.join(&cfg.id);
        std::fs::create_dir(&path).map_err(io("creating", &path))?;
        let dir = ContainerDir {
            id: cfg.id.clone(),
            path,
        };
        dir.write_json("config.json", cfg)?;
        Ok(dir)
    }

    pub fn overlay(&self) -> PathBuf {
        self.path.join("overlay.qcow2")
    }

    pub fn set_state(&self, st: &ContainerState) -> Result<(), ContainerError> {
        self.write_json("state.json", st)
    }

    fn write_json<T: Serialize>(&self, name: &str, v: &T) -> Result<(), ContainerError> {
        let p = self.path.join(name);
        let bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
        skiff_util::atomic::write(&p, &bytes, 0o644).map_err(io("writing", &p))
    }

    pub fn remove(self) -> Result<(), ContainerError> {
        std::fs::remove_dir_all(&self.path).map_err(io("removing", &self.path))
    }
}

/// Configs of all containers (unreadable entries are skipped: a container
/// being created or removed right now).
pub fn list(containers: &Path) -> Result<Vec<ContainerConfig>, ContainerError> {
    let rd = match std::fs::read_dir(containers) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", containers)(e)),
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let Ok(bytes) = std::fs::read(ent.path().join("config.json")) else {
            continue;
        };
        if let Ok(c) = serde_json::from_slice::<ContainerConfig>(&bytes) {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(id: &str, name: &str) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            image_digest: "sha256:00".into(),
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            hostname: "h".into(),
            tty: false,
            cpus: 1,
            memory_mib: 512,
            created: now(),
        }
    }

    #[test]
    fn names_are_unique_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let id1 = new_id();
        assert_eq!(id1.len(), 64);
        let c = ContainerDir::create(d.path(), &cfg(&id1, "web")).unwrap();
        let e = ContainerDir::create(d.path(), &cfg(&new_id(), "web"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("already in use"), "{e}");
        assert!(ContainerDir::create(d.path(), &cfg(&new_id(), "-x")).is_err());
        c.remove().unwrap();
        ContainerDir::create(d.path(), &cfg(&new_id(), "web")).unwrap();
        assert!(valid_name(&default_name(&new_id())));
    }
}
