//! Manifests and indexes as registries serve them: OCI and Docker schema 2.
//! Raw bytes are kept by callers (their digest is the identity); this module
//! only classifies and reads them.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::platform::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// What we send in `Accept` for manifests: every kind we can use.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported Docker schema 1 manifest (re-push the image with a current tool)")]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    UnknownMediaType(String),
    #[error("response is HTML, not a manifest (is this really a registry?)")]
    Html,
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("{0} is an index, not an image manifest")]
    NotAnImage(Digest),
    #[error("unsupported layer media type {0:?}")]
    UnknownLayerType(String),
    #[error("bad digest in manifest: {0}")]
    Digest(#[from] crate::digest::DigestError),
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // parsed once per pull; boxing buys nothing
pub enum Manifest {
    Image(ImageManifestDoc),
    Index(IndexDoc),
}

#[derive(Debug, Clone)]
pub struct ImageManifestDoc {
    pub media_type: String,
    pub inner: ImageManifest,
}

#[derive(Debug, Clone)]
pub struct IndexDoc {
    pub media_type: String,
    pub inner: ImageIndex,
}

impl Manifest {
    /// Classifies `bytes` using the server's `Content-Type` when given and the
    /// document's own `mediaType`, refusing schema 1 and unknown kinds.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let ct = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase());
        if ct.as_deref() == Some("text/html") || looks_like_html(bytes) {
            return Err(ManifestError::Html);
        }
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Malformed(format!("not JSON: {e}")))?;
        let doc_type = value
            .get("mediaType")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(ManifestError::Schema1);
        }
        // The document's own mediaType is authoritative; else the header; else the shape.
        let kind = doc_type
            .clone()
            .or(ct.filter(|c| c != "application/json" && c != "application/octet-stream"))
            .unwrap_or_else(|| {
                if value.get("manifests").is_some() {
                    OCI_INDEX.to_owned()
                } else {
                    OCI_MANIFEST.to_owned()
                }
            });
        match kind.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let inner: ImageManifest = serde_json::from_value(value)
                    .map_err(|e| ManifestError::Malformed(e.to_string()))?;
                let doc = ImageManifestDoc {
                    media_type: kind,
                    inner,
                };
                doc.config_digest()?;
                doc.layer_digests()?;
                Ok(Manifest::Image(doc))
            }
            OCI_INDEX | DOCKER_LIST => {
                let inner: ImageIndex = serde_json::from_value(value)
                    .map_err(|e| ManifestError::Malformed(e.to_string()))?;
                for m in inner.manifests() {
                    Digest::try_from(m.digest())?;
                }
                Ok(Manifest::Index(IndexDoc {
                    media_type: kind,
                    inner,
                }))
            }
            DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ManifestError::Schema1),
            other => Err(ManifestError::UnknownMediaType(other.to_owned())),
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => &m.media_type,
            Manifest::Index(i) => &i.media_type,
        }
    }
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(256)];
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    text.starts_with("<!doctype html") || text.starts_with("<html") || text.starts_with("<head")
}

impl ImageManifestDoc {
    pub fn config(&self) -> &Descriptor {
        self.inner.config()
    }

    pub fn config_digest(&self) -> Result<Digest, ManifestError> {
        Ok(Digest::try_from(self.inner.config().digest())?)
    }

    pub fn layers(&self) -> &[Descriptor] {
        self.inner.layers()
    }

    pub fn layer_digests(&self) -> Result<Vec<Digest>, ManifestError> {
        self.inner
            .layers()
            .iter()
            .map(|l| Digest::try_from(l.digest()).map_err(Into::into))
            .collect()
    }

    /// Config then layers as (digest, size), each digest once.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64)>, ManifestError> {
        let mut out = vec![(self.config_digest()?, self.inner.config().size())];
        for (l, d) in self.inner.layers().iter().zip(self.layer_digests()?) {
            if !out.iter().any(|(x, _)| *x == d) {
                out.push((d, l.size()));
            }
        }
        Ok(out)
    }

    /// Config plus layers, as stored (compressed).
    pub fn total_size(&self) -> u64 {
        self.inner.config().size() + self.inner.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

impl IndexDoc {
    /// Image manifests in this index with their platforms (entries without a
    /// platform, such as attestations, are skipped).
    pub fn entries(&self) -> Vec<(Platform, &Descriptor)> {
        self.inner
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref().map(|p| (Platform::from_oci(p), d)))
            .filter(|(p, _)| p.os != "unknown")
            .collect()
    }
}

/// Layer compression named by a media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn layer_compression(media_type: &str) -> Result<Compression, ManifestError> {
    match media_type {
        OCI_LAYER_TAR
        | DOCKER_LAYER_TAR
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Ok(Compression::Zstd)
        }
        other => Err(ManifestError::UnknownLayerType(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
      "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#;

    #[test]
    fn classifies_documents() {
        let m = Manifest::parse(
            IMG.as_bytes(),
            Some("application/vnd.docker.distribution.manifest.v2+json"),
        )
        .unwrap();
        let Manifest::Image(img) = m else { panic!() };
        assert_eq!(img.total_size(), 10);
        let idx = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
          "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
        let Manifest::Index(i) = Manifest::parse(idx.as_bytes(), Some(OCI_INDEX)).unwrap() else {
            panic!()
        };
        assert_eq!(i.entries()[0].0.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            Manifest::parse(b"<!DOCTYPE html><p>hi", None),
            Err(ManifestError::Html)
        ));
        assert!(matches!(
            Manifest::parse(b"{}", Some("text/html; charset=utf-8")),
            Err(ManifestError::Html)
        ));
        assert!(matches!(
            Manifest::parse(
                br#"{"schemaVersion":2,"mediaType":"application/x-weird"}"#,
                None
            ),
            Err(ManifestError::UnknownMediaType(_))
        ));
        assert!(matches!(
            Manifest::parse(b"garbage", None),
            Err(ManifestError::Malformed(_))
        ));
        let bad_digest = IMG.replace(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}]",
            "sha512:abcd\"}]",
        );
        assert!(Manifest::parse(bad_digest.as_bytes(), None).is_err());
    }
}
