//! Resolving paths inside a root and walking trees: the one lstat per
//! entry that a COPY of a big directory costs, and symlinks followed only
//! where COPY follows them.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::pattern::IgnoreMatcher;
use super::{read_err, ContextEntry, ContextError};

/// Symlinks followed while resolving one path before it counts as a loop
/// (Linux's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: u32 = 40;

/// A path resolved inside a root.
pub(super) struct Resolved {
    /// Components relative to the root, symlinks resolved.
    pub real: Vec<OsString>,
    pub host: PathBuf,
    pub meta: Metadata,
}

/// How a symlink that leads above the root is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    /// The build context: an error, the host outside it is not ours to read.
    Refuse,
    /// A stage's file tree: clamped at the root, as the kernel does in a
    /// chroot; absolute targets are relative to the root.
    Clamp,
}

/// Walks a directory tree of a stage's files (no ignore rules; symlinks
/// resolved inside `root` as in a chroot): the entries of [`super::Context::walk`]
/// for `rel`, or `None` when `rel` does not exist.
pub(crate) fn walk_tree(
    root: &Path,
    rel: &Path,
) -> Result<Option<Vec<ContextEntry>>, ContextError> {
    let name = rel.to_string_lossy();
    let Some(r) = resolve(root, &path_components(rel), Escape::Clamp, None, &name)? else {
        return Ok(None);
    };
    let mut out = vec![ContextEntry {
        rel: PathBuf::new(),
        host: r.host.clone(),
        meta: r.meta.clone(),
        link_target: None,
    }];
    if r.meta.is_dir() {
        let mut w = Walker {
            ignore: None,
            out: &mut out,
            pending: Vec::new(),
        };
        w.dir(&r.host, &PathBuf::new(), &[], &[])?;
    }
    Ok(Some(out))
}

/// The depth-first walk under one directory.
pub(super) struct Walker<'a> {
    pub ignore: Option<&'a IgnoreMatcher>,
    pub out: &'a mut Vec<ContextEntry>,
    /// Ignored directories walked into for re-included entries; each is
    /// emitted (once) before the first entry found under it.
    pub pending: Vec<Option<ContextEntry>>,
}

impl Walker<'_> {
    /// `host`: the directory; `rel`: it relative to the selection; `real`
    /// and `state`: it relative to the context root and the ignore state
    /// of its children.
    pub(super) fn dir(
        &mut self,
        host: &Path,
        rel: &Path,
        real: &[u8],
        state: &[bool],
    ) -> Result<(), ContextError> {
        let mut names: Vec<(OsString, fs::DirEntry)> = fs::read_dir(host)
            .map_err(read_err(host))?
            .map(|e| e.map(|e| (e.file_name(), e)))
            .collect::<Result<_, _>>()
            .map_err(read_err(host))?;
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, dirent) in names {
            let child_host = host.join(&name);
            // fstatat on the open directory: the one lstat of this entry.
            let meta = match dirent.metadata() {
                Ok(m) => m,
                // Removed since the listing: as if it had not been there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ContextError::Read {
                        path: child_host,
                        source,
                    })
                }
            };
            let child_rel = rel.join(&name);
            let mut child_real = Vec::new();
            let mut ignored = false;
            if let Some(ig) = self.ignore {
                child_real.reserve(real.len() + 1 + name.len());
                if !real.is_empty() {
                    child_real.extend_from_slice(real);
                    child_real.push(b'/');
                }
                child_real.extend_from_slice(name.as_bytes());
                ignored = ig.ignored(&child_real, state);
            }
            let link_target = if meta.file_type().is_symlink() && !ignored {
                Some(fs::read_link(&child_host).map_err(read_err(&child_host))?)
            } else {
                None
            };
            let is_dir = meta.is_dir();
            let entry = ContextEntry {
                rel: child_rel.clone(),
                host: child_host.clone(),
                meta,
                link_target,
            };
            if !ignored {
                self.flush_pending();
                self.out.push(entry);
            } else if is_dir && self.ignore.is_some_and(|ig| ig.has_exclusions()) {
                self.pending.push(Some(entry));
            } else {
                continue;
            }
            if is_dir {
                let child_state = match self.ignore {
                    Some(ig) => ig.descend(&child_real, state),
                    None => Vec::new(),
                };
                self.dir(&child_host, &child_rel, &child_real, &child_state)?;
                if ignored {
                    self.pending.pop();
                }
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) {
        for p in &mut self.pending {
            if let Some(e) = p.take() {
                self.out.push(e);
            }
        }
    }
}

/// Resolves `comps` under `root`, following symlinks (each counts against
/// [`MAX_SYMLINK_HOPS`]). `None` when something on the way does not exist,
/// is not a directory, or is an ignored symlink (it was never sent).
pub(super) fn resolve(
    root: &Path,
    comps: &[OsString],
    escape: Escape,
    ignore: Option<&IgnoreMatcher>,
    name: &str,
) -> Result<Option<Resolved>, ContextError> {
    let mut todo: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut real: Vec<OsString> = Vec::new();
    let mut last: Option<Metadata> = None;
    let mut via: Option<PathBuf> = None;
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            // Only a symlink's target brings `..` here: sources are cleaned.
            if real.pop().is_none() && escape == Escape::Refuse {
                return Err(ContextError::SymlinkEscape {
                    name: name.to_owned(),
                    link: via.unwrap_or_default(),
                });
            }
            last = None;
            continue;
        }
        real.push(c);
        let host = join_host(root, &real);
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(source) => return Err(ContextError::Read { path: host, source }),
        };
        if !meta.file_type().is_symlink() {
            if !todo.is_empty() && !meta.is_dir() {
                return Ok(None);
            }
            last = Some(meta);
            continue;
        }
        let link_rel: PathBuf = real.iter().collect();
        if ignore.is_some_and(|ig| ig.is_ignored(&join_bytes(&real))) {
            return Ok(None);
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(ContextError::SymlinkLoop(name.to_owned()));
        }
        let target = fs::read_link(&host).map_err(read_err(&host))?;
        real.pop();
        let target: PathBuf = if target.is_absolute() {
            real.clear();
            match escape {
                Escape::Clamp => target,
                // A target inside the context by its host path is fine.
                Escape::Refuse => match target.strip_prefix(root) {
                    Ok(rest) => rest.to_owned(),
                    Err(_) => {
                        return Err(ContextError::SymlinkEscape {
                            name: name.to_owned(),
                            link: link_rel,
                        })
                    }
                },
            }
        } else {
            target
        };
        for c in path_components(&target).into_iter().rev() {
            todo.push_front(c);
        }
        via = Some(link_rel);
        last = None;
    }
    let host = join_host(root, &real);
    let meta = match last {
        Some(m) => m,
        None => fs::metadata(&host).map_err(read_err(&host))?,
    };
    Ok(Some(Resolved { real, host, meta }))
}

/// Whether an error means "not there" (including a file where a directory
/// was expected).
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// A path's components as names, `..` kept (for symlink targets), `.` and
/// the root dropped.
pub(super) fn path_components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

pub(super) fn join_host(root: &Path, real: &[OsString]) -> PathBuf {
    let mut p = root.to_owned();
    p.extend(real);
    p
}

/// Components joined with `/`, as ignore patterns see paths.
pub(super) fn join_bytes(real: &[OsString]) -> Vec<u8> {
    let parts: Vec<&[u8]> = real.iter().map(|c| c.as_bytes()).collect();
    parts.join(&b'/')
}
