//! ReadArchive: a path of the container as a tar stream.
//!
//! The top entry is the path's last component ("/etc/hosts" gives "hosts",
//! "/etc" gives "etc" and "etc/..."); a path ending in "/." gives what is in
//! the directory, without a prefix. Entries keep their mode, numeric owner
//! and mtime; symlinks are stored as symlinks (only the top one is followed,
//! and only with `follow_link`); fifos and devices as such; hard links as
//! files; sockets are left out. Names and link targets too long for the
//! header get GNU long-name entries. The contents of proc, sysfs and the
//! like are never read (copying "/" must end, and /proc/kcore is huge).

use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use skiff_proto::v1::{ArchiveChunk, PathRequest};
use tar::{Builder, EntryType, Header};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::CHUNK;
use crate::container_path::{self, Target};

/// Chunks in flight towards the gRPC stream.
pub(super) const QUEUE: usize = 4;

pub type ArchiveStream = ReceiverStream<Result<ArchiveChunk, Status>>;

/// What ReadArchive archives, checked: [`open`] it (blocking), then
/// [`start`] the stream.
pub struct Source {
    target: Target,
    top: Metadata,
    follow: bool,
}

/// Checks the path: a missing one fails here, before any data.
pub fn open(req: &PathRequest) -> Result<Source, Status> {
    let target = container_path::parse(&req.path)?;
    // "dir/." means the directory even when the path is a symlink to one.
    let follow = req.follow_link || target.contents;
    let top = if follow {
        std::fs::metadata(&target.path)
    } else {
        std::fs::symlink_metadata(&target.path)
    }
    .map_err(|e| container_path::stat_error(&req.path, &e))?;
    if target.contents && !top.is_dir() {
        return Err(Status::failed_precondition(format!(
            "not a directory in the container: {}",
            req.path
        )));
    }
    Ok(Source {
        target,
        top,
        follow,
    })
}

/// Starts the thread that writes the archive into the returned stream.
pub fn start(source: Source) -> ArchiveStream {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut archive = Builder::new(ChunkSink::new(tx.clone()));
        match write_all(&mut archive, &source.target, &source.top, source.follow) {
            Ok(()) => {}
            // Nobody to tell.
            Err(_) if archive.get_ref().host_gone => {}
            Err(status) => {
                let _ = tx.blocking_send(Err(status));
            }
        }
    });
    ReceiverStream::new(rx)
}

type Archive = Builder<ChunkSink>;

fn write_all(
    archive: &mut Archive,
    target: &Target,
    top: &Metadata,
    follow: bool,
) -> Result<(), Status> {
    // Entries still to write: (file system path, archive name, device of
    // the parent directory). Depth first, in name order.
    let mut stack: Vec<(PathBuf, PathBuf, u64)> = Vec::new();
    if target.contents {
        if !is_pseudo_fs(&target.path) {
            push_children(&mut stack, &target.path, Path::new(""), top)?;
        }
    } else {
        let name = PathBuf::from(&target.name);
        append(archive, &target.path, &name, top, follow)?;
        if top.is_dir() && !is_pseudo_fs(&target.path) {
            push_children(&mut stack, &target.path, &name, top)?;
        }
    }
    while let Some((path, name, parent_dev)) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed since its directory was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fs_error(&path, &e)),
        };
        append(archive, &path, &name, &meta, false)?;
        // A file system's kind is looked at only where one starts.
        if meta.is_dir() && (meta.dev() == parent_dev || !is_pseudo_fs(&path)) {
            push_children(&mut stack, &path, &name, &meta)?;
        }
    }
    archive.finish().map_err(|e| write_error(&e))?;
    archive.get_mut().send().map_err(|e| write_error(&e))
}

/// Queues the entries of directory `path` (archived as `name`).
fn push_children(
    stack: &mut Vec<(PathBuf, PathBuf, u64)>,
    path: &Path,
    name: &Path,
    meta: &Metadata,
) -> Result<(), Status> {
    let mut children = Vec::new();
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fs_error(path, &e)),
    };
    for entry in entries {
        children.push(entry.map_err(|e| fs_error(path, &e))?.file_name());
    }
    // Popped from the end: reversed, so the archive is in name order.
    children.sort_unstable_by(|a, b| b.cmp(a));
    stack.extend(
        children
            .into_iter()
            .map(|c| (path.join(&c), name.join(&c), meta.dev())),
    );
    Ok(())
}

/// proc, sysfs and their kind: no data of the container's, and files
/// whose sizes mean nothing.
fn is_pseudo_fs(path: &Path) -> bool {
    const PSEUDO: &[u64] = &[
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x1cd1,      // devpts
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0xcafe_4a11, // bpf
        0x6165_676c, // pstore
        0x6265_6570, // configfs
        0x6573_5543, // fusectl
        0x4249_4e4d, // binfmt_misc
        0xde5e_81e4, // efivarfs
    ];
    rustix::fs::statfs(path).is_ok_and(|s| PSEUDO.contains(&(s.f_type as u64)))
}

