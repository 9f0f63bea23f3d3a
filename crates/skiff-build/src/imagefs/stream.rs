//! The entries of an image's layers, in order, as one stream: each layer
//! decompressed (skiff-ext4's detection), read as tar, its entries
//! normalized and numbered across layers. Loading the tree and `extract`'s
//! second read number the same entries the same way, which is how
//! `extract` finds a file's bytes again.

use std::io::Read;

use super::{normalize, ImageFsError};

/// The type of a tar entry, after normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// One tar entry's header, normalized.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    /// Position over all layers' entries (from 1).
    pub ordinal: u64,
    /// 1-based layer.
    pub layer: u32,
    /// Normalized absolute path.
    pub path: String,
    pub kind: RawKind,
    /// Symlink target as written; hard link target normalized.
    pub link: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub rdev: (u32, u32),
}

fn kind_of(t: tar::EntryType) -> Option<RawKind> {
    use tar::EntryType as T;
    Some(match t {
        T::Regular | T::Continuous | T::GNUSparse => RawKind::File,
        T::Directory => RawKind::Dir,
        T::Symlink => RawKind::Symlink,
        T::Link => RawKind::Hardlink,
        T::Char => RawKind::Char,
        T::Block => RawKind::Block,
        T::Fifo => RawKind::Fifo,
        // Global PAX headers and unknown types carry no file.
        _ => return None,
    })
}

/// Calls `f` with each entry of each layer and its unread data.
pub(crate) fn for_each_entry(
    layers: Vec<Box<dyn Read + '_>>,
    f: &mut dyn FnMut(&RawEntry, &mut dyn Read) -> Result<(), ImageFsError>,
) -> Result<(), ImageFsError> {
    let mut ordinal = 0u64;
    for (i, layer) in layers.into_iter().enumerate() {
        let n = i + 1;
        let read = |source: std::io::Error| ImageFsError::Read { layer: n, source };
        let (_, stream) = skiff_ext4::layer::decompress(layer)
            .map_err(|source| ImageFsError::Layer { layer: n, source })?;
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(read)? {
            let mut entry = entry.map_err(read)?;
            ordinal += 1;
            let h = entry.header();
            let Some(kind) = kind_of(h.entry_type()) else {
                continue;
            };
            // An empty or unparsable field reads as 0, as Go's archive/tar
            // (docker's reader) has it; only a value too large is refused.
            let num = |v: std::io::Result<u64>| -> Result<u32, ImageFsError> {
                u32::try_from(v.unwrap_or(0))
                    .map_err(|_| read(std::io::Error::other("uid or gid out of range in tar header")))
            };
            let raw = RawEntry {
                ordinal,
                layer: n as u32,
                path: normalize(&String::from_utf8_lossy(&entry.path_bytes())),
                kind,
                link: entry.link_name_bytes().map(|l| {
                    let l = String::from_utf8_lossy(&l).into_owned();
                    if kind == RawKind::Hardlink {
                        normalize(&l)
                    } else {
                        l
                    }
                }),
                mode: h.mode().unwrap_or(0) & 0o7777,
                uid: num(h.uid())?,
                gid: num(h.gid())?,
                mtime: h.mtime().ok().and_then(|t| i64::try_from(t).ok()).unwrap_or(0),
                size: entry.size(),
                rdev: (
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                ),
            };
            f(&raw, &mut entry)?;
        }
    }
    Ok(())
}
