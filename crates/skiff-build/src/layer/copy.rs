//! What COPY and ADD write, by docker's rules: where each source lands,
//! which parent directories the layer must create, owners and modes.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::archive::{decoder, inside, sniff_archive};
use super::dest::{resolve_dest, Dest, LowerFs, LowerKind};
use super::tarread::TarReader;
use super::writer::{DataError, Raw};
use super::{Compression, LayerError, LayerWriter};
use crate::context::{walk_tree, Context, ContextEntry, Selected};

/// `--chown` and `--chmod` of a COPY/ADD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Numeric owner for every copied entry and created parent (resolved
    /// against the image's passwd/group by the caller).
    pub chown: Option<(u32, u32)>,
    /// Permission bits for every copied file and directory (not for
    /// created parents, not for symlinks).
    pub chmod: Option<u32>,
}

/// What a copy wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Non-directory entries written (files, symlinks, hard links).
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// COPY from the build context: each selection to `dest` (absolute in the
/// image, WORKDIR already joined, its trailing `/` kept). A directory's
/// contents go into `dest`; a file goes to `dest/<name>` when `dest` ends
/// with `/`, when there are several sources, or when `dest` is a directory
/// in `lower`, and to `dest` itself otherwise. Several sources need a
/// trailing `/`. Missing directories on the way are created (0755, owned by
/// `chown` or 0:0); symlinks on the way are followed through `lower`.
/// Context files are owned by 0:0 unless `chown` says otherwise.
pub fn copy_from_context<W: Write>(
    w: &mut LayerWriter<W>,
    ctx: &Context,
    sel: &[Selected],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
) -> Result<CopyStats, LayerError> {
    let root_owner = |_: &ContextEntry| (0, 0);
    let mut c = Copier::new("COPY", w, dest, sel.len(), o, lower, &root_owner)?;
    for s in sel {
        let entries = ctx.walk(s)?;
        c.copy_tree(&entries, name_of(&s.rel))?;
    }
    Ok(c.stats)
}

/// COPY of files that are not in the context: `sources` (relative to
/// `host_root`, already selected) from a host tree, such as a stage's files
/// extracted to a temporary directory for `COPY --from`. The same rules as
/// [`copy_from_context`]; symlinks are resolved inside `host_root` as in a
/// chroot. Entries keep the host files' numeric owners (right when the tree
/// was extracted with them), unless `chown` is given; see
/// [`copy_from_dir_owned`] for a tree extracted without them.
pub fn copy_from_dir<W: Write>(
    w: &mut LayerWriter<W>,
    host_root: &Path,
    sources: &[PathBuf],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
) -> Result<CopyStats, LayerError> {
    let host_owner = |e: &ContextEntry| (e.meta.uid(), e.meta.gid());
    copy_dir_with(w, host_root, sources, dest, o, lower, &host_owner)
}

/// [`copy_from_dir`] with the owners told by `owner`, given each entry's
/// path relative to `host_root` (symlinks resolved) and its metadata: for a
/// tree extracted by an unprivileged process, whose files are all the
/// builder's, while the stage's owners are known from its layers.
pub fn copy_from_dir_owned<W: Write>(
    w: &mut LayerWriter<W>,
    host_root: &Path,
    sources: &[PathBuf],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
    owner: &dyn Fn(&Path, &Metadata) -> (u32, u32),
) -> Result<CopyStats, LayerError> {
    let lookup =
        |e: &ContextEntry| owner(e.host.strip_prefix(host_root).unwrap_or(&e.host), &e.meta);
    copy_dir_with(w, host_root, sources, dest, o, lower, &lookup)
}

fn copy_dir_with<W: Write>(
    w: &mut LayerWriter<W>,
    host_root: &Path,
    sources: &[PathBuf],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
    owner: &dyn Fn(&ContextEntry) -> (u32, u32),
) -> Result<CopyStats, LayerError> {
    let mut c = Copier::new("COPY", w, dest, sources.len(), o, lower, owner)?;
    for s in sources {
        let entries = walk_tree(host_root, s)?
            .ok_or_else(|| LayerError::NotFound(s.to_string_lossy().into_owned()))?;
        c.copy_tree(&entries, name_of(s))?;
    }
    Ok(c.stats)
}

