//! Layers: a reproducible tar stream, compressed, with both digests computed
//! as it streams ([`LayerWriter`]); and what COPY and ADD put in one
//! ([`copy_from_context`], [`copy_from_dir`], [`copy_bytes`], [`add_local`]).
//!
//! Headers are built field by field rather than from host metadata, so that
//! nothing but what an entry means reaches the bytes: numeric owners with
//! empty names, no atime/ctime, fixed headers for the PAX records, and with
//! `SOURCE_DATE_EPOCH` every mtime clamped to it (BuildKit's
//! rewrite-timestamp). Two writes of the same entries give the same layer.
//!
//! The output is any `Write`; with `Store::blob_writer()` the writer that
//! [`LayerWriter::finish`] hands back is committed with the digest and size
//! it reports, so the blob is verified without being read again.

mod archive;
mod copy;
mod dest;
mod tarread;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_copy;
mod writer;

use std::io;
use std::path::PathBuf;

pub use copy::{
    add_local, copy_bytes, copy_from_context, copy_from_dir, copy_from_dir_owned, CopyOptions,
    CopyStats,
};
pub use dest::{EmptyLower, LowerFs, LowerKind};
pub use writer::{LayerWriter, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};

use crate::context::ContextError;

/// How a layer is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (level [`writer::DEFAULT_GZIP_LEVEL`] unless told).
    Gzip,
    /// zstd at level 3, BuildKit's default (`zstd.SpeedDefault`).
    Zstd,
    /// A plain tar: the digest is the diff_id.
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => skiff_oci::manifest::OCI_LAYER_GZIP,
            Compression::Zstd => skiff_oci::manifest::OCI_LAYER_ZSTD,
            Compression::Uncompressed => skiff_oci::manifest::OCI_LAYER_TAR,
        }
    }
}

/// One entry to write with [`LayerWriter::append`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Absolute in the image (`/app/bin/x`); stored as `app/bin/x`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits, with setuid/setgid/sticky (`& 0o7777` is kept).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Seconds since the epoch (clamped to `SOURCE_DATE_EPOCH` if set).
    pub mtime: u64,
}

/// The kind of an [`EntryMeta`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of `size` bytes, read from the data passed along.
    File { size: u64 },
    /// A directory.
    Dir,
    /// A symlink to the target, stored as written.
    Symlink(String),
    /// A hard link to another path of the layer (absolute in the image).
    Hardlink(String),
}

/// What a finished layer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: skiff_oci::Digest,
    /// sha256 of the blob as written (the manifest's layer digest).
    pub digest: skiff_oci::Digest,
    /// Bytes of the blob as written.
    pub size: u64,
    /// The blob's media type.
    pub media_type: &'static str,
}

/// What can go wrong writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The output (or the compressor in front of it) failed.
    #[error("writing the layer")]
    Write(#[source] io::Error),
    /// A host file being copied cannot be read.
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A host file's size changed between the walk and the copy.
    #[error("{path} changed while it was being copied")]
    Changed { path: PathBuf },
    /// The tar stream being re-emitted or unpacked cannot be read.
    #[error("reading the tar stream")]
    TarRead(#[source] io::Error),
    /// The tar stream is not valid tar.
    #[error("malformed tar stream: {0}")]
    TarFormat(String),
    /// An entry that cannot go into the layer as it is.
    #[error("tar entry '{path}': {reason}")]
    BadEntry { path: String, reason: &'static str },
    /// An entry given to [`LayerWriter::append`] that cannot be written.
    #[error("layer entry '{path}': {reason}")]
    BadAppend { path: String, reason: &'static str },
    /// Several sources and a destination without a trailing `/`.
    #[error("When using {0} with more than one source file, the destination must be a directory and end with a /")]
    DestNotDir(&'static str),
    /// The destination, or a directory on its way, is not a directory in
    /// the image.
    #[error("{op} destination '{dest}': '{path}' is not a directory")]
    NotADirectory {
        op: &'static str,
        dest: String,
        path: String,
    },
    /// Resolving the destination through the image's symlinks looped.
    #[error("{op} destination '{dest}': too many levels of symbolic links")]
    DestLoop { op: &'static str, dest: String },
    /// A file name that OCI layers reserve for whiteouts.
    #[error("'{0}': names starting with .wh. are reserved for whiteouts")]
    Reserved(String),
    /// An ADD archive that cannot be unpacked.
    #[error("unpacking {path}")]
    Archive {
        path: PathBuf,
        #[source]
        source: Box<LayerError>,
    },
    /// A source of [`copy_from_dir`] that does not exist.
    #[error("COPY source '{0}' not found")]
    NotFound(String),
    /// Resolving a source in the build context failed.
    #[error(transparent)]
    Context(#[from] ContextError),
}
