//! WriteArchive: a tar stream unpacked into a directory of the container.
//!
//! The tar crate parses the stream; the file system work is done here,
//! relative to a descriptor of the destination, because the crate's own
//! `unpack_in` does not fit: it skips ".." entries silently and strips a
//! leading "/", writes fifos and devices as regular files, cannot rewrite
//! owners, and checks for symlinks by canonicalizing paths, which a process
//! of the container can race. Here every parent directory is resolved by
//! the kernel with openat2(RESOLVE_BENEATH), so no symlink (and no "..")
//! can lead a write outside the destination, whatever the container does
//! meanwhile; the last component is never followed.
//!
//! Entries are refused (INVALID_ARGUMENT, and nothing of them written) when
//! they are absolute, contain "..", would pass through a symlink that leaves
//! the destination, or hard-link to something outside it. An existing
//! non-directory in the way is replaced (as docker and GNU tar do); an
//! existing directory is never replaced by a non-directory. Modes (set-id
//! bits included) and mtimes are kept; owners are root's, or the archive's
//! numeric ids with `keep_owner`. Directories get their mode and mtime
//! last, deepest first, so that unpacking into them works and does not
//! change their mtimes again.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use skiff_proto::v1::ArchiveChunk;
use tar::{EntryType, Header};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::CHUNK;

/// Chunks queued for the unpacking thread. The host picks their size (up
/// to the 16 MiB message limit), so this stays small.
const QUEUE: usize = 2;

/// Unpacks the stream whose first chunk names the destination.
pub async fn unpack(mut inbound: Streaming<ArchiveChunk>) -> Result<(), Status> {
    let first = inbound.message().await?.ok_or_else(|| {
        Status::invalid_argument("WriteArchive stream ended before naming a directory")
    })?;
    let path = first.path.clone();
    let dest = tokio::task::spawn_blocking(move || Destination::open(&path))
        .await
        .map_err(|e| Status::internal(format!("a blocking task failed: {e}")))??;
    let owner = if !rustix::process::geteuid().is_root() {
        // Only root can give files away; an ordinary user (a test) keeps them.
        Owner::Unchanged
    } else if first.keep_owner {
        Owner::FromArchive
    } else {
        Owner::Root
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let worker =
        tokio::task::spawn_blocking(move || Unpacker::new(dest, owner).run(ChannelReader::new(rx)));
    // Forward the stream until it ends, or until the worker stops reading
    // (the archive's end, or an error it reports below).
    let mut host_error = None;
    let mut next = Some(first.data);
    while let Some(data) = next.take() {
        if !data.is_empty() && tx.send(Ok(data)).await.is_err() {
            break;
        }
        match inbound.message().await {
            Ok(Some(chunk)) => next = Some(chunk.data),
            Ok(None) => {}
            Err(status) => {
                let _ = tx
                    .send(Err(io::Error::other("the host's stream broke off")))
                    .await;
                host_error = Some(status);
            }
        }
    }
    drop(tx);
    let result = worker
        .await
        .map_err(|e| Status::internal(format!("the unpacking thread failed: {e}")))?;
    match host_error {
        Some(status) => Err(status),
        None => result,
    }
}

/// The directory unpacked into.
struct Destination {
    fd: OwnedFd,
    resolve: ResolveFlags,
}

impl Destination {
    fn open(raw: &str) -> Result<Self, Status> {
        if raw.is_empty() {
            return Err(Status::invalid_argument(
                "WriteArchive's first chunk names no directory",
            ));
        }
        if !raw.starts_with('/') {
            return Err(Status::invalid_argument(format!(
                "destination {raw:?} is not an absolute path"
            )));
        }
        let not_found = || Status::not_found(format!("no such directory in the container: {raw}"));
        let fd =
            rustix::fs::open(raw, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
                match e {
                    Errno::NOENT | Errno::NOTDIR => not_found(),
                    Errno::ACCESS => Status::permission_denied(format!("permission denied: {raw}")),
                    _ => Status::internal(format!("opening {raw}: {e}")),
                }
            })?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Status::internal(format!("stat {raw}: {e}")))?;
        if !FileType::from_raw_mode(st.st_mode).is_dir() {
            return Err(Status::failed_precondition(format!(
                "not a directory in the container: {raw}"
            )));
        }
        // Unpacking into "/" itself, an absolute symlink means what it says
        // (the container's root is ours); anywhere else it leaves the
        // destination and is refused.
        let root = rustix::fs::stat("/").map_err(|e| Status::internal(format!("stat /: {e}")))?;
        let resolve = if (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino) {
            ResolveFlags::IN_ROOT
        } else {
            ResolveFlags::BENEATH
        };
        Ok(Self {
            fd,
            resolve: resolve | ResolveFlags::NO_MAGICLINKS,
        })
    }

    /// The directory at `rel` (the destination itself when empty), resolved
    /// by the kernel without leaving the destination.
    fn dir(&self, rel: &[&OsStr], flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let path = join(rel);
        rustix::fs::openat2(
            &self.fd,
            &path,
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve,
        )
    }
}

