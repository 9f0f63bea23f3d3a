//! `COPY --from=<image>`: a file or directory of an image's final tree,
//! written to the host. The tree is loaded first (metadata only), then the
//! layers are read once more and only the entries whose bytes the chosen
//! files hold are written, straight to their place.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
use skiff_oci::{Digest, Store};

use super::{layer_blobs, normalize, stream, ImageFs, ImageFsError, NodeKind, Slot};

/// What [`extract`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Whether the source was a file (written as `dest_dir/<its name>`) or a
    /// directory (its contents written into `dest_dir`).
    pub kind: ExtractedKind,
    /// Everything written, relative to `dest_dir`, parents before children.
    /// Devices are written only when running as root; otherwise skipped and
    /// not listed.
    pub paths: Vec<PathBuf>,
    /// Bytes of file data written (a hard link's copy counts again).
    pub bytes: u64,
}

/// See [`Extracted::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractedKind {
    /// A single file (or symlink target, device, pipe).
    File,
    /// A directory's contents.
    Dir,
}

/// Writes the final tree's `src` (a file or a directory, after resolving
/// symlinks in its path, the last one included) into `dest_dir` on the
/// host: a file as `dest_dir/<last component of src>`, a directory's
/// contents into `dest_dir`. Modes and mtimes are kept, owners too when
/// running as root; symlinks stay symlinks; hard links become copies.
pub fn extract(
    store: &Store,
    manifest: &Digest,
    src: &str,
    dest_dir: &Path,
) -> Result<Extracted, ImageFsError> {
    let fs = ImageFs::load(store, manifest, &|_, _| false)?;
    extract_with(&fs, store, manifest, src, dest_dir)
}

/// [`extract`] with the image's tree already loaded (by [`ImageFs::load`]
/// of the same manifest): several sources cost one read of the tree.
pub fn extract_with(
    fs: &ImageFs,
    store: &Store,
    manifest: &Digest,
    src: &str,
    dest_dir: &Path,
) -> Result<Extracted, ImageFsError> {
    extract_from(fs, layer_blobs(store, manifest)?, src, dest_dir)
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageFsError + '_ {
    move |source| ImageFsError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// [`extract`] from a loaded tree and the same layers again.
pub(crate) fn extract_from(
    fs: &ImageFs,
    layers: Vec<stream::Layer<'_>>,
    src: &str,
    dest_dir: &Path,
) -> Result<Extracted, ImageFsError> {
    let not_found = || ImageFsError::NotFound(src.to_owned());
    let resolved = fs.resolve(src, true).ok_or_else(not_found)?;
    let top = fs.nodes.get(&resolved).ok_or_else(not_found)?;
    let (kind, items): (ExtractedKind, Vec<(PathBuf, &Slot)>) = match top.node.kind {
        NodeKind::Dir => {
            let skip = if resolved == "/" {
                1
            } else {
                resolved.len() + 1
            };
            let items = fs
                .below(&resolved)
                .map(|(p, s)| (PathBuf::from(&p[skip..]), s))
                .collect();
            (ExtractedKind::Dir, items)
        }
        _ => {
            let name = normalize(src);
            let name = name.rsplit('/').next().unwrap_or_default().to_owned();
            (ExtractedKind::File, vec![(PathBuf::from(name), top)])
        }
    };
    std::fs::create_dir_all(dest_dir).map_err(write_err(dest_dir))?;
    let root = rustix::process::geteuid().is_root();
    let mut paths = Vec::new();
    // Entry ordinal → indexes of the items whose bytes it holds.
    let mut wanted: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut written = vec![false; items.len()];
    let mut made_any = vec![false; items.len()];
    for (i, (rel, slot)) in items.iter().enumerate() {
        let dest = dest_dir.join(rel);
        let made = match &slot.node.kind {
            NodeKind::Dir => make_dir(&dest)?,
            NodeKind::Symlink(target) => {
                clear(&dest)?;
                std::os::unix::fs::symlink(target, &dest).map_err(write_err(&dest))?;
                true
            }
            NodeKind::File | NodeKind::Hardlink(_) => {
                wanted.entry(slot.origin).or_default().push(i);
                true
            }
            NodeKind::Fifo => make_node(&dest, rustix::fs::FileType::Fifo, slot)?,
            NodeKind::Char if root => {
                make_node(&dest, rustix::fs::FileType::CharacterDevice, slot)?
            }
            NodeKind::Block if root => make_node(&dest, rustix::fs::FileType::BlockDevice, slot)?,
            NodeKind::Char | NodeKind::Block => false,
        };
        written[i] = made && !matches!(slot.node.kind, NodeKind::File | NodeKind::Hardlink(_));
        made_any[i] = made;
        if made {
            paths.push(rel.clone());
        }
    }
    let mut bytes = 0u64;
    if !wanted.is_empty() {
        stream::for_each_entry(layers, &mut |e, data| {
            let Some(idx) = wanted.get(&e.ordinal) else {
                return Ok(());
            };
            let first = dest_dir.join(&items[idx[0]].0);
            clear(&first)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&first)
                .map_err(write_err(&first))?;
            let n = std::io::copy(data, &mut f).map_err(write_err(&first))?;
            f.flush().map_err(write_err(&first))?;
            bytes += n;
            for &j in &idx[1..] {
                let other = dest_dir.join(&items[j].0);
                clear(&other)?;
                bytes += std::fs::copy(&first, &other).map_err(write_err(&other))?;
            }
            for &j in idx {
                written[j] = true;
            }
            Ok(())
        })?;
    }
    if let Some(i) = written
        .iter()
        .zip(&items)
        .position(|(w, (_, s))| !w && matches!(s.node.kind, NodeKind::File | NodeKind::Hardlink(_)))
    {
        return Err(ImageFsError::Entry {
            layer: items[i].1.layer as usize,
            path: items[i].0.display().to_string(),
            reason: "its data was not found when the layers were read again".into(),
        });
    }
    // Metadata last: directories deepest first, after everything in them.
    for ((rel, slot), _) in items
        .iter()
        .zip(&made_any)
        .filter(|((_, s), made)| **made && !matches!(s.node.kind, NodeKind::Dir))
    {
        set_meta(&dest_dir.join(rel), slot, root)?;
    }
    for (rel, slot) in items
        .iter()
        .rev()
        .filter(|(_, s)| matches!(s.node.kind, NodeKind::Dir))
    {
        set_meta(&dest_dir.join(rel), slot, root)?;
    }
    Ok(Extracted { kind, paths, bytes })
}

