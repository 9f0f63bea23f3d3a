//! Path resolution inside an image's tree, the way the kernel would do it
//! in a container whose root is the image: symlinks followed (absolute
//! targets from the image root), `..` clamped at `/`.

use super::{join, parent, ImageFs, NodeKind, MAX_SYMLINKS};

/// What a path is in the tree, as far as walking goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Not in the tree.
    Missing,
    /// A directory.
    Dir,
    /// A symlink that was not followed (the last component, not followed).
    Symlink,
    /// Anything else: a file, hard link, device, pipe.
    Other,
}

/// A resolved path and what the walk passed.
#[derive(Debug, Clone)]
pub(crate) struct Walked {
    /// The resolved path.
    pub path: String,
    /// Directories on the way that are not in the tree, in order.
    pub missing: Vec<String>,
    /// Directories on the way that are in the tree.
    pub passed: Vec<String>,
    /// What the final component is (`None` for `/`).
    pub last: Option<Lookup>,
}

/// Why a path does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WalkError {
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("{0} is not a directory")]
    NotADirectory(String),
}

fn push_components<'a>(stack: &mut Vec<&'a str>, path: &'a str) {
    // Reversed, so that popping yields them in order.
    stack.extend(path.split('/').rev().filter(|c| !c.is_empty() && *c != "."));
}

/// Resolves `path` in `fs`; `follow_last` follows a symlink in the final
/// component too.
pub(crate) fn walk(fs: &ImageFs, path: &str, follow_last: bool) -> Result<Walked, WalkError> {
    // Symlink targets are borrowed from the tree, which outlives the walk.
    let mut stack: Vec<&str> = Vec::new();
    push_components(&mut stack, path);
    let mut w = Walked {
        path: "/".to_owned(),
        missing: Vec::new(),
        passed: Vec::new(),
        last: None,
    };
    let mut links = 0;
    while let Some(c) = stack.pop() {
        if c == ".." {
            w.path = parent(&w.path).to_owned();
            w.last = Some(Lookup::Dir);
            continue;
        }
        let is_last = stack.is_empty();
        let cand = join(&w.path, c);
        let kind = fs.nodes.get(&cand).map(|s| &s.node.kind);
        match kind {
            None => {
                if !is_last {
                    w.missing.push(cand.clone());
                }
                w.last = Some(Lookup::Missing);
                w.path = cand;
            }
            Some(NodeKind::Dir) => {
                if !is_last {
                    w.passed.push(cand.clone());
                }
                w.last = Some(Lookup::Dir);
                w.path = cand;
            }
            Some(NodeKind::Symlink(target)) if !is_last || follow_last => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(WalkError::Loop);
                }
                if target.starts_with('/') {
                    w.path = "/".to_owned();
                }
                push_components(&mut stack, target);
                w.last = Some(Lookup::Dir);
            }
            Some(NodeKind::Symlink(_)) => {
                w.last = Some(Lookup::Symlink);
                w.path = cand;
            }
            Some(_) if is_last => {
                w.last = Some(Lookup::Other);
                w.path = cand;
            }
            Some(_) => return Err(WalkError::NotADirectory(cand)),
        }
    }
    Ok(w)
}