fn join(rel: &[&OsStr]) -> PathBuf {
    if rel.is_empty() {
        return PathBuf::from(".");
    }
    rel.iter().collect()
}

/// The components of an entry's path, or why it is refused.
fn relative(path: &[u8]) -> Result<Vec<&OsStr>, &'static str> {
    if path.starts_with(b"/") {
        return Err("is an absolute path");
    }
    let mut out = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("contains \"..\""),
            _ => out.push(OsStr::from_bytes(part)),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Owner {
    /// Everything belongs to root (docker cp's default into a container).
    Root,
    /// The archive's numeric ids (docker cp -a).
    FromArchive,
    /// Not root: nothing is chowned.
    Unchanged,
}

/// A directory's metadata, applied after everything else.
struct DirMeta {
    rel: PathBuf,
    mode: u32,
    mtime: Timestamps,
    owner: Option<(Uid, Gid)>,
}

struct Unpacker {
    dest: Destination,
    owner: Owner,
    dirs: Vec<DirMeta>,
    buf: Vec<u8>,
}

/// What one entry says, checked.
struct Meta {
    mode: u32,
    mtime: Timestamps,
    owner: Option<(Uid, Gid)>,
}

fn archive_error(e: io::Error) -> Status {
    Status::invalid_argument(format!("reading the archive: {e}"))
}

/// The Status for a failed file system call while unpacking `shown`.
fn fs_error(shown: &str, e: Errno) -> Status {
    let msg = format!("unpacking {shown:?}: {}", io::Error::from(e));
    match e {
        Errno::NOSPC | Errno::DQUOT => Status::resource_exhausted(msg),
        Errno::ROFS | Errno::NOTDIR | Errno::NOTEMPTY | Errno::ISDIR => {
            Status::failed_precondition(msg)
        }
        Errno::ACCESS | Errno::PERM => Status::permission_denied(msg),
        _ => Status::internal(msg),
    }
}

