//! The two tars a build reads, a RUN step's changes and an ADD archive,
//! through skiff-ext4's tar reader (the one every root filesystem is built
//! with: PAX records parsed by length, so binary xattrs survive; GNU long
//! names; sparse files; Go's tolerance of a missing end marker), presented
//! as the header fields a layer entry is rewritten from.

use std::io::{self, Read};

use skiff_ext4::layer::{EntryKind, TarEntry};

use super::LayerError;

/// One entry. Type flags are normalized: `'0'` regular, `'1'` hard link,
/// `'2'` symlink, `'3'`/`'4'` devices, `'5'` directory, `'6'` FIFO.
#[derive(Debug)]
pub(crate) struct RawEntry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Bytes of data (0 for every type but regular files).
    pub size: u64,
    pub dev: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads entries one after the other; an entry's data is read through
/// [`TarReader::data`] before the next call to [`TarReader::next`], which
/// skips whatever was left of it.
pub(crate) struct TarReader<R> {
    inner: skiff_ext4::layer::TarReader<R>,
    current: Option<TarEntry>,
}

fn tar_error(e: skiff_ext4::tree::LayerError) -> LayerError {
    LayerError::TarFormat(e.to_string())
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(r: R) -> Self {
        Self {
            inner: skiff_ext4::layer::TarReader::new(r),
            current: None,
        }
    }

    /// The underlying reader, positioned after what was read.
    pub(crate) fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    /// The rest of the current entry's data.
    pub(crate) fn data(&mut self) -> Box<dyn Read + '_> {
        match &self.current {
            Some(e) => Box::new(self.inner.data(e)),
            None => Box::new(io::empty()),
        }
    }

    /// The next entry, or `None` at the end of the archive. Entries of a
    /// type a layer cannot hold are skipped.
    pub(crate) fn next(&mut self) -> Result<Option<RawEntry>, LayerError> {
        loop {
            self.current = None;
            let Some(e) = self.inner.next_entry().map_err(tar_error)? else {
                return Ok(None);
            };
            let typeflag = match e.kind {
                EntryKind::File => b'0',
                EntryKind::Hardlink => b'1',
                EntryKind::Symlink => b'2',
                EntryKind::CharDev => b'3',
                EntryKind::BlockDev => b'4',
                EntryKind::Dir => b'5',
                EntryKind::Fifo => b'6',
                EntryKind::Other(_) => continue,
            };
            let raw = RawEntry {
                path: e.path.clone(),
                link: e.link.clone(),
                typeflag,
                mode: u32::from(e.meta.mode),
                uid: e.meta.uid.into(),
                gid: e.meta.gid.into(),
                mtime: e.meta.mtime.secs.max(0) as u64,
                size: if typeflag == b'0' { e.size } else { 0 },
                dev: (e.dev_major, e.dev_minor),
                xattrs: e.meta.xattrs.clone(),
            };
            self.current = Some(e);
            return Ok(Some(raw));
        }
    }
}

/// Whether `r` starts with a tar entry (ADD unpacks archives, copies the rest).
pub(crate) fn is_tar(r: impl Read) -> bool {
    matches!(
        skiff_ext4::layer::TarReader::new(r).next_entry(),
        Ok(Some(_))
    )
}
