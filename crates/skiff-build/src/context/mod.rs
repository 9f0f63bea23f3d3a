//! The build context: the directory COPY and ADD read from, its ignore file,
//! what a COPY source selects, the walk of a selected tree and the content
//! hash that keys the step cache.
//!
//! Ignored files are invisible, as if they had not been sent (docker sends
//! the context filtered; COPY then sees only what arrived). Symlinks are
//! resolved inside the context: one that leads out of it is an error rather
//! than a silent read of a host file. Inside a selected directory symlinks
//! are never followed; they are copied as symlinks.

mod pattern;
#[cfg(test)]
mod tests;
mod walk;

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use skiff_oci::Digest;

use pattern::IgnoreMatcher;
pub(crate) use walk::walk_tree;
use walk::{join_bytes, path_components, resolve, Escape, Walker};

/// What can go wrong reading the build context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory cannot be opened.
    #[error("opening the build context {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The context is not a directory.
    #[error("the build context {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A file or directory of the context cannot be read.
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line of the ignore file is not a valid pattern.
    #[error("{file}, line {line}: bad pattern {pattern:?}")]
    BadIgnorePattern {
        file: PathBuf,
        line: usize,
        pattern: String,
    },
    /// A COPY source is not a valid glob.
    #[error("COPY source '{0}': bad pattern")]
    BadSource(String),
    /// A COPY source selects nothing (missing, or ignored).
    #[error("COPY source '{0}' not found in the build context")]
    NotFound(String),
    /// A COPY source climbs out of the context with `..`.
    #[error("COPY source '{0}' is outside the build context")]
    Outside(String),
    /// A COPY source leads out of the context through a symlink.
    #[error(
        "COPY source '{name}' is outside the build context: symlink '{link}' points out of it"
    )]
    SymlinkEscape { name: String, link: PathBuf },
    /// Resolving a COPY source followed too many symlinks.
    #[error("COPY source '{0}': too many levels of symbolic links")]
    SymlinkLoop(String),
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Read {
        path: path.to_owned(),
        source,
    }
}

/// An opened build context: its root and its ignore rules.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: IgnoreMatcher,
    ignore_file: Option<PathBuf>,
}

/// One thing a COPY source selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The source as written (after variable expansion), for messages.
    pub source: String,
    /// The path relative to the context root, as named (symlinks in it not
    /// resolved, so its last component is the name COPY gives a file);
    /// empty for the root.
    pub rel: PathBuf,
    /// Whether it is (or, through symlinks, leads to) a directory.
    pub is_dir: bool,
}

/// One entry of a walked selection.
#[derive(Clone, Debug)]
pub struct ContextEntry {
    /// The path relative to the selected path; empty for the selected path
    /// itself, which is always the first entry.
    pub rel: PathBuf,
    /// Where it is on the host.
    pub host: PathBuf,
    /// Its `lstat` (for the first entry: the `stat` of what it leads to).
    pub meta: Metadata,
    /// A symlink's target, read once during the walk.
    pub link_target: Option<PathBuf>,
}