/// The header of a fifo or device node (its numbers set); `None` for
/// anything else.
pub(super) fn special_header(meta: &Metadata) -> io::Result<Option<Header>> {
    let ft = meta.file_type();
    let kind = if ft.is_fifo() {
        EntryType::Fifo
    } else if ft.is_char_device() {
        EntryType::Char
    } else if ft.is_block_device() {
        EntryType::Block
    } else {
        return Ok(None);
    };
    let mut h = header(meta, kind, 0);
    if !ft.is_fifo() {
        let dev = meta.rdev();
        h.set_device_major(rustix::fs::major(dev))?;
        h.set_device_minor(rustix::fs::minor(dev))?;
    }
    Ok(Some(h))
}

pub(super) fn header(meta: &Metadata, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid().into());
    h.set_gid(meta.gid().into());
    // Before 1970 does not fit the field; GNU tar clamps the same way.
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(size);
    h
}

/// One entry. `follow`: `path` may be a symlink to what `meta` describes.
fn append(
    archive: &mut Archive,
    path: &Path,
    name: &Path,
    meta: &Metadata,
    follow: bool,
) -> Result<(), Status> {
    let ft = meta.file_type();
    let result = if ft.is_file() {
        let mut flags = OFlags::NONBLOCK;
        if !follow {
            flags |= OFlags::NOFOLLOW;
        }
        // NONBLOCK: a fifo swapped in since the lstat must not hang us;
        // NOFOLLOW: nor may a symlink swapped in lead elsewhere.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(fs_error(path, &e)),
        };
        let meta = file.metadata().map_err(|e| fs_error(path, &e))?;
        if !meta.is_file() {
            // Replaced by something else since it was listed.
            return Ok(());
        }
        let mut h = header(&meta, EntryType::Regular, meta.size());
        archive.append_data(&mut h, name, ExactSize::new(file, meta.size()))
    } else if ft.is_dir() {
        let mut h = header(meta, EntryType::Directory, 0);
        archive.append_data(&mut h, name, io::empty())
    } else if ft.is_symlink() {
        let to = match std::fs::read_link(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(fs_error(path, &e)),
        };
        let mut h = header(meta, EntryType::Symlink, 0);
        archive.append_link(&mut h, name, to)
    } else if let Some(h) = special_header(meta).map_err(|e| fs_error(path, &e))? {
        let mut h = h;
        archive.append_data(&mut h, name, io::empty())
    } else {
        // A socket: tar has no such entry.
        crate::debug!("ReadArchive: leaving out socket {}", path.display());
        return Ok(());
    };
    result.map_err(|e| {
        if archive.get_ref().host_gone {
            write_error(&e)
        } else {
            fs_error(path, &e)
        }
    })
}

pub(super) fn fs_error(path: &Path, e: &io::Error) -> Status {
    Status::internal(format!("archiving {}: {e}", path.display()))
}

pub(super) fn write_error(e: &io::Error) -> Status {
    Status::internal(format!("writing the archive: {e}"))
}

/// Exactly `size` bytes of a file: a file that grows while it is read is
/// cut at the size in its header, one that shrinks is padded with zeros,
/// so the archive stays well-formed either way (GNU tar does the same).
pub(super) struct ExactSize {
    file: File,
    left: u64,
    at_eof: bool,
}

impl ExactSize {
    pub(super) fn new(file: File, size: u64) -> Self {
        Self {
            file,
            left: size,
            at_eof: false,
        }
    }
}

impl Read for ExactSize {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        if !self.at_eof {
            let n = self.file.read(&mut buf[..want])?;
            if n > 0 {
                self.left -= n as u64;
                return Ok(n);
            }
            self.at_eof = true;
        }
        buf[..want].fill(0);
        self.left -= want as u64;
        Ok(want)
    }
}

/// The archive's bytes as ArchiveChunks of [`CHUNK`] bytes (the last one
/// shorter) into the response channel. Sending blocks while the channel is
/// full: that is the back-pressure.
pub(super) struct ChunkSink {
    tx: mpsc::Sender<Result<ArchiveChunk, Status>>,
    buf: Vec<u8>,
    /// The receiving end is gone: the host cancelled or disconnected.
    pub(super) host_gone: bool,
}

impl ChunkSink {
    pub(super) fn new(tx: mpsc::Sender<Result<ArchiveChunk, Status>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
            host_gone: false,
        }
    }

    pub(super) fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let chunk = ArchiveChunk {
            data,
            ..Default::default()
        };
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            self.host_gone = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "the host stopped reading")
        })
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
        f
    }

    #[test]
    fn exact_size_cuts_and_pads() {
        let mut out = Vec::new();
        ExactSize::new(file_with(b"abcdef"), 4)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abcd");
        out.clear();
        ExactSize::new(file_with(b"ab"), 5)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"ab\0\0\0");
    }
}