/// Removes a non-directory at `path`, so that it can be written anew.
fn clear(path: &Path) -> Result<(), ImageFsError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(ImageFsError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other("a directory is in the way"),
        }),
        Ok(_) => std::fs::remove_file(path).map_err(write_err(path)),
        Err(_) => Ok(()),
    }
}

fn make_dir(path: &Path) -> Result<bool, ImageFsError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => {
            clear(path)?;
            std::fs::create_dir(path).map_err(write_err(path))?;
            Ok(true)
        }
        Err(_) => {
            std::fs::create_dir(path).map_err(write_err(path))?;
            Ok(true)
        }
    }
}

fn make_node(path: &Path, ty: rustix::fs::FileType, slot: &Slot) -> Result<bool, ImageFsError> {
    clear(path)?;
    let mode = rustix::fs::Mode::from_raw_mode(slot.node.mode & 0o777);
    let dev = rustix::fs::makedev(slot.rdev.0, slot.rdev.1);
    rustix::fs::mknodat(CWD, path, ty, mode, dev).map_err(|e| ImageFsError::Write {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(true)
}

fn set_meta(path: &Path, slot: &Slot, root: bool) -> Result<(), ImageFsError> {
    let err = |e: rustix::io::Errno| ImageFsError::Write {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let link = matches!(slot.node.kind, NodeKind::Symlink(_));
    if root {
        let (u, g) = (
            rustix::fs::Uid::from_raw(slot.node.uid),
            rustix::fs::Gid::from_raw(slot.node.gid),
        );
        rustix::fs::chownat(CWD, path, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
    }
    if !link {
        // After chown, which clears setuid and setgid.
        let mode = rustix::fs::Mode::from_raw_mode(slot.node.mode);
        rustix::fs::chmodat(CWD, path, mode, AtFlags::empty()).map_err(err)?;
    }
    let t = Timespec {
        tv_sec: slot.mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
}
