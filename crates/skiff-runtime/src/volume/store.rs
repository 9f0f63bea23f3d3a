//! Creating, finding, claiming and removing volumes (layout in mod.rs).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skiff_util::lock::FileLock;

use super::{dir, valid_name, Result, VolumeError};
use crate::Paths;

/// The size of a volume made without `--size`: sparse, so it costs what
/// is written, not this.
pub const DEFAULT_SIZE: u64 = 64 << 30;
const CONFIG: &str = "volume.json";
const DISK: &str = "disk.ext4";
const USE_LOCK: &str = "use.lock";
const USER: &str = "user";

/// `volumes/<name>/volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Bytes the filesystem can hold.
    pub size: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Volume {
    /// The ext4 image.
    pub fn disk(&self) -> PathBuf {
        self.dir.join(DISK)
    }

    /// Bytes the sparse image takes on the host's disk.
    pub fn disk_usage(&self) -> u64 {
        std::fs::metadata(self.disk()).map_or(0, |m| m.blocks() * 512)
    }

    /// The running container that has it mounted, if any.
    pub fn user(&self) -> Option<String> {
        match skiff_util::lock::is_held(&self.dir.join(USE_LOCK)) {
            Ok(true) => Some(
                std::fs::read_to_string(self.dir.join(USER))
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

fn names_lock(paths: &Paths) -> Result<FileLock> {
    let d = dir(paths);
    std::fs::create_dir_all(&d).map_err(io("creating", &d))?;
    let p = d.join(".lock");
    FileLock::exclusive(&p).map_err(io("locking", &p))
}

/// The volume called `name`.
pub fn load(paths: &Paths, name: &str) -> Result<Volume> {
    if !valid_name(name) {
        return Err(VolumeError::BadName(name.to_owned()));
    }
    let d = dir(paths).join(name);
    let text = match std::fs::read(d.join(CONFIG)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VolumeError::NotFound(name.to_owned()))
        }
        Err(e) => return Err(io("reading", &d.join(CONFIG))(e)),
    };
    let mut v: Volume = serde_json::from_slice(&text).map_err(|e| VolumeError::Damaged {
        name: name.to_owned(),
        what: CONFIG,
        why: e.to_string(),
    })?;
    if v.name != name {
        return Err(VolumeError::Damaged {
            name: name.to_owned(),
            what: CONFIG,
            why: format!("it names {:?}", v.name),
        });
    }
    v.dir = d;
    Ok(v)
}

/// Every volume, by name. Leftovers of an interrupted create or remove
/// (`.tmp-*`) are removed on the way.
pub fn list(paths: &Paths) -> Result<Vec<Volume>> {
    list_cleaning(paths, true)
}

/// `clean`: whether to take the lock (not held by the caller) and remove
/// leftovers.
fn list_cleaning(paths: &Paths, clean: bool) -> Result<Vec<Volume>> {
    let d = dir(paths);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", &d)(e)),
    };
    let mut out = Vec::new();
    let mut leftovers = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            leftovers.push(entry.path());
        } else if valid_name(&name) {
            match load(paths, &name) {
                Ok(v) => out.push(v),
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if clean && !leftovers.is_empty() {
        if let Ok(_lock) = names_lock(paths) {
            for l in leftovers {
                // Still there under the lock: nobody is making it.
                let _ = std::fs::remove_dir_all(l);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The volume `name`, made (empty, `size` bytes) if there is none; true when
/// it was made now. As docker, naming a volume that does not exist creates it.
pub fn ensure(
    paths: &Paths,
    name: &str,
    size: u64,
    labels: &BTreeMap<String, String>,
) -> Result<(Volume, bool)> {
    let _lock = names_lock(paths)?;
    ensure_locked(paths, name, size, labels)
}

fn ensure_locked(
    paths: &Paths,
    name: &str,
    size: u64,
    labels: &BTreeMap<String, String>,
) -> Result<(Volume, bool)> {
    match load(paths, name) {
        Ok(v) => return Ok((v, false)),
        Err(VolumeError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let tmp = dir(paths).join(format!(".tmp-{}", skiff_util::id::random_hex::<8>()));
    std::fs::create_dir(&tmp).map_err(io("creating", &tmp))?;
    let made = (|| {
        let disk = tmp.join(DISK);
        // A volume's inodes are for what will be written: one per 16 KiB.
        crate::rootfs::write_empty(&disk, size, name).map_err(|source| VolumeError::Mkfs {
            name: name.to_owned(),
            source,
        })?;
        let v = Volume {
            name: name.to_owned(),
            created: crate::time::now_rfc3339(),
            size,
            labels: labels.clone(),
            dir: PathBuf::new(),
        };
        let json = serde_json::to_vec_pretty(&v).expect("a volume serializes");
        skiff_util::atomic::write(&tmp.join(CONFIG), &json, 0o644)
            .map_err(io("writing", &tmp.join(CONFIG)))?;
        let dest = dir(paths).join(name);
        std::fs::rename(&tmp, &dest).map_err(io("creating", &dest))?;
        Ok(Volume { dir: dest, ..v })
    })();
    match made {
        Ok(v) => Ok((v, true)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// A volume held for one running container: while this lives no other
/// container can mount it and it cannot be removed.
pub struct Claim {
    pub volume: Volume,
    _lock: FileLock,
}

/// Claims `name` (made if missing) for `container_id`.
pub fn claim(paths: &Paths, name: &str, container_id: &str) -> Result<Claim> {
    let _names = names_lock(paths)?;
    let (volume, _) = ensure_locked(paths, name, DEFAULT_SIZE, &BTreeMap::new())?;
    let lock_path = volume.dir.join(USE_LOCK);
    match FileLock::try_exclusive(&lock_path).map_err(io("locking", &lock_path))? {
        Some(lock) => {
            let user = volume.dir.join(USER);
            std::fs::write(&user, container_id).map_err(io("writing", &user))?;
            Ok(Claim {
                volume,
                _lock: lock,
            })
        }
        None => Err(VolumeError::Busy {
            name: name.to_owned(),
            container: volume.user().unwrap_or_default(),
        }),
    }
}

/// Containers (short ids) whose configuration names volume `name`.
fn users(paths: &Paths, name: &str) -> Result<Vec<String>> {
    let containers = crate::container::Containers::new(paths)
        .list()
        .map_err(|e| VolumeError::Containers(e.to_string()))?;
    Ok(containers
        .iter()
        .filter(|c| c.config.volumes.iter().any(|v| v.name == name))
        .map(|c| c.short_id().to_owned())
        .collect())
}

/// Removes `name`; refused while any container names it.
pub fn remove(paths: &Paths, name: &str) -> Result<()> {
    let _names = names_lock(paths)?;
    let v = load(paths, name)?;
    remove_locked(paths, &v)
}

fn remove_locked(paths: &Paths, v: &Volume) -> Result<()> {
    if let Some(c) = users(paths, &v.name)?.into_iter().next() {
        return Err(VolumeError::InUse {
            name: v.name.clone(),
            container: c,
        });
    }
    let lock_path = v.dir.join(USE_LOCK);
    let Some(_held) = FileLock::try_exclusive(&lock_path).map_err(io("locking", &lock_path))?
    else {
        return Err(VolumeError::Busy {
            name: v.name.clone(),
            container: v.user().unwrap_or_default(),
        });
    };
    // Renamed first: a removal cut short leaves a .tmp- leftover, never a
    // half-removed volume.
    let tmp = dir(paths).join(format!(".tmp-rm-{}", skiff_util::id::random_hex::<8>()));
    std::fs::rename(&v.dir, &tmp).map_err(io("removing", &v.dir))?;
    std::fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))
}

/// Removes every volume no container names; returns them (with the bytes
/// each took on the host).
pub fn prune(paths: &Paths) -> Result<Vec<(String, u64)>> {
    let _names = names_lock(paths)?;
    let mut removed = Vec::new();
    for v in list_cleaning(paths, false)? {
        let bytes = v.disk_usage();
        match remove_locked(paths, &v) {
            Ok(()) => removed.push((v.name.clone(), bytes)),
            Err(VolumeError::InUse { .. } | VolumeError::Busy { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_made_listed_claimed_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let labels = BTreeMap::from([("app".to_owned(), "db".to_owned())]);
        let (v, made) = ensure(&paths, "pgdata", 1 << 30, &labels).unwrap();
        assert!(made);
        let (again, made) = ensure(&paths, "pgdata", 2 << 30, &BTreeMap::new()).unwrap();
        assert!(!made);
        assert_eq!(again, v);
        assert_eq!(std::fs::metadata(v.disk()).unwrap().len(), 1 << 30);
        assert!(v.disk_usage() < 8 << 20, "sparse: {}", v.disk_usage());
        let fsck = std::process::Command::new("e2fsck")
            .args(["-fn"])
            .arg(v.disk())
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{fsck:?}");

        let c = claim(&paths, "pgdata", "c1").unwrap();
        assert_eq!(list(&paths).unwrap()[0].user().as_deref(), Some("c1"));
        let e = claim(&paths, "pgdata", "c2").err().unwrap().to_string();
        assert!(e.contains("running container c1"), "{e}");
        let e = remove(&paths, "pgdata").unwrap_err().to_string();
        assert!(e.contains("c1"), "{e}");
        assert!(prune(&paths).unwrap().is_empty());
        drop(c);
        assert_eq!(list(&paths).unwrap()[0].user(), None);

        // A leftover of an interrupted create goes with the next list.
        std::fs::create_dir(dir(&paths).join(".tmp-dead")).unwrap();
        assert_eq!(list(&paths).unwrap().len(), 1);
        assert!(!dir(&paths).join(".tmp-dead").exists());

        ensure(&paths, "other", 1 << 30, &BTreeMap::new()).unwrap();
        remove(&paths, "pgdata").unwrap();
        assert!(matches!(
            load(&paths, "pgdata"),
            Err(VolumeError::NotFound(_))
        ));
        let pruned = prune(&paths).unwrap();
        assert_eq!(
            pruned.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["other"]
        );
        assert!(list(&paths).unwrap().is_empty());
        assert!(matches!(load(&paths, "a/b"), Err(VolumeError::BadName(_))));
    }
}
