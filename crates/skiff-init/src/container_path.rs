//! Paths in the container as `skiff cp` names them, and StatPath.
//!
//! A path is cleaned the way docker cleans it (repeated slashes, "." and
//! ".." resolved lexically), except that a trailing "/." is kept as a
//! meaning of its own: the contents of the directory rather than the
//! directory itself.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use skiff_proto::v1::{PathRequest, PathStat};
use tonic::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Absolute and cleaned.
    pub path: PathBuf,
    /// The last component of `path`; "/" for the root.
    pub name: OsString,
    /// The request ended in "/." or named the root: what is inside the
    /// directory, not the directory.
    pub contents: bool,
}

pub fn parse(raw: &str) -> Result<Target, Status> {
    if raw.is_empty() {
        return Err(Status::invalid_argument("no path given"));
    }
    if !raw.starts_with('/') {
        return Err(Status::invalid_argument(format!(
            "path {raw:?} is not absolute"
        )));
    }
    let mut path = PathBuf::from("/");
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(part) => path.push(part),
            // At the root, ".." stays there, as the kernel does it.
            Component::ParentDir => {
                path.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let name = path
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("/"));
    let contents = raw.ends_with("/.") || path == Path::new("/");
    Ok(Target {
        path,
        name,
        contents,
    })
}

/// NOT_FOUND, as docker words it.
pub fn not_found(raw: &str) -> Status {
    Status::not_found(format!("no such file or directory in the container: {raw}"))
}

/// The Status for a failed stat of `raw`.
pub fn stat_error(raw: &str, e: &io::Error) -> Status {
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => not_found(raw),
        Some(rustix::io::Errno::ACCESS) => {
            Status::permission_denied(format!("permission denied: {raw}"))
        }
        _ => Status::internal(format!("stat {raw}: {e}")),
    }
}

/// StatPath: lstat of the path.
pub fn stat(req: &PathRequest) -> Result<PathStat, Status> {
    let target = parse(&req.path)?;
    let meta = std::fs::symlink_metadata(&target.path).map_err(|e| stat_error(&req.path, &e))?;
    let link_target = if meta.file_type().is_symlink() {
        std::fs::read_link(&target.path)
            .map_err(|e| stat_error(&req.path, &e))?
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    Ok(PathStat {
        name: target.name.to_string_lossy().into_owned(),
        size: meta.size(),
        mode: meta.mode(),
        mtime: meta.mtime(),
        link_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(raw: &str) -> (String, String, bool) {
        let t = parse(raw).unwrap();
        (
            t.path.display().to_string(),
            t.name.to_string_lossy().into_owned(),
            t.contents,
        )
    }

    #[test]
    fn cleaning_and_names() {
        assert_eq!(
            t("/etc/hosts"),
            ("/etc/hosts".into(), "hosts".into(), false)
        );
        assert_eq!(t("/etc"), ("/etc".into(), "etc".into(), false));
        assert_eq!(t("/etc/"), ("/etc".into(), "etc".into(), false));
        assert_eq!(t("//etc///./x/"), ("/etc/x".into(), "x".into(), false));
        assert_eq!(t("/etc/."), ("/etc".into(), "etc".into(), true));
        assert_eq!(t("/etc/a/../b"), ("/etc/b".into(), "b".into(), false));
        assert_eq!(t("/../.."), ("/".into(), "/".into(), true));
        assert_eq!(t("/"), ("/".into(), "/".into(), true));
        assert_eq!(t("/."), ("/".into(), "/".into(), true));
    }

    #[test]
    fn relative_and_empty_are_refused() {
        let e = parse("etc").unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::InvalidArgument, "path \"etc\" is not absolute")
        );
        assert_eq!(parse("").unwrap_err().message(), "no path given");
    }
}
