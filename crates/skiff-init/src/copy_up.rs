//! docker's rule for volumes: a new, empty volume mounted over a directory
//! of the image starts out with that directory's content (owners, modes,
//! times, links and special files kept).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

/// Whether `dir` holds nothing but an empty lost+found (a fresh ext4).
pub fn is_empty(dir: &Path) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() != "lost+found" {
            return Ok(false);
        }
        if std::fs::read_dir(entry.path())?.next().is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the tree at `src` into the directory `dst`, and `src`'s own
/// owner, mode and times onto `dst`.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_dir_content(src, dst, &mut links)?;
    // `src` may be a /proc/self/fd link: followed.
    copy_meta(&std::fs::metadata(src)?, dst, false)
}

/// (device, inode) of a file with several links → its first copy.
type Links = HashMap<(u64, u64), PathBuf>;

fn copy_dir_content(src: &Path, dst: &Path, links: &mut Links) -> io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match std::fs::create_dir(&to) {
                Ok(()) => {}
                // lost+found of the new filesystem.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            copy_dir_content(&from, &to, links)?;
            copy_meta(&meta, &to, false)?;
            continue;
        }
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                std::fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            copy_meta(&meta, &to, true)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
            copy_meta(&meta, &to, false)?;
        } else {
            let kind = if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_socket() {
                FileType::Socket
            } else {
                continue;
            };
            rustix::fs::mknodat(
                CWD,
                &to,
                kind,
                Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
            copy_meta(&meta, &to, false)?;
        }
    }
    Ok(())
}

/// Owner first (chown clears set-id bits), then mode, then times.
fn copy_meta(meta: &std::fs::Metadata, to: &Path, symlink: bool) -> io::Result<()> {
    let ids = (
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
    );
    rustix::fs::chownat(CWD, to, ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW)?;
    if !symlink {
        rustix::fs::chmod(to, Mode::from_raw_mode(meta.mode() & 0o7777))?;
    }
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_copied_with_links_and_modes() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();
        std::fs::create_dir_all(s.join("a/b")).unwrap();
        std::fs::write(s.join("a/b/f"), "data").unwrap();
        std::fs::hard_link(s.join("a/b/f"), s.join("a/g")).unwrap();
        std::os::unix::fs::symlink("b/f", s.join("a/l")).unwrap();
        rustix::fs::chmod(s.join("a/b/f").as_path(), Mode::from_raw_mode(0o640)).unwrap();
        rustix::fs::chmod(s, Mode::from_raw_mode(0o710)).unwrap();
        std::fs::create_dir(dst.path().join("lost+found")).unwrap();
        assert!(is_empty(dst.path()).unwrap());
        copy_tree(s, dst.path()).unwrap();
        let d = dst.path();
        assert_eq!(std::fs::read_to_string(d.join("a/b/f")).unwrap(), "data");
        assert_eq!(std::fs::read_link(d.join("a/l")).unwrap(), Path::new("b/f"));
        let f = std::fs::metadata(d.join("a/b/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!(f.ino(), std::fs::metadata(d.join("a/g")).unwrap().ino());
        assert_eq!(std::fs::metadata(d).unwrap().mode() & 0o7777, 0o710);
        assert!(!is_empty(d).unwrap());
    }
}