/// The Status for a parent directory that could not be resolved.
fn resolve_error(shown: &str, e: Errno) -> Status {
    match e {
        // RESOLVE_BENEATH's answer to a path that leaves the destination.
        Errno::XDEV => Status::invalid_argument(format!(
            "archive entry {shown:?} would be written outside the destination through a symlink"
        )),
        Errno::LOOP => Status::invalid_argument(format!(
            "archive entry {shown:?} passes through too many symlinks"
        )),
        Errno::NOSYS => {
            Status::failed_precondition("unpacking needs openat2 (Linux 5.6 or later)".to_owned())
        }
        _ => fs_error(shown, e),
    }
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Unpacker {
    fn new(dest: Destination, owner: Owner) -> Self {
        Self {
            dest,
            owner,
            dirs: Vec::new(),
            buf: vec![0; CHUNK],
        }
    }

    fn run(mut self, reader: impl Read) -> Result<(), Status> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(archive_error)? {
            let mut entry = entry.map_err(archive_error)?;
            self.entry(&mut entry)?;
        }
        self.finish_dirs()
    }

    fn meta(&self, h: &Header, shown: &str) -> Result<Meta, Status> {
        let bad = |e: io::Error| Status::invalid_argument(format!("archive entry {shown:?}: {e}"));
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| {
                Status::invalid_argument(format!("archive entry {shown:?} has {what} {v}"))
            })
        };
        let owner = match self.owner {
            Owner::Unchanged => None,
            Owner::Root => Some((Uid::ROOT, Gid::ROOT)),
            Owner::FromArchive => Some((
                Uid::from_raw(id(h.uid().map_err(bad)?, "uid")?),
                Gid::from_raw(id(h.gid().map_err(bad)?, "gid")?),
            )),
        };
        Ok(Meta {
            mode: h.mode().map_err(bad)? & 0o7777,
            mtime: timestamps(h.mtime().map_err(bad)?),
            owner,
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Status> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let rel = relative(&path)
            .map_err(|why| Status::invalid_argument(format!("archive entry {shown:?} {why}")))?;
        // "." (GNU tar's first entry of `-C dir .`): the destination itself,
        // which is left as it is.
        let Some((name, parents)) = rel.split_last() else {
            return Ok(());
        };
        let name = *name;
        let meta = self.meta(entry.header(), &shown)?;
        let parent = self.parent(parents, &shown)?;
        match kind {
            EntryType::Directory => {
                self.mkdir(&parent, name, &shown)?;
                self.dirs.push(DirMeta {
                    rel: join(&rel),
                    mode: meta.mode,
                    mtime: meta.mtime,
                    owner: meta.owner,
                });
                Ok(())
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "archive entry {shown:?} is a symlink without a target"
                        ))
                    })?
                    .into_owned();
                self.replacing(&parent, name, &shown, |p| {
                    rustix::fs::symlinkat(target.as_slice(), p, name)
                })?;
                self.finish_node(&parent, name, &shown, &meta, false)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.hard_link(&parent, name, &shown, &target)
            }
            EntryType::Fifo | EntryType::Char | EntryType::Block => {
                let h = entry.header();
                let bad = |e: io::Error| {
                    Status::invalid_argument(format!("archive entry {shown:?}: {e}"))
                };
                let (file_type, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let major = h.device_major().map_err(bad)?.unwrap_or(0);
                        let minor = h.device_minor().map_err(bad)?.unwrap_or(0);
                        let t = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (t, rustix::fs::makedev(major, minor))
                    }
                };
                self.replacing(&parent, name, &shown, |p| {
                    rustix::fs::mknodat(p, name, file_type, Mode::from_raw_mode(0o600), dev)
                })?;
                self.finish_node(&parent, name, &shown, &meta, true)
            }
            // Regular, contiguous, GNU sparse (read back with its holes as
            // zeros), and, as POSIX asks, any type not known.
            _ => self.file(entry, &parent, name, &shown, &meta),
        }
    }

    /// The parent directory of an entry, made (0755, root's) where missing.
    fn parent(&self, rel: &[&OsStr], shown: &str) -> Result<OwnedFd, Status> {
        match self.dest.dir(rel, OFlags::PATH) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(resolve_error(shown, e)),
        }
        // One level at a time, each resolved from the destination again.
        let mut fd = self
            .dest
            .dir(&[], OFlags::PATH)
            .map_err(|e| resolve_error(shown, e))?;
        for i in 0..rel.len() {
            fd = match self.dest.dir(&rel[..=i], OFlags::PATH) {
                Ok(next) => next,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&fd, rel[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(fs_error(shown, e)),
                    }
                    self.dest
                        .dir(&rel[..=i], OFlags::PATH)
                        .map_err(|e| resolve_error(shown, e))?
                }
                Err(e) => return Err(resolve_error(shown, e)),
            };
        }
        Ok(fd)
    }

    /// Runs `create`; if the name is taken by a non-directory, removes that
    /// and runs it again.
    fn replacing(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        shown: &str,
        mut create: impl FnMut(&OwnedFd) -> rustix::io::Result<()>,
    ) -> Result<(), Status> {
        match create(parent) {
            Err(Errno::EXIST) => {
                self.remove_non_dir(parent, name, shown)?;
                create(parent).map_err(|e| fs_error(shown, e))
            }
            r => r.map_err(|e| fs_error(shown, e)),
        }
    }

    fn remove_non_dir(&self, parent: &OwnedFd, name: &OsStr, shown: &str) -> Result<(), Status> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode).is_dir() => {
                Err(Status::failed_precondition(format!(
                    "archive entry {shown:?} would replace a directory"
                )))
            }
            Ok(_) => {
                rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(|e| fs_error(shown, e))
            }
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(fs_error(shown, e)),
        }
    }

    fn mkdir(&self, parent: &OwnedFd, name: &OsStr, shown: &str) -> Result<(), Status> {
        let mode = Mode::from_raw_mode(0o755);
        match rustix::fs::mkdirat(parent, name, mode) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fs_error(shown, e))?;
                if FileType::from_raw_mode(st.st_mode).is_dir() {
                    return Ok(());
                }
                // A file or a symlink (even to a directory) is replaced.
                rustix::fs::unlinkat(parent, name, AtFlags::empty())
                    .and_then(|()| rustix::fs::mkdirat(parent, name, mode))
                    .map_err(|e| fs_error(shown, e))
            }
            Err(e) => Err(fs_error(shown, e)),
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsStr,
        shown: &str,
        meta: &Meta,
    ) -> Result<(), Status> {
        let open = |p: &OwnedFd| {
            rustix::fs::openat(
                p,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let fd = match open(parent) {
            Err(Errno::EXIST) => {
                self.remove_non_dir(parent, name, shown)?;
                open(parent)
            }
            r => r,
        }
        .map_err(|e| fs_error(shown, e))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(archive_error(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| fs_error(shown, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
            written += n as u64;
        }
        // The entry's reader just ends where the stream does.
        if written != entry.size() {
            return Err(Status::invalid_argument(format!(
                "reading the archive: it ends inside {shown:?}"
            )));
        }
        // Owner first: chown clears the set-id bits that the mode sets.
        if let Some((uid, gid)) = meta.owner {
            rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| fs_error(shown, e))?;
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .and_then(|()| rustix::fs::futimens(&file, &meta.mtime))
            .map_err(|e| fs_error(shown, e))
    }

    /// Owner, mode (`chmod`: not for symlinks) and mtime of a node just made
    /// by name. The mode is set by name too (Linux has no lchmod before
    /// fchmodat2): only a process of the container that swaps the new node
    /// for a symlink within that moment could redirect it, and then only
    /// inside the container.
    fn finish_node(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        shown: &str,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), Status> {
        if let Some((uid, gid)) = meta.owner {
            rustix::fs::chownat(
                parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fs_error(shown, e))?;
        }
        if chmod {
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| fs_error(shown, e))?;
        }
        rustix::fs::utimensat(parent, name, &meta.mtime, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fs_error(shown, e))
    }

    fn hard_link(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        shown: &str,
        target: &[u8],
    ) -> Result<(), Status> {
        let target_shown = String::from_utf8_lossy(target);
        let refuse = |why: &str| {
            Status::invalid_argument(format!(
                "archive entry {shown:?} links to {target_shown:?}, which {why}"
            ))
        };
        let rel = relative(target).map_err(&refuse)?;
        let Some((target_name, target_parents)) = rel.split_last() else {
            return Err(refuse("is the destination itself"));
        };
        let target_dir = self
            .dest
            .dir(target_parents, OFlags::PATH)
            .map_err(|e| match e {
                Errno::XDEV => refuse("is outside the destination"),
                Errno::NOENT => refuse("is not there"),
                _ => resolve_error(shown, e),
            })?;
        // Without AT_SYMLINK_FOLLOW: a symlink is linked, never its target.
        let link =
            |p: &OwnedFd| rustix::fs::linkat(&target_dir, *target_name, p, name, AtFlags::empty());
        match link(parent) {
            Err(Errno::EXIST) => {
                self.remove_non_dir(parent, name, shown)?;
                link(parent)
            }
            r => r,
        }
        .map_err(|e| match e {
            Errno::NOENT => refuse("is not there"),
            _ => fs_error(shown, e),
        })
    }

    /// Mode, owner and mtime of the directories, deepest first.
    fn finish_dirs(&mut self) -> Result<(), Status> {
        // Stable: of two entries for one directory, the later one wins.
        self.dirs.sort_by(|a, b| b.rel.cmp(&a.rel));
        for d in &self.dirs {
            let shown = d.rel.to_string_lossy();
            let rel: Vec<&OsStr> = d.rel.iter().collect();
            let fd = match self.dest.dir(&rel, OFlags::RDONLY | OFlags::NOFOLLOW) {
                Ok(fd) => fd,
                // Removed or replaced by the container meanwhile.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(resolve_error(&shown, e)),
            };
            if let Some((uid, gid)) = d.owner {
                rustix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(|e| fs_error(&shown, e))?;
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(d.mode))
                .and_then(|()| rustix::fs::futimens(&fd, &d.mtime))
                .map_err(|e| fs_error(&shown, e))?;
        }
        Ok(())
    }
}

/// The chunks from the gRPC stream as one byte stream for the tar reader.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        let ok = |p: &str| -> Vec<String> {
            relative(p.as_bytes())
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(ok("a/b/c"), ["a", "b", "c"]);
        assert_eq!(ok("./a//b/"), ["a", "b"]);
        assert_eq!(ok("./"), Vec::<String>::new());
        assert_eq!(ok("a/.../b"), ["a", "...", "b"]);
        assert_eq!(relative(b"/etc/passwd"), Err("is an absolute path"));
        assert_eq!(relative(b"../x"), Err("contains \"..\""));
        assert_eq!(relative(b"a/../../x"), Err("contains \"..\""));
        // Even a ".." that would stay inside: no archive needs one.
        assert_eq!(relative(b"a/../b"), Err("contains \"..\""));
    }
}
