//! ReadChanges: what a build step changed, as an OCI layer.
//!
//! The step ran on an overlayfs (see `guest::container_root`): its upper
//! directory holds every file the step wrote, whole, plus overlayfs's own
//! markers, which become OCI's: a whiteout (a 0:0 character device) is a
//! `.wh.NAME` file, an opaque directory (`trusted.overlay.opaque=y`) gets a
//! `.wh..wh..opq` entry. Entries are in name order, so the same changes give
//! the same tar; hard links stay links; file capabilities (the
//! `security.capability` xattr, as apt sets on ping) are kept. The files
//! skiff-init itself writes for every container (/etc/hosts, /etc/hostname,
//! /etc/resolv.conf) and the mount points it made are left out, as docker
//! leaves its bind mounts out of a layer.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::OFlags;
use tar::{Builder, EntryType, Header};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::pack::{
    fs_error, header, special_header, write_error, ArchiveStream, ChunkSink, ExactSize, QUEUE,
};
use crate::guest::container_root::ChangesDirs;

/// Written by skiff-init into every container's root.
const INIT_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];
/// Directories skiff-init may have made as mount points.
const INIT_DIRS: &[&str] = &["proc", "sys", "dev", "etc"];
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const CAPABILITY_XATTR: &str = "security.capability";

type Archive = Builder<ChunkSink>;

/// Starts the thread that writes the changes into the returned stream.
pub fn start(dirs: Arc<ChangesDirs>) -> ArchiveStream {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let upper = PathBuf::from(format!("/proc/self/fd/{}", dirs.upper.as_raw_fd()));
        let mut archive = Builder::new(ChunkSink::new(tx.clone()));
        match write_all(&mut archive, &upper) {
            Ok(()) => {}
            Err(_) if archive.get_ref().host_gone => {}
            Err(status) => {
                let _ = tx.blocking_send(Err(status));
            }
        }
        drop(dirs);
    });
    ReceiverStream::new(rx)
}

fn write_all(archive: &mut Archive, upper: &Path) -> Result<(), Status> {
    // Depth first in name order: (archive name) still to visit.
    let mut stack: Vec<PathBuf> = Vec::new();
    push_children(&mut stack, upper, Path::new(""))?;
    // Hard links: the first name of each (device, inode) written.
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    while let Some(name) = stack.pop() {
        let path = upper.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| fs_error(&path, &e))?;
        if skip(&name, &path, &meta) {
            continue;
        }
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let file = name
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default();
            let wh = name.with_file_name(format!(".wh.{file}"));
            let mut h = header(&meta, EntryType::Regular, 0);
            h.set_mode(0o644);
            append(archive, &mut h, &wh, io::empty())?;
            continue;
        }
        if ft.is_dir() {
            let mut h = header(&meta, EntryType::Directory, 0);
            append(archive, &mut h, &name, io::empty())?;
            if xattr(&path, OPAQUE_XATTR).as_deref() == Some(b"y") {
                let mut h = header(&meta, EntryType::Regular, 0);
                h.set_mode(0o644);
                append(archive, &mut h, &name.join(".wh..wh..opq"), io::empty())?;
            }
            push_children(&mut stack, &path, &name)?;
            continue;
        }
        if let Some(cap) = xattr(&path, CAPABILITY_XATTR) {
            let key = format!("SCHILY.xattr.{CAPABILITY_XATTR}");
            archive
                .append_pax_extensions([(key.as_str(), cap.as_slice())])
                .map_err(|e| write_error(&e))?;
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = links.get(&key) {
                    let mut h = header(&meta, EntryType::Link, 0);
                    archive
                        .append_link(&mut h, &name, first)
                        .map_err(|e| fs_error(&path, &e))?;
                    continue;
                }
                links.insert(key, name.clone());
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
                .open(&path)
                .map_err(|e| fs_error(&path, &e))?;
            let mut h = header(&meta, EntryType::Regular, meta.size());
            append(archive, &mut h, &name, ExactSize::new(file, meta.size()))?;
        } else if ft.is_symlink() {
            let to = std::fs::read_link(&path).map_err(|e| fs_error(&path, &e))?;
            let mut h = header(&meta, EntryType::Symlink, 0);
            archive
                .append_link(&mut h, &name, to)
                .map_err(|e| fs_error(&path, &e))?;
        } else if let Some(mut h) = special_header(&meta).map_err(|e| fs_error(&path, &e))? {
            append(archive, &mut h, &name, io::empty())?;
        }
        // Sockets have no tar entry; a build step's socket is its own business.
    }
    archive.finish().map_err(|e| write_error(&e))?;
    archive.get_mut().send().map_err(|e| write_error(&e))
}

fn append(
    archive: &mut Archive,
    h: &mut Header,
    name: &Path,
    data: impl io::Read,
) -> Result<(), Status> {
    archive
        .append_data(h, name, data)
        .map_err(|e| write_error(&e))
}

/// What skiff-init wrote, not the step: its /etc files, and a directory it
/// made or copied up for them or as a mount point, holding nothing else.
fn skip(name: &Path, path: &Path, meta: &Metadata) -> bool {
    let Some(rel) = name.to_str() else {
        return false;
    };
    if meta.is_file() && INIT_FILES.contains(&rel) {
        return true;
    }
    // A mount point made in an image without it is empty; /etc holding
    // only skiff-init's files was copied up for them alone.
    if !meta.is_dir() || !INIT_DIRS.contains(&rel) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries.flatten().all(|e| {
        let child = Path::new(rel).join(e.file_name());
        child.to_str().is_some_and(|c| INIT_FILES.contains(&c))
    })
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn push_children(stack: &mut Vec<PathBuf>, path: &Path, name: &Path) -> Result<(), Status> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| fs_error(path, &e))? {
        children.push(entry.map_err(|e| fs_error(path, &e))?.file_name());
    }
    // Popped from the end: reversed, so the archive is in name order.
    children.sort_unstable_by(|a, b| b.cmp(a));
    stack.extend(children.into_iter().map(|c| name.join(c)));
    Ok(())
}
