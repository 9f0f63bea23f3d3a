//! `pull`: resolve a reference (search registries, mirrors), choose the
//! platform, download missing blobs concurrently, then name the image.

use std::sync::Arc;

use crate::client::{RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::{ParsedReference, Reference};
use crate::registries::Endpoint;
use crate::store::{ImageRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry {0} is blocked by registries.conf")]
    Blocked(String),
    #[error("no image for platform {wanted} (the index has: {available})")]
    NoPlatform { wanted: Platform, available: String },
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("{what}: {message}")]
    Other { what: String, message: String },
}

pub struct PullOptions {
    pub platform: Option<Platform>,
    /// Blobs downloaded at once.
    pub concurrency: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: None,
            concurrency: 4,
        }
    }
}

pub struct Pulled {
    /// The reference as it resolved (the registry that served it).
    pub reference: Reference,
    pub record: ImageRecord,
    /// Blobs transferred (0 on a re-pull of an unchanged image).
    pub downloaded: usize,
}

/// Pulls `parsed` into `store`. Nothing is named unless every blob arrived
/// and verified; blobs that did arrive stay for the next attempt.
pub async fn pull(
    client: &RegistryClient,
    store: &Store,
    parsed: &ParsedReference,
    opts: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled, PullError> {
    let candidates: Vec<Reference> = if parsed.qualified {
        vec![parsed.reference.clone()]
    } else {
        client
            .registries()
            .search_registries()
            .iter()
            .map(|r| parsed.reference.with_registry(r))
            .collect()
    };
    let mut last_err = None;
    for (i, reference) in candidates.iter().enumerate() {
        if client.registries().is_blocked(reference) {
            last_err = Some(PullError::Blocked(reference.registry().to_owned()));
            continue;
        }
        let endpoints = client.registries().pull_endpoints(reference);
        for (j, ep) in endpoints.iter().enumerate() {
            let last = i + 1 == candidates.len() && j + 1 == endpoints.len();
            match pull_from(client, store, reference, ep, opts, progress.clone()).await {
                Ok(p) => return Ok(p),
                // Only "not here" moves on; a corrupt blob or a full disk stops.
                Err(PullError::Registry(e))
                    if !last
                        && (ep.mirror
                            || e.is_not_found_or_auth()
                            || matches!(e, RegistryError::Connect { .. })) =>
                {
                    tracing::debug!("{reference} via {}: {e}; trying next", ep.host);
                    last_err = Some(PullError::Registry(e));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(last_err.unwrap_or_else(|| PullError::Other {
        what: parsed.reference.to_string(),
        message: "no registry to pull from".into(),
    }))
}

async fn pull_from(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    ep: &Endpoint,
    opts: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled, PullError> {
    let registry = reference.registry();
    let top_ref = reference.manifest_reference();
    // Held for the whole pull: prune waits rather than deleting our blobs.
    let _writer = store.writer_lock()?;

    // A digest reference whose manifest we already hold needs no request.
    let (top_bytes, top_ct, top_digest) = match reference.digest().filter(|d| store.has_blob(d)) {
        Some(d) => (store.read_small_blob(d)?, None, d.clone()),
        None => client.fetch_manifest(ep, registry, &top_ref).await?,
    };
    let top = Manifest::parse(&top_bytes, top_ct.as_deref())?;
    let (index, manifest_digest, manifest_bytes, image) = match top {
        Manifest::Image(img) => (None, top_digest.clone(), top_bytes.clone(), img),
        Manifest::Index(idx) => {
            let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
            let entries = idx.entries();
            let Some(desc) = wanted.select(&entries) else {
                let available = if entries.is_empty() {
                    "no platforms".to_owned()
                } else {
                    entries
                        .iter()
                        .map(|(p, _)| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(PullError::NoPlatform { wanted, available });
            };
            let d =
                Digest::try_from(desc.digest()).map_err(crate::manifest::ManifestError::from)?;
            let bytes = if store.has_blob(&d) {
                store.read_small_blob(&d)?
            } else {
                client.fetch_manifest(ep, registry, &d.to_string()).await?.0
            };
            match Manifest::parse(&bytes, None)? {
                Manifest::Image(img) => {
                    (Some((top_digest.clone(), top_bytes.clone())), d, bytes, img)
                }
                Manifest::Index(_) => {
                    return Err(PullError::Other {
                        what: format!("{reference}"),
                        message: "nested image indexes are not supported".into(),
                    })
                }
            }
        }
    };
    // Config and layers, skipping what the store has.
    let config = image.config_digest()?;
    for l in image.layers() {
        crate::manifest::layer_compression(l.media_type().as_ref())?;
    }
    let blobs = image.blobs()?;
    let mut missing: Vec<(Digest, u64)> = blobs
        .iter()
        .filter(|(d, _)| !store.has_blob(d))
        .cloned()
        .collect();
    for (d, _) in blobs.iter().filter(|(d, _)| store.has_blob(d)) {
        progress.finish(d, true);
    }
    let mut downloaded = 0;
    if let (Some(p), None) = (&opts.platform, &index) {
        // A single-platform image: check its config before fetching layers.
        let (first, rest): (Vec<_>, Vec<_>) = missing.into_iter().partition(|(d, _)| *d == config);
        downloaded +=
            download_all(client, store, ep, registry, &first, 1, progress.clone()).await?;
        check_config_platform(store, &config, p, reference)?;
        missing = rest;
    }
    downloaded += download_all(
        client,
        store,
        ep,
        registry,
        &missing,
        opts.concurrency.max(1),
        progress.clone(),
    )
    .await?;

    store.put_bytes(&manifest_bytes, Some(&manifest_digest))?;
    let index_digest = match &index {
        Some((d, bytes)) => Some(store.put_bytes(bytes, Some(d))?),
        None => None,
    };
    // Record under the tag; a digest-only reference stays unnamed (dangling)
    // unless it also had a tag, as in podman.
    let name = reference.tag().map(|t| reference.with_tag(t));
    let record = store.make_record(
        name.as_ref(),
        &manifest_digest,
        index_digest,
        Some(reference.name()),
    )?;
    store.record_image(record.clone())?;
    Ok(Pulled {
        reference: reference.clone(),
        record,
        downloaded,
    })
}

fn check_config_platform(
    store: &Store,
    config: &Digest,
    wanted: &Platform,
    reference: &Reference,
) -> Result<(), PullError> {
    let v: serde_json::Value =
        serde_json::from_slice(&store.read_small_blob(config)?).map_err(|e| PullError::Other {
            what: format!("config of {reference}"),
            message: e.to_string(),
        })?;
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let have = Platform {
        os: get("os").unwrap_or_else(|| "linux".into()),
        architecture: get("architecture").unwrap_or_default(),
        variant: get("variant"),
    };
    if wanted.matches(&have) || Platform::parse(&have.to_string()).is_ok_and(|h| wanted.matches(&h))
    {
        Ok(())
    } else {
        Err(PullError::NoPlatform {
            wanted: wanted.clone(),
            available: have.to_string(),
        })
    }
}

async fn download_all(
    client: &RegistryClient,
    store: &Store,
    ep: &Endpoint,
    registry: &str,
    blobs: &[(Digest, u64)],
    concurrency: usize,
    progress: Arc<dyn Progress>,
) -> Result<usize, PullError> {
    use futures_util::stream::{self, TryStreamExt};
    let count = stream::iter(blobs.iter().cloned().map(Ok::<_, PullError>))
        .map_ok(|(digest, size)| {
            let progress = progress.clone();
            async move {
                let s = store.clone();
                let d = digest.clone();
                // flock may wait for another process downloading the same blob.
                let partial = tokio::task::spawn_blocking(move || s.partial(&d))
                    .await
                    .map_err(|e| PullError::Other {
                        what: format!("blob {digest}"),
                        message: e.to_string(),
                    })??;
                let Some(partial) = partial else {
                    progress.finish(&digest, true);
                    return Ok(0usize);
                };
                progress.start(&digest, size, partial.len());
                let on_bytes = |n: u64| progress.advance(&digest, n);
                client
                    .fetch_blob(ep, registry, &digest, size, partial, &on_bytes)
                    .await?;
                progress.finish(&digest, false);
                Ok(1usize)
            }
        })
        .try_buffer_unordered(concurrency)
        .try_fold(0usize, |acc, n| async move { Ok(acc + n) })
        .await?;
    Ok(count)
}
