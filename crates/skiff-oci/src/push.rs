//! `push`: upload an image's blobs (skipping those the registry has, mounting
//! from the repository they came from when it is on the same registry), then
//! its manifest under the tag.

use std::sync::Arc;

use crate::client::{BlobFile, RegistryClient, RegistryError, UploadStart};
use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{ImageRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("registry {0} is blocked by registries.conf")]
    Blocked(String),
}

#[derive(Default, Clone)]
pub struct PushOptions {
    /// Blobs larger than this go up in PATCH chunks of this size.
    pub chunk_size: Option<u64>,
    pub concurrency: usize,
}

#[derive(Debug, Default)]
pub struct Pushed {
    pub digest: Option<Digest>,
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
}

pub async fn push(
    client: &RegistryClient,
    store: &Store,
    record: &ImageRecord,
    dest: &Reference,
    opts: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pushed, PushError> {
    use futures_util::stream::{self, TryStreamExt};
    if client.registries().is_blocked(dest) {
        return Err(PushError::Blocked(dest.registry().to_owned()));
    }
    let ep = client.push_endpoint(dest);
    let registry = dest.registry();
    let manifest_bytes = store.read_small_blob(&record.digest)?;
    let Manifest::Image(image) = Manifest::parse(&manifest_bytes, None)? else {
        return Err(crate::manifest::ManifestError::NotAnImage(record.digest.clone()).into());
    };
    // Mount only from another repository on the same registry.
    let mount_from = record.source.as_deref().and_then(|src| {
        let (reg, repo) = src.split_once('/')?;
        (reg == dest.registry() && repo != dest.repository()).then(|| repo.to_owned())
    });
    let blobs = image.blobs()?;
    for (d, _) in &blobs {
        if !store.has_blob(d) {
            return Err(StoreError::MissingBlob(d.clone()).into());
        }
    }

    #[derive(Clone, Copy)]
    enum How {
        Existing,
        Mounted,
        Uploaded,
    }
    let ep_ref = &ep;
    let mount_ref = &mount_from;
    let hows: Vec<How> = stream::iter(blobs.into_iter().map(Ok::<_, PushError>))
        .map_ok(|(digest, size)| {
            let progress = progress.clone();
            async move {
                if client.blob_exists(ep_ref, registry, &digest).await? {
                    progress.finish(&digest, true);
                    return Ok(How::Existing);
                }
                progress.start(&digest, size, 0);
                let loc = match client
                    .start_upload(ep_ref, registry, &digest, mount_ref.as_deref())
                    .await?
                {
                    UploadStart::Mounted => {
                        progress.finish(&digest, true);
                        return Ok(How::Mounted);
                    }
                    UploadStart::Location(l) => l,
                };
                let path = store.blob_path(&digest);
                let on_bytes = |n: u64| progress.advance(&digest, n);
                client
                    .upload_blob(
                        ep_ref,
                        registry,
                        loc,
                        BlobFile {
                            digest: &digest,
                            path: &path,
                            size,
                        },
                        opts.chunk_size,
                        &on_bytes,
                    )
                    .await?;
                progress.finish(&digest, false);
                Ok(How::Uploaded)
            }
        })
        .try_buffer_unordered(opts.concurrency.max(1))
        .try_collect()
        .await?;

    let tag = dest
        .tag()
        .map(str::to_owned)
        .unwrap_or_else(|| record.digest.to_string());
    client
        .put_manifest(&ep, registry, &tag, &manifest_bytes, &image.media_type)
        .await?;
    let mut out = Pushed {
        digest: Some(record.digest.clone()),
        ..Default::default()
    };
    for h in hows {
        match h {
            How::Existing => out.existing += 1,
            How::Mounted => out.mounted += 1,
            How::Uploaded => out.uploaded += 1,
        }
    }
    Ok(out)
}
