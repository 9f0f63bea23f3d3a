//! A stage's image as it grows: its config (docker's image config JSON,
//! kept as a JSON object so that what the base image had survives), its
//! layers and history; written into the store as config + OCI manifest.

use serde_json::{json, Map, Value};
use skiff_oci::manifest::{self, Manifest};
use skiff_oci::store::{ImageRecord, Store};
use skiff_oci::{Digest, Platform};

use super::BuildError;
use crate::layer::LayerDigests;

/// One layer of the image, as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRef {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

impl From<&LayerDigests> for LayerRef {
    fn from(d: &LayerDigests) -> Self {
        Self {
            media_type: d.media_type.to_owned(),
            digest: d.digest.clone(),
            size: d.size,
            diff_id: d.diff_id.clone(),
        }
    }
}

/// The image of a stage so far.
#[derive(Debug, Clone)]
pub struct ImageState {
    /// The whole config document: architecture, os, config, rootfs, history.
    pub doc: Map<String, Value>,
    pub layers: Vec<LayerRef>,
    /// History entries from here on are this build's.
    own_from: usize,
}

impl ImageState {
    /// `FROM scratch`.
    pub fn scratch(platform: &Platform) -> Self {
        let mut doc = Map::new();
        doc.insert("architecture".into(), json!(platform.architecture));
        doc.insert("os".into(), json!(platform.os));
        if let Some(v) = &platform.variant {
            doc.insert("variant".into(), json!(v));
        }
        doc.insert("config".into(), json!({}));
        Self {
            doc,
            layers: Vec::new(),
            own_from: 0,
        }
    }

