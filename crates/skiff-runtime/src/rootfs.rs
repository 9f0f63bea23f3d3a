//! The cached base filesystem of an image, `rootfs/<manifest-hex>.ext4`:
//! written once by skiff-ext4 straight from the layer blobs, read-only after.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use skiff_ext4::writer::{self, Options};
use skiff_oci::manifest::Manifest;
use skiff_oci::store::{ImageRecord, Store};
use skiff_util::atomic::AtomicFile;
use skiff_util::lock::FileLock;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{0}")]
    Store(#[from] skiff_oci::store::StoreError),
    #[error("{0}")]
    Manifest(#[from] skiff_oci::manifest::ManifestError),
    #[error("{0} is not an image manifest")]
    NotAnImage(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: skiff_ext4::writer::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the cached base filesystem of `rec` lives (whether built or not).
pub fn cached_path(store: &Store, rec: &ImageRecord) -> PathBuf {
    store
        .root()
        .join("rootfs")
        .join(format!("{}.ext4", rec.digest.hex()))
}

/// The store's base filesystem for an image, built once: under a lock, so
/// concurrent callers wait rather than build twice. `progress(done, total)`
/// reports compressed layer bytes consumed. Returns (path, stats if this call
/// built it).
pub fn cached(
    store: &Store,
    rec: &ImageRecord,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(PathBuf, Option<writer::Stats>), RootfsError> {
    let path = cached_path(store, rec);
    if path.exists() {
        return Ok((path, None));
    }
    let dir = store.root().join("rootfs");
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let locks = store.root().join("locks");
    std::fs::create_dir_all(&locks).map_err(io("creating", &locks))?;
    let lock_path = locks.join(format!("rootfs-{}.lock", rec.digest.hex()));
    let _lock = FileLock::exclusive(&lock_path).map_err(io("locking", &lock_path))?;
    if path.exists() {
        return Ok((path, None));
    }
    let (readers, total) = layer_readers(store, rec)?;
    let stats = write_image(readers, total, &path, opts, progress)?;
    let mut perm = std::fs::metadata(&path)
        .map_err(io("reading", &path))?
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o444);
    std::fs::set_permissions(&path, perm).map_err(io("making read-only", &path))?;
    Ok((path, Some(stats)))
}

/// Opens an image's layer blobs in order; also returns their total size.
pub fn layer_readers(
    store: &Store,
    rec: &ImageRecord,
) -> Result<(Vec<BufReader<File>>, u64), RootfsError> {
    let Manifest::Image(img) = Manifest::parse(&store.read_small_blob(&rec.digest)?, None)? else {
        return Err(RootfsError::NotAnImage(rec.digest.to_string()));
    };
    let mut readers = Vec::new();
    let mut total = 0;
    for d in img.layer_digests()? {
        let f = store.open_blob(&d)?;
        total += f.metadata().map(|m| m.len()).unwrap_or(0);
        readers.push(BufReader::with_capacity(1 << 20, f));
    }
    Ok((readers, total))
}

/// Writes to a temp file beside `out` and renames it into place (durably, as
/// every replace in skiff), so a failure leaves nothing behind.
pub fn write_image(
    readers: Vec<BufReader<File>>,
    total: u64,
    out: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<writer::Stats, RootfsError> {
    let mut f = AtomicFile::create(out, 0o644).map_err(io("creating", out))?;
    let stats =
        writer::build(readers, f.file(), opts, &mut |n| progress(n, total)).map_err(|source| {
            RootfsError::Write {
                path: out.to_path_buf(),
                source,
            }
        })?;
    f.commit().map_err(io("renaming into place", out))?;
    Ok(stats)
}

/// An empty ext4 of `size` bytes (sparse: only the metadata is written),
/// with inodes for as much data as it holds: a volume, a build step's
/// changes.
pub fn write_empty(path: &Path, size: u64, label: &str) -> Result<(), RootfsError> {
    let mut file = File::create(path).map_err(io("creating", path))?;
    let opts = Options {
        size: Some(size),
        headroom: Some(size),
        label: label.chars().take(16).collect(),
        ..Default::default()
    };
    writer::build(
        std::iter::empty::<std::io::Empty>(),
        &mut file,
        &opts,
        &mut |_| {},
    )
    .map_err(|source| RootfsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    file.sync_all().map_err(io("writing", path))
}