/// COPY of in-memory files (heredocs): each `(name, content)` is a file
/// source named `name`, mode 0644 unless `chmod`, owned by `chown` or 0:0,
/// with `mtime`.
pub fn copy_bytes<W: Write>(
    w: &mut LayerWriter<W>,
    files: &[(String, Vec<u8>)],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
    mtime: u64,
) -> Result<CopyStats, LayerError> {
    let root_owner = |_: &ContextEntry| (0, 0);
    let mut c = Copier::new("COPY", w, dest, files.len(), o, lower, &root_owner)?;
    for (name, data) in files {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(LayerError::BadAppend {
                path: name.clone(),
                reason: "is not a file name",
            });
        }
        let (target, parents) = c.file_target(name.as_bytes())?;
        c.ensure_dirs(parents, None)?;
        let (uid, gid) = o.chown.unwrap_or((0, 0));
        c.w.header(&Raw {
            path: &target,
            typeflag: b'0',
            link: b"",
            mode: o.chmod.unwrap_or(0o644),
            uid: uid.into(),
            gid: gid.into(),
            mtime,
            size: data.len() as u64,
            dev: (0, 0),
            xattrs: &[],
        })?;
        c.w.data(&mut data.as_slice(), data.len() as u64)
            .map_err(|e| data_err(e, Path::new(name)))?;
        c.stats.files += 1;
        c.stats.bytes += data.len() as u64;
    }
    Ok(c.stats)
}

/// ADD of local sources: a file that is a tar (plain, gzip or zstd, told by
/// its content, not its name) is unpacked into `dest` as a directory, its
/// entries made relative and refused if they would land outside `dest`,
/// device nodes refused, owners kept unless `chown`; anything else is
/// copied as COPY copies it.
pub fn add_local<W: Write>(
    w: &mut LayerWriter<W>,
    ctx: &Context,
    sel: &[Selected],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
) -> Result<CopyStats, LayerError> {
    let root_owner = |_: &ContextEntry| (0, 0);
    let mut c = Copier::new("ADD", w, dest, sel.len(), o, lower, &root_owner)?;
    for s in sel {
        let entries = ctx.walk(s)?;
        let top = &entries[0];
        if top.meta.is_file() {
            if let Some(comp) = sniff_archive(&top.host)? {
                c.unpack(&top.host, comp)
                    .map_err(|source| LayerError::Archive {
                        path: top.host.clone(),
                        source: Box::new(source),
                    })?;
                continue;
            }
        }
        c.copy_tree(&entries, name_of(&s.rel))?;
    }
    Ok(c.stats)
}

/// One COPY/ADD instruction's writing state.
struct Copier<'a, W: Write> {
    w: &'a mut LayerWriter<W>,
    o: &'a CopyOptions,
    dest: Dest,
    several: bool,
    /// Directories this copy has already written (relative paths).
    made: HashSet<Vec<u8>>,
    /// The mtime of created parents (clamped to the epoch by the writer).
    now: u64,
    owner: &'a dyn Fn(&ContextEntry) -> (u32, u32),
    stats: CopyStats,
}

impl<'a, W: Write> Copier<'a, W> {
    fn new(
        op: &'static str,
        w: &'a mut LayerWriter<W>,
        dest: &str,
        sources: usize,
        o: &'a CopyOptions,
        lower: &dyn LowerFs,
        owner: &'a dyn Fn(&ContextEntry) -> (u32, u32),
    ) -> Result<Self, LayerError> {
        let dest = resolve_dest(op, dest, lower)?;
        if sources > 1 && !dest.trailing {
            return Err(LayerError::DestNotDir(op));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Copier {
            w,
            o,
            dest,
            several: sources > 1,
            made: HashSet::new(),
            now,
            owner,
            stats: CopyStats::default(),
        })
    }

    /// The resolved destination, relative, joined.
    fn dest_rel(&self) -> Vec<u8> {
        self.dest.comps.join("/").into_bytes()
    }