impl Context {
    /// Opens the context `dir` for the build of `containerfile`. The ignore
    /// file is the first of `<containerfile>.containerignore` and
    /// `<containerfile>.dockerignore` beside the Containerfile, then
    /// `.containerignore` and `.dockerignore` in the context root (podman's
    /// and docker's order).
    pub fn open(dir: &Path, containerfile: &Path) -> Result<Context, ContextError> {
        let root = fs::canonicalize(dir).map_err(|source| ContextError::Open {
            path: dir.to_owned(),
            source,
        })?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory(dir.to_owned()));
        }
        let mut candidates = Vec::new();
        if let Some(name) = containerfile.file_name() {
            let beside = containerfile.parent().unwrap_or(Path::new(""));
            for ext in [".containerignore", ".dockerignore"] {
                let mut n = name.to_owned();
                n.push(ext);
                candidates.push(beside.join(n));
            }
        }
        candidates.push(root.join(".containerignore"));
        candidates.push(root.join(".dockerignore"));
        let mut ignore = IgnoreMatcher::default();
        let mut ignore_file = None;
        for c in candidates {
            let text = match fs::read(&c) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                    continue
                }
                Err(source) => return Err(ContextError::Read { path: c, source }),
            };
            let text = String::from_utf8_lossy(&text);
            ignore = IgnoreMatcher::parse(&text).map_err(|(line, pattern)| {
                ContextError::BadIgnorePattern {
                    file: c.clone(),
                    line,
                    pattern,
                }
            })?;
            ignore_file = Some(c);
            break;
        }
        Ok(Context {
            root,
            ignore,
            ignore_file,
        })
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore file in use, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// What COPY/ADD `sources` (already variable-expanded) select, in order;
    /// a glob's matches sorted by name. A leading `/` means the context root
    /// and `.` is the root; `*`, `?` and `[...]` match within one path
    /// component (Go's `filepath.Match`; `**` is not special). Ignored files
    /// are not found; a source that climbs out of the context, by `..` or
    /// through a symlink, is an error naming it, and so is one that matches
    /// nothing.
    pub fn select(&self, sources: &[String]) -> Result<Vec<Selected>, ContextError> {
        let mut out = Vec::new();
        for source in sources {
            let comps = source_components(source)?;
            let before = out.len();
            if !comps.iter().any(|c| pattern::has_wildcard(c)) {
                let comps: Vec<OsString> = comps.iter().map(OsString::from).collect();
                if let Some(sel) = self.select_one(source, &comps)? {
                    out.push(sel);
                }
            } else {
                for cand in self.expand(source, &comps)? {
                    if let Some(sel) = self.select_one(source, &cand)? {
                        out.push(sel);
                    }
                }
            }
            if out.len() == before {
                return Err(ContextError::NotFound(source.clone()));
            }
        }
        Ok(out)
    }

    /// Every entry of a selection: the selected path itself first (rel
    /// empty), then, for a directory, everything under it depth-first with
    /// each directory's entries sorted by name bytes. Ignored entries are
    /// skipped (an ignored directory still appears when something under it
    /// is re-included by a `!` pattern). One `lstat` per entry, plus one
    /// `readlink` per symlink; contents are not read.
    pub fn walk(&self, sel: &Selected) -> Result<Vec<ContextEntry>, ContextError> {
        let comps = path_components(&sel.rel);
        let r = resolve(
            &self.root,
            &comps,
            Escape::Refuse,
            Some(&self.ignore),
            &sel.source,
        )?
        .ok_or_else(|| ContextError::NotFound(sel.source.clone()))?;
        let real = join_bytes(&r.real);
        let mut out = vec![ContextEntry {
            rel: PathBuf::new(),
            host: r.host.clone(),
            meta: r.meta.clone(),
            link_target: None,
        }];
        if r.meta.is_dir() {
            let state = self.ignore.state_for(&real);
            let mut w = Walker {
                ignore: Some(&self.ignore),
                out: &mut out,
                pending: Vec::new(),
            };
            w.dir(&r.host, &PathBuf::new(), &real, &state)?;
        }
        Ok(out)
    }

    /// A sha256 (`sha256:<hex>`) over what the selections are, in walk
    /// order: names, file types, mode bits, sizes, contents and symlink
    /// targets, and not mtimes or owners, which a checkout or a copy
    /// changes without changing what COPY means. The cache key of a
    /// COPY/ADD.
    pub fn content_hash(&self, sel: &[Selected]) -> Result<String, ContextError> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 128 << 10];
        for s in sel {
            field(&mut h, b"selected");
            field(&mut h, s.rel.as_os_str().as_bytes());
            h.update([s.is_dir as u8]);
            for e in self.walk(s)? {
                field(&mut h, e.rel.as_os_str().as_bytes());
                let ft = e.meta.file_type();
                let kind = if ft.is_dir() {
                    b'd'
                } else if ft.is_file() {
                    b'f'
                } else if ft.is_symlink() {
                    b'l'
                } else {
                    b'o'
                };
                h.update([kind]);
                h.update((e.meta.mode() & 0o7777).to_le_bytes());
                if ft.is_file() {
                    h.update(e.meta.len().to_le_bytes());
                    let mut f = File::open(&e.host).map_err(read_err(&e.host))?;
                    loop {
                        let n = match f.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(source) => {
                                return Err(ContextError::Read {
                                    path: e.host.clone(),
                                    source,
                                })
                            }
                        };
                        h.update(&buf[..n]);
                    }
                }
                if let Some(t) = &e.link_target {
                    field(&mut h, t.as_os_str().as_bytes());
                }
            }
        }
        Ok(Digest::from_hasher(h).to_string())
    }

    /// A selection for the literal path `comps`, or `None` when it does not
    /// exist or is ignored.
    fn select_one(
        &self,
        source: &str,
        comps: &[OsString],
    ) -> Result<Option<Selected>, ContextError> {
        let Some(r) = resolve(
            &self.root,
            comps,
            Escape::Refuse,
            Some(&self.ignore),
            source,
        )?
        else {
            return Ok(None);
        };
        let real = join_bytes(&r.real);
        if !real.is_empty() && self.ignore.is_ignored(&real) {
            // An ignored directory is there only for what `!` brings back.
            if !(r.meta.is_dir() && self.ignore.has_exclusions()) {
                return Ok(None);
            }
            let mut out = Vec::new();
            let mut w = Walker {
                ignore: Some(&self.ignore),
                out: &mut out,
                pending: Vec::new(),
            };
            w.dir(
                &r.host,
                &PathBuf::new(),
                &real,
                &self.ignore.state_for(&real),
            )?;
            if out.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(Selected {
            source: source.to_owned(),
            rel: comps.iter().collect(),
            is_dir: r.meta.is_dir(),
        }))
    }

    /// The candidate paths of a glob source: each wildcard component is
    /// matched against the names in the directories reached so far.
    fn expand(&self, source: &str, comps: &[String]) -> Result<Vec<Vec<OsString>>, ContextError> {
        let mut cands: Vec<Vec<OsString>> = vec![Vec::new()];
        for comp in comps {
            if !pattern::has_wildcard(comp) {
                for c in &mut cands {
                    c.push(OsString::from(comp));
                }
                continue;
            }
            let re = pattern::glob_regex(comp)
                .map_err(|_| ContextError::BadSource(source.to_owned()))?;
            let mut next = Vec::new();
            for c in &cands {
                let Some(r) = resolve(&self.root, c, Escape::Refuse, Some(&self.ignore), source)?
                else {
                    continue;
                };
                if !r.meta.is_dir() {
                    continue;
                }
                let mut names: Vec<OsString> = fs::read_dir(&r.host)
                    .map_err(read_err(&r.host))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()
                    .map_err(read_err(&r.host))?;
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for n in names {
                    if re.is_match(n.as_bytes()) {
                        let mut p = c.clone();
                        p.push(n);
                        next.push(p);
                    }
                }
            }
            cands = next;
        }
        Ok(cands)
    }
}

/// A COPY source as components relative to the root: a leading `/` is the
/// root, `.` and empty components dropped, `..` resolved lexically (Go's
/// `filepath.Clean`) and refused when it climbs above the root.
fn source_components(source: &str) -> Result<Vec<String>, ContextError> {
    let mut out: Vec<String> = Vec::new();
    for c in source.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(ContextError::Outside(source.to_owned()));
                }
            }
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// A length-prefixed field, so that no two different inputs hash alike.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}
