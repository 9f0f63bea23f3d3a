//! The layer cache: `build-cache/<key>.json` says which layer a step made
//! (or that it made none). The key is a hash of the step's parent key, the
//! instruction with its variables expanded, the state it runs in, and the
//! content of its inputs, so an unchanged step is found again and a changed
//! input misses from that step on.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use skiff_oci::Store;

use super::image::LayerRef;

/// A step's cache key, chained from its parent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(pub String);

impl Key {
    /// The key of a stage's start: the base image (its manifest digest) or
    /// scratch on a platform.
    pub fn base(what: &str) -> Self {
        Self::hash(&["base", what])
    }

    /// The key of a step after `self`: `parts` is everything the step's
    /// outcome depends on.
    pub fn then(&self, parts: &[&str]) -> Self {
        let mut all = vec![self.0.as_str()];
        all.extend_from_slice(parts);
        Self::hash(&all)
    }

    fn hash(parts: &[&str]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            // Length-prefixed: ("ab","c") and ("a","bc") differ.
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        Self(hex::encode(h.finalize()))
    }

    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    /// None: the step changed no file (a WORKDIR that existed).
    layer: Option<LayerRef>,
    /// When the step ran (RFC 3339): a rebuild from the cache keeps it, so
    /// that an unchanged rebuild gives the same image.
    #[serde(default)]
    created: Option<String>,
}

/// A step found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub layer: Option<LayerRef>,
    pub created: Option<String>,
}

/// The cache of one store.
pub struct Cache {
    dir: PathBuf,
    store: Store,
}

impl Cache {
    pub fn new(store: &Store) -> Self {
        Self {
            dir: store.root().join("build-cache"),
            store: store.clone(),
        }
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.0))
    }

    /// What the step made before, if its layer is still in the store (an
    /// `image rm` may have swept it: then it is a miss). `Some(None)`: it
    /// made no layer.
    pub fn get(&self, key: &Key) -> Option<Hit> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if let Some(l) = &e.layer {
            if self.store.blob_size(&l.digest) != Some(l.size) {
                return None;
            }
        }
        Some(Hit {
            layer: e.layer,
            created: e.created,
        })
    }

    /// Records a step; a failure to record costs a later rebuild only.
    pub fn put(&self, key: &Key, layer: Option<&LayerRef>, created: &str) {
        let e = Entry {
            layer: layer.cloned(),
            created: Some(created.to_owned()),
        };
        let json = serde_json::to_vec(&e).expect("a cache entry serializes");
        if let Err(e) = std::fs::create_dir_all(&self.dir)
            .and_then(|()| skiff_util::atomic::write(&self.path(key), &json, 0o644))
        {
            tracing::warn!("recording a build step in {}: {e}", self.dir.display());
        }
    }

    /// Removes every entry; returns how many there were.
    pub fn prune(&self) -> std::io::Result<usize> {
        prune_dir(&self.dir)
    }
}

fn prune_dir(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_separate_parts() {
        let base = Key::base("scratch linux/amd64");
        let a = base.then(&["RUN", "ab", "c"]);
        assert_ne!(a, base.then(&["RUN", "a", "bc"]));
        assert_eq!(
            a,
            Key::base("scratch linux/amd64").then(&["RUN", "ab", "c"])
        );
        assert_ne!(a.then(&["x"]), base.then(&["x"]));
    }

    #[test]
    fn entries_need_their_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = Cache::new(&store);
        let k = Key::base("x");
        assert!(cache.get(&k).is_none());
        cache.put(&k, None, "t0");
        assert_eq!(cache.get(&k).unwrap().layer, None);
        assert_eq!(cache.get(&k).unwrap().created.as_deref(), Some("t0"));
        let digest = store.put_bytes(b"layer", None).unwrap();
        let l = LayerRef {
            media_type: "t".into(),
            digest: digest.clone(),
            size: 5,
            diff_id: digest,
        };
        let k2 = k.then(&["COPY"]);
        cache.put(&k2, Some(&l), "t1");
        assert_eq!(cache.get(&k2).unwrap().layer, Some(l.clone()));
        std::fs::remove_file(store.blob_path(&l.digest)).unwrap();
        assert!(cache.get(&k2).is_none(), "a swept layer is a miss");
        assert_eq!(cache.prune().unwrap(), 2);
    }
}