    /// Errors unless the destination can be a directory.
    fn need_dir(&self) -> Result<(), LayerError> {
        match self.dest.kind {
            Some(LowerKind::File | LowerKind::Other) => Err(LayerError::NotADirectory {
                op: self.dest.op,
                dest: self.dest.given.clone(),
                path: format!("/{}", self.dest.comps.join("/")),
            }),
            _ => Ok(()),
        }
    }

    /// Where a file source named `name` goes, and how many leading
    /// components of the destination must be directories for it.
    fn file_target(&self, name: &[u8]) -> Result<(Vec<u8>, usize), LayerError> {
        let into = self.dest.trailing
            || self.several
            || self.dest.comps.is_empty()
            || self.dest.kind == Some(LowerKind::Dir);
        if into {
            self.need_dir()?;
            Ok((join(&self.dest_rel(), name), self.dest.comps.len()))
        } else {
            Ok((self.dest_rel(), self.dest.comps.len() - 1))
        }
    }

    /// Writes the missing directories among the first `upto` components of
    /// the destination: 0755 and `chown` or 0:0, except that the last one
    /// takes `last`'s metadata (a directory source copied into a new
    /// destination gives it its own mode and mtime, as BuildKit does).
    fn ensure_dirs(&mut self, upto: usize, last: Option<&ContextEntry>) -> Result<(), LayerError> {
        for i in self.dest.existing..upto {
            let mut rel = self.dest.comps[..=i].join("/").into_bytes();
            if !self.made.insert(rel.clone()) {
                continue;
            }
            rel.push(b'/');
            let (mode, (uid, gid), mtime) = match last {
                Some(e) if i + 1 == upto => (
                    self.o.chmod.unwrap_or(e.meta.mode()),
                    self.o.chown.unwrap_or_else(|| (self.owner)(e)),
                    mtime_of(&e.meta),
                ),
                _ => (0o755, self.o.chown.unwrap_or((0, 0)), self.now),
            };
            self.w.header(&Raw {
                path: &rel,
                typeflag: b'5',
                link: b"",
                mode,
                uid: uid.into(),
                gid: gid.into(),
                mtime,
                size: 0,
                dev: (0, 0),
                xattrs: &[],
            })?;
        }
        Ok(())
    }

    /// One source, walked: a directory's contents into the destination, a
    /// file to where [`Copier::file_target`] says.
    fn copy_tree(&mut self, entries: &[ContextEntry], name: &[u8]) -> Result<(), LayerError> {
        let Some(top) = entries.first() else {
            return Ok(());
        };
        if top.meta.is_dir() {
            self.need_dir()?;
            self.ensure_dirs(self.dest.comps.len(), Some(top))?;
            let base = self.dest_rel();
            for e in &entries[1..] {
                let path = join(&base, e.rel.as_os_str().as_bytes());
                self.entry(&path, e)?;
            }
        } else {
            let (target, parents) = self.file_target(name)?;
            self.ensure_dirs(parents, None)?;
            self.entry(&target, top)?;
        }
        Ok(())
    }

    /// Writes one host entry at `path` (relative in the image).
    fn entry(&mut self, path: &[u8], e: &ContextEntry) -> Result<(), LayerError> {
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if base.starts_with(b".wh.") {
            return Err(LayerError::Reserved(e.host.display().to_string()));
        }
        let ft = e.meta.file_type();
        let (uid, gid) = self.o.chown.unwrap_or_else(|| (self.owner)(e));
        let mode = if ft.is_symlink() {
            0o777
        } else {
            self.o.chmod.unwrap_or(e.meta.mode())
        };
        let mut raw = Raw {
            path,
            typeflag: b'0',
            link: b"",
            mode,
            uid: uid.into(),
            gid: gid.into(),
            mtime: mtime_of(&e.meta),
            size: 0,
            dev: (0, 0),
            xattrs: &[],
        };
        if ft.is_dir() {
            let mut p = path.to_vec();
            p.push(b'/');
            raw.path = &p;
            raw.typeflag = b'5';
            self.made.insert(path.to_vec());
            return self.w.header(&raw);
        }
        if ft.is_symlink() {
            let target = e.link_target.as_deref().unwrap_or(Path::new(""));
            raw.typeflag = b'2';
            raw.link = target.as_os_str().as_bytes();
            self.stats.files += 1;
            return self.w.header(&raw);
        }
        if !ft.is_file() {
            // Sockets, FIFOs and devices have no place in a copied tree.
            tracing::warn!(path = %e.host.display(), "skipping: not a file, directory or symlink");
            return Ok(());
        }
        let mut f = File::open(&e.host).map_err(|source| LayerError::Read {
            path: e.host.clone(),
            source,
        })?;
        raw.size = e.meta.len();
        self.w.header(&raw)?;
        self.w
            .data(&mut f, raw.size)
            .map_err(|err| data_err(err, &e.host))?;
        self.stats.files += 1;
        self.stats.bytes += raw.size;
        Ok(())
    }

