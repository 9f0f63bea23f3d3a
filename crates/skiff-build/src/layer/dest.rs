//! The destination of a COPY/ADD in the image below: what exists there,
//! and where its path leads through the image's symlinks.

use std::collections::VecDeque;

use super::LayerError;

/// Symlinks followed resolving a destination (Linux's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: u32 = 40;

/// What the image below the layer has at a path: how COPY learns whether
/// its destination exists, is a directory, or is a symlink to follow.
pub trait LowerFs {
    /// The kind of `path` (absolute, `/`-separated). The implementor does
    /// no symlink resolution: a symlink anywhere is reported as such only
    /// when it is the last component, and the copy code follows it.
    fn kind(&self, path: &str) -> Option<LowerKind>;
}

/// A path in the lower image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LowerKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink and its target as stored.
    Symlink(String),
    /// Anything else (device, FIFO, socket).
    Other,
}

/// The lower image of `FROM scratch`: nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyLower;

impl LowerFs for EmptyLower {
    fn kind(&self, _path: &str) -> Option<LowerKind> {
        None
    }
}

/// The destination, resolved through the lower image's symlinks.
pub(super) struct Dest {
    /// `COPY` or `ADD`, for messages.
    pub op: &'static str,
    /// As given.
    pub given: String,
    /// Components of the resolved path.
    pub comps: Vec<String>,
    /// How many leading components exist as directories in the lower image.
    pub existing: usize,
    /// What the resolved path is in the lower image.
    pub kind: Option<LowerKind>,
    /// Whether it was written as a directory (`/` or `/.` at the end).
    pub trailing: bool,
}

/// Resolves `dest` through `lower`, following symlinks (absolute targets
/// from the image root; `..` never above it) so that files land where the
/// image's symlinks point.
pub(super) fn resolve_dest(
    op: &'static str,
    dest: &str,
    lower: &dyn LowerFs,
) -> Result<Dest, LayerError> {
    let mut todo: VecDeque<String> = split(dest);
    let mut comps: Vec<String> = Vec::new();
    let mut existing = 0;
    let mut kind = Some(LowerKind::Dir);
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            comps.pop();
            existing = existing.min(comps.len());
            kind = (comps.len() == existing).then_some(LowerKind::Dir);
            continue;
        }
        comps.push(c);
        if comps.len() - 1 > existing {
            // Under a missing directory: missing too, nothing to ask.
            kind = None;
            continue;
        }
        let path = format!("/{}", comps.join("/"));
        match lower.kind(&path) {
            Some(LowerKind::Symlink(target)) => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(LayerError::DestLoop {
                        op,
                        dest: dest.to_owned(),
                    });
                }
                comps.pop();
                if target.starts_with('/') {
                    comps.clear();
                    existing = 0;
                }
                for t in split(&target).into_iter().rev() {
                    todo.push_front(t);
                }
                kind = Some(LowerKind::Dir);
            }
            Some(LowerKind::Dir) => {
                existing = comps.len();
                kind = Some(LowerKind::Dir);
            }
            Some(k) => {
                if !todo.is_empty() {
                    return Err(LayerError::NotADirectory {
                        op,
                        dest: dest.to_owned(),
                        path,
                    });
                }
                kind = Some(k);
            }
            None => kind = None,
        }
    }
    Ok(Dest {
        op,
        given: dest.to_owned(),
        comps,
        existing,
        kind,
        trailing: dest.ends_with('/') || dest.ends_with("/."),
    })
}

fn split(p: &str) -> VecDeque<String> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect()
}
