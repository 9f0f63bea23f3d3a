//! Replacing a file so that readers see the old one or the whole new one.
//!
//! The one durability rule, for everything skiff renames into place: the new
//! file is fsynced before the rename and its directory after it. A name that a
//! crash leaves behind therefore always points to complete data: the store's
//! blobs and index, cached filesystems, container state and user outputs alike.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `dir/.name.tmp-<pid>-<n>`: unique within and across processes, and hidden,
/// so that listings skip it.
pub fn temp_sibling(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = N.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// fsync of a directory: makes the renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A new version of `dest`, written beside it; [`AtomicFile::commit`] puts it in
/// place. Dropped without a commit, it is removed.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates the temp file with `mode` (before the umask).
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        let tmp = temp_sibling(dest);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        Ok(Self {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The file to write (and seek, and size) before the commit.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is there until commit")
    }

    /// Where it is being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsync, rename over the destination, fsync of the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest)?;
        // Renamed: nothing left for Drop to remove, whatever happens next.
        self.tmp = PathBuf::new();
        sync_dir(parent(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `dest` with `bytes` (see the module's rule).
pub fn write(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(dest, mode)?;
    f.file().write_all(bytes)?;
    f.commit()
}

/// Points the symlink `link` at `target`, replacing what was there at once.
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = temp_sibling(link);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_replaces_whole_with_mode_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write(&p, b"one", 0o600).unwrap();
        write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(entries(d.path()), ["f.json"]);
    }

    #[test]
    fn uncommitted_file_is_removed_and_the_old_one_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write(&p, b"old", 0o644).unwrap();
        let mut f = AtomicFile::create(&p, 0o644).unwrap();
        f.file().write_all(b"half").unwrap();
        assert!(f.temp_path().exists());
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(d.path()), ["f"]);
    }

    #[test]
    fn temp_names_are_unique_and_hidden() {
        let p = Path::new("/x/name");
        let (a, b) = (temp_sibling(p), temp_sibling(p));
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".name.tmp-"));
        assert_eq!(a.parent(), Some(Path::new("/x")));
    }

    #[test]
    fn symlink_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("current");
        replace_symlink(Path::new("a"), &link).unwrap();
        replace_symlink(Path::new("b"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("b"));
        assert_eq!(entries(d.path()), ["current"]);
    }
}