    /// Unpacks an archive into the destination directory.
    fn unpack(&mut self, host: &Path, comp: Compression) -> Result<(), LayerError> {
        self.need_dir()?;
        self.ensure_dirs(self.dest.comps.len(), None)?;
        let base = self.dest_rel();
        let mut tr = TarReader::new(decoder(host, comp)?);
        while let Some(e) = tr.next()? {
            let bad = |reason| LayerError::BadEntry {
                path: String::from_utf8_lossy(&e.path).into_owned(),
                reason,
            };
            let rel =
                inside(&e.path).ok_or_else(|| bad("would be unpacked outside the destination"))?;
            if rel.is_empty() {
                // `./`: the destination itself, already there.
                continue;
            }
            if rel
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or_default()
                .starts_with(b".wh.")
            {
                return Err(LayerError::Reserved(
                    String::from_utf8_lossy(&e.path).into_owned(),
                ));
            }
            if matches!(e.typeflag, b'3' | b'4') {
                return Err(bad("is a device node"));
            }
            let mut path = join(&base, &rel);
            let link = match e.typeflag {
                b'1' => match inside(&e.link) {
                    Some(l) if !l.is_empty() => join(&base, &l),
                    _ => return Err(bad("is a hard link to outside the destination")),
                },
                b'2' => e.link.clone(),
                _ => Vec::new(),
            };
            if e.typeflag == b'5' {
                self.made.insert(path.clone());
                path.push(b'/');
            }
            let (uid, gid) = match self.o.chown {
                Some((u, g)) => (u.into(), g.into()),
                None => (e.uid, e.gid),
            };
            self.w.header(&Raw {
                path: &path,
                typeflag: e.typeflag,
                link: &link,
                mode: e.mode,
                uid,
                gid,
                mtime: e.mtime,
                size: e.size,
                dev: (0, 0),
                xattrs: &e.xattrs,
            })?;
            self.w
                .data(&mut tr.data(), e.size)
                .map_err(|err| match err {
                    DataError::Read(err) => LayerError::TarRead(err),
                    DataError::Short => LayerError::TarRead(io::ErrorKind::UnexpectedEof.into()),
                    DataError::Write(err) => LayerError::Write(err),
                })?;
            if e.typeflag != b'5' {
                self.stats.files += 1;
                self.stats.bytes += e.size;
            }
        }
        Ok(())
    }
}

fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        return rel.to_vec();
    }
    let mut p = Vec::with_capacity(base.len() + 1 + rel.len());
    p.extend_from_slice(base);
    p.push(b'/');
    p.extend_from_slice(rel);
    p
}

fn name_of(rel: &Path) -> &[u8] {
    rel.file_name().map(|n| n.as_bytes()).unwrap_or_default()
}

fn mtime_of(meta: &Metadata) -> u64 {
    meta.mtime().max(0) as u64
}

fn data_err(err: DataError, path: &Path) -> LayerError {
    match err {
        DataError::Read(source) => LayerError::Read {
            path: path.to_owned(),
            source,
        },
        DataError::Short => LayerError::Changed {
            path: path.to_owned(),
        },
        DataError::Write(err) => LayerError::Write(err),
    }
}
