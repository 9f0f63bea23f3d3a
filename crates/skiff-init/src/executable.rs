//! Finding the program of a process before it is started, so that "not
//! found" (exit 127 on the host) and "cannot execute" (126) are told apart
//! with docker's wording instead of surfacing as one spawn error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// PATH when the process's environment has none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
}

/// Resolves `arg0`: with a slash it names the file itself (relative to
/// `cwd`), otherwise each PATH directory is tried in order. A PATH hit that
/// exists but is not executable is skipped; if nothing executable turns up,
/// that hit makes the answer "permission denied" (as a shell says) instead
/// of "not found".
pub fn find_executable(arg0: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, LookupError> {
    if arg0.is_empty() {
        return Err(LookupError::NotFound("exec: no command given".to_owned()));
    }
    if arg0.contains('/') {
        let path = cwd.join(arg0);
        return match check(&path) {
            Candidate::Executable => Ok(path),
            Candidate::Missing => Err(LookupError::NotFound(format!(
                "exec: \"{arg0}\": no such file or directory"
            ))),
            Candidate::NotExecutable(why) => Err(LookupError::PermissionDenied(format!(
                "exec: \"{arg0}\": {why}"
            ))),
        };
    }
    let mut denied = None;
    // An empty PATH element means the working directory, as in execvp.
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(dir)
        };
        let path = dir.join(arg0);
        match check(&path) {
            Candidate::Executable => return Ok(path),
            Candidate::Missing => {}
            Candidate::NotExecutable(why) => {
                denied.get_or_insert(format!("exec: \"{arg0}\": {}: {why}", path.display()));
            }
        }
    }
    match denied {
        Some(msg) => Err(LookupError::PermissionDenied(msg)),
        None => Err(LookupError::NotFound(format!(
            "exec: \"{arg0}\": executable file not found in $PATH"
        ))),
    }
}

enum Candidate {
    Executable,
    Missing,
    NotExecutable(&'static str),
}

fn check(path: &Path) -> Candidate {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Candidate::NotExecutable("is a directory"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Candidate::NotExecutable("permission denied")
        }
        Ok(_) => Candidate::Executable,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Candidate::NotExecutable("permission denied")
        }
        Err(_) => Candidate::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn file(path: &Path, mode: u32) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn searches_path_in_order() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        file(&b.join("tool"), 0o755);
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(
            find_executable("tool", &path, Path::new("/")).unwrap(),
            b.join("tool")
        );
        file(&a.join("tool"), 0o755);
        assert_eq!(
            find_executable("tool", &path, Path::new("/")).unwrap(),
            a.join("tool")
        );
    }

    #[test]
    fn non_executable_is_skipped_then_denied() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        file(&a.join("tool"), 0o644);
        let path = format!("{}:{}", a.display(), b.display());
        assert!(matches!(
            find_executable("tool", &path, Path::new("/")),
            Err(LookupError::PermissionDenied(_))
        ));
        file(&b.join("tool"), 0o700);
        assert_eq!(
            find_executable("tool", &path, Path::new("/")).unwrap(),
            b.join("tool")
        );
    }

    #[test]
    fn not_found_message_is_dockers() {
        let err = find_executable("nope-no-such-tool", DEFAULT_PATH, Path::new("/")).unwrap_err();
        assert_eq!(
            err,
            LookupError::NotFound(
                "exec: \"nope-no-such-tool\": executable file not found in $PATH".into()
            )
        );
    }

    #[test]
    fn slash_paths_are_used_as_is() {
        let d = tempfile::tempdir().unwrap();
        file(&d.path().join("run"), 0o755);
        file(&d.path().join("data"), 0o644);
        assert_eq!(
            find_executable("./run", "", d.path()).unwrap(),
            d.path().join("./run")
        );
        let abs = d.path().join("run");
        assert_eq!(
            find_executable(abs.to_str().unwrap(), "", Path::new("/")).unwrap(),
            abs
        );
        assert!(matches!(
            find_executable("./data", DEFAULT_PATH, d.path()),
            Err(LookupError::PermissionDenied(_))
        ));
        assert!(matches!(
            find_executable("./missing", DEFAULT_PATH, d.path()),
            Err(LookupError::NotFound(_))
        ));
        assert!(
            matches!(find_executable("/", DEFAULT_PATH, d.path()), Err(LookupError::PermissionDenied(m)) if m.contains("is a directory"))
        );
    }

    #[test]
    fn finds_sh_on_the_default_path() {
        assert!(find_executable("sh", DEFAULT_PATH, Path::new("/")).is_ok());
    }
}