    /// `FROM image`: its config and layers (docker media types become OCI's:
    /// the bytes are the same).
    pub fn from_image(store: &Store, rec: &ImageRecord) -> Result<Self, BuildError> {
        let bad = |m: String| BuildError::BaseImage(m);
        let config_bytes = store
            .read_small_blob(&rec.config)
            .map_err(|e| bad(format!("reading the config of {}: {e}", rec.digest)))?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("the config of {}: {e}", rec.digest)))?;
        let Value::Object(full) = config else {
            return Err(bad(format!(
                "the config of {} is not an object",
                rec.digest
            )));
        };
        let manifest_bytes = store
            .read_small_blob(&rec.digest)
            .map_err(|e| bad(format!("reading manifest {}: {e}", rec.digest)))?;
        let Manifest::Image(m) = Manifest::parse(&manifest_bytes, None)
            .map_err(|e| bad(format!("manifest {}: {e}", rec.digest)))?
        else {
            return Err(bad(format!("{} is not an image manifest", rec.digest)));
        };
        let diff_ids: Vec<Digest> = full
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        let descs = m.inner.layers();
        if diff_ids.len() != descs.len() {
            return Err(bad(format!(
                "image {} has {} layers but its config lists {} diff_ids",
                rec.digest,
                descs.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(descs.len());
        for (d, diff_id) in descs.iter().zip(diff_ids) {
            let digest = Digest::try_from(d.digest())
                .map_err(|e| bad(format!("a layer of {}: {e}", rec.digest)))?;
            layers.push(LayerRef {
                media_type: oci_layer_type(d.media_type().as_ref()).to_owned(),
                digest,
                size: d.size(),
                diff_id,
            });
        }
        // What the builder writes anew, and docker's legacy fields, go.
        let mut doc = Map::new();
        for k in [
            "architecture",
            "os",
            "os.version",
            "variant",
            "config",
            "history",
        ] {
            if let Some(v) = full.get(k) {
                doc.insert(k.into(), v.clone());
            }
        }
        if !doc.get("config").is_some_and(Value::is_object) {
            doc.insert("config".into(), json!({}));
        }
        let own_from = doc
            .get("history")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        Ok(Self {
            doc,
            layers,
            own_from,
        })
    }

    /// The process part of the config (`Env`, `Cmd`, …).
    pub fn config(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.doc
            .get("config")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    pub fn config_mut(&mut self) -> &mut Map<String, Value> {
        object_in(&mut self.doc, "config")
    }

    /// An object of the config (`Labels`, `ExposedPorts`, `Volumes`), made
    /// if missing.
    pub fn config_object(&mut self, key: &str) -> &mut Map<String, Value> {
        object_in(self.config_mut(), key)
    }

    /// One variable of `Env`, without building the whole list.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.config()
            .get("Env")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|e| match e.split_once('=') {
                Some((k, v)) if k == name => Some(v.to_owned()),
                None if e == name => Some(String::new()),
                _ => None,
            })
    }

    /// `Env` as (key, value) pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.config()
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|e| match e.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (e.to_owned(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((key.to_owned(), value.to_owned())),
        }
        let list: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!(format!("{k}={v}")))
            .collect();
        self.config_mut().insert("Env".into(), Value::Array(list));
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        self.config().get(key).and_then(Value::as_str)
    }

    pub fn working_dir(&self) -> String {
        self.string("WorkingDir")
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned()
    }

    /// One history entry (and the layer, if the step made one).
    pub fn push(&mut self, created: &str, created_by: &str, layer: Option<LayerRef>) {
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        h.insert("created_by".into(), json!(created_by));
        h.insert("comment".into(), json!("skiff build"));
        if layer.is_none() {
            h.insert("empty_layer".into(), json!(true));
        }
        let history = self.doc.entry("history").or_insert_with(|| json!([]));
        if !history.is_array() {
            *history = json!([]);
        }
        if let Value::Array(a) = history {
            a.push(Value::Object(h));
        }
        if let Some(l) = layer {
            self.layers.push(l);
        }
    }

    /// Dates this build's history entries `created`.
    pub fn date_history(&mut self, created: &str) {
        if let Some(Value::Array(h)) = self.doc.get_mut("history") {
            for e in h.iter_mut().skip(self.own_from) {
                if let Value::Object(m) = e {
                    m.insert("created".into(), json!(created));
                }
            }
        }
    }

    /// The config blob: `doc` with `created` and `rootfs` filled in.
    pub fn config_blob(&self, created: &str) -> Vec<u8> {
        let mut doc = self.doc.clone();
        doc.insert("created".into(), json!(created));
        let diff_ids: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!(l.diff_id.to_string()))
            .collect();
        doc.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        // serde_json's map is ordered by key: the same state gives the same bytes.
        serde_json::to_vec(&Value::Object(doc)).expect("JSON values serialize")
    }

    /// Writes config and manifest into the store; the record is not named
    /// (the caller records it under its tags, or uses it for a RUN step).
    pub fn write(&self, store: &Store, created: &str) -> Result<ImageRecord, BuildError> {
        let config = self.config_blob(created);
        let config_digest = store.put_bytes(&config, None).map_err(BuildError::Store)?;
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).expect("JSON values serialize");
        let digest = store.put_bytes(&bytes, None).map_err(BuildError::Store)?;
        store
            .make_record(None, &digest, None, None)
            .map_err(BuildError::Store)
    }
}

/// `map[key]` as an object, made (or replaced) if it is not one.
fn object_in<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("made an object above")
}

/// docker's layer media types as OCI's (the same bytes).
fn oci_layer_type(t: &str) -> &str {
    match t {
        manifest::DOCKER_LAYER_GZIP => manifest::OCI_LAYER_GZIP,
        manifest::DOCKER_LAYER_TAR => manifest::OCI_LAYER_TAR,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_set_in_place_and_appended() {
        let mut s = ImageState::scratch(&Platform::host());
        s.set_env("A", "1");
        s.set_env("B", "2");
        s.set_env("A", "3");
        assert_eq!(
            s.env(),
            [("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn config_blob_is_stable_and_lists_diff_ids() {
        let mut s = ImageState::scratch(&Platform::host());
        let d = Digest::of(b"x");
        s.push(
            "1970-01-01T00:00:00Z",
            "COPY x /x",
            Some(LayerRef {
                media_type: manifest::OCI_LAYER_GZIP.into(),
                digest: d.clone(),
                size: 1,
                diff_id: d.clone(),
            }),
        );
        s.push("1970-01-01T00:00:00Z", "ENV A=1", None);
        let a = s.config_blob("1970-01-01T00:00:00Z");
        assert_eq!(a, s.clone().config_blob("1970-01-01T00:00:00Z"));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][0], json!(d.to_string()));
        assert_eq!(v["history"][1]["empty_layer"], json!(true));
        assert!(v["history"][0].get("empty_layer").is_none());
    }
}
