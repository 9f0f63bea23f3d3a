//! `cp`: files between the host and a running container, as tar streams
//! through the monitor to skiff-init, with docker cp's rules for where
//! things land. What comes out of a container is untrusted: it is unpacked
//! without ever following a link out of the destination.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Container, ContainerError, Result};
use crate::agent::{AgentError, PathStat};
use crate::monitor::client;
use crate::monitor::protocol::{self, Event, Request, CONTROL, DATA};

/// Where `copy_from` puts what it copies.
pub enum CopyTarget {
    Path(PathBuf),
    /// The tar stream itself (`skiff cp c:/x -`).
    Tar(Box<dyn Write + Send>),
}

/// What `copy_to` copies.
pub enum CopySource {
    Path(PathBuf),
    /// A tar stream, unpacked as it is (`skiff cp - c:/dir`).
    Tar(Box<dyn Read + Send>),
}

fn invalid(message: String) -> ContainerError {
    ContainerError::Invalid(message)
}

fn ends_with_dot(p: &str) -> bool {
    p.ends_with("/.") || p == "."
}

/// Copies `src` (a path in the container) to the host.
pub async fn copy_from(
    c: &Container,
    src: &str,
    target: CopyTarget,
    follow_link: bool,
) -> Result<()> {
    if !c.status().can_exec() {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    let (mut r, _w) = client::request(
        c,
        &Request::CopyOut {
            path: src.to_owned(),
            follow_link,
        },
    )
    .await?;
    let stat = match r
        .next_json::<Event>()
        .await
        .map_err(|e| client::protocol_error(c, e))?
    {
        Some(Event::PathStat { stat }) => stat,
        Some(Event::Error { failure, message }) => {
            return Err(client::failure(c, failure, message))
        }
        _ => {
            return Err(ContainerError::Monitor {
                name: c.name().to_owned(),
                message: "no answer to cp".into(),
            })
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(8);
    let unpack = match target {
        CopyTarget::Tar(mut w) => tokio::task::spawn_blocking(move || {
            for chunk in rx {
                w.write_all(&chunk)
                    .map_err(|e| invalid(format!("writing the archive: {e}")))?;
            }
            w.flush()
                .map_err(|e| invalid(format!("writing the archive: {e}")))
        }),
        CopyTarget::Path(dest) => {
            let plan = plan_host(&stat, src, &dest)?;
            // Every entry must lie under the one name the container said it
            // sends (a directory's contents, "dir/.", have none).
            let contents = ends_with_dot(src) || src.trim_end_matches('/').is_empty();
            let expect_top = (!contents).then(|| OsString::from(&stat.name));
            tokio::task::spawn_blocking(move || {
                unpack(
                    ChannelReader::new(rx),
                    &plan.root,
                    expect_top.as_deref(),
                    plan.rename_top.as_deref(),
                )
            })
        }
    };
    let mut failed = None;
    loop {
        match r.next().await.map_err(|e| client::protocol_error(c, e))? {
            Some(f) if f.kind == DATA => {
                if tx.send(f.payload).is_err() {
                    break; // the unpacker stopped; its error says why
                }
            }
            Some(f) if f.kind == CONTROL => {
                if let Ok(Event::Error { failure, message }) =
                    serde_json::from_slice::<Event>(&f.payload)
                {
                    failed = Some(client::failure(c, failure, message));
                }
                break;
            }
            _ => {
                failed = Some(invalid("the copy was cut off".into()));
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpack
        .await
        .map_err(|_| invalid("unpacking was interrupted".into()))?;
    match failed {
        Some(e) => Err(e),
        None => unpacked,
    }
}

/// Where a copy out of the container lands: unpack into `root`, the top
/// entry renamed to `rename_top`.
#[derive(Debug, PartialEq, Eq)]
struct HostPlan {
    root: PathBuf,
    rename_top: Option<OsString>,
}

fn plan_host(stat: &PathStat, src: &str, dest: &Path) -> Result<HostPlan> {
    let dest_str = dest.to_string_lossy();
    let contents = ends_with_dot(src);
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok(HostPlan {
            root: dest.to_path_buf(),
            rename_top: None,
        }),
        Ok(_) if stat.is_dir() => Err(invalid(format!(
            "cannot copy a directory over the file {dest_str}"
        ))),
        Ok(_) => Ok(HostPlan {
            root: parent_of(dest),
            rename_top: dest.file_name().map(OsStr::to_owned),
        }),
        Err(_) if dest_str.ends_with('/') => Err(invalid(format!("no such directory: {dest_str}"))),
        Err(_) => {
            let parent = parent_of(dest);
            if !parent.is_dir() {
                return Err(invalid(format!("no such directory: {}", parent.display())));
            }
            if contents {
                std::fs::create_dir(dest)
                    .map_err(|e| invalid(format!("creating {dest_str}: {e}")))?;
                return Ok(HostPlan {
                    root: dest.to_path_buf(),
                    rename_top: None,
                });
            }
            Ok(HostPlan {
                root: parent,
                rename_top: dest.file_name().map(OsStr::to_owned),
            })
        }
    }
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads the chunks a channel delivers (on a blocking thread).
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.cur = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// An entry's path as a relative path of normal components; anything that
/// would leave the destination is refused.
fn relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(invalid(format!(
                    "the archive from the container has an entry outside the destination: {}",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

fn renamed(rel: PathBuf, top: Option<&OsStr>) -> PathBuf {
    let Some(top) = top else { return rel };
    let mut comps = rel.components();
    comps.next();
    let rest = comps.as_path();
    // join("") would add a trailing slash: a file would become a directory.
    if rest.as_os_str().is_empty() {
        PathBuf::from(top)
    } else {
        Path::new(top).join(rest)
    }
}

/// Makes the directories from `root` down to `rel`'s parent, refusing any
/// that is a symlink (or not a directory): nothing is written through a link.
fn safe_parent(root: &Path, rel: &Path) -> Result<()> {
    let mut at = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "{} is not a directory (the copy does not go through links)",
                    at.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&at)
                .map_err(|e| invalid(format!("creating {}: {e}", at.display())))?,
            Err(e) => return Err(invalid(format!("{}: {e}", at.display()))),
        }
    }
    Ok(())
}

/// Checks that no component of `rel`'s parent, below `root`, is a symlink or
/// anything but a directory (or missing): a path through a link is refused.
fn no_link_on_the_way(root: &Path, rel: &Path) -> Result<()> {
    let mut at = root.to_path_buf();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        at.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&at) {
            if !m.is_dir() {
                return Err(invalid(format!(
                    "{} is not a directory (the copy does not go through links)",
                    at.display()
                )));
            }
        }
    }
    Ok(())
}

/// Unpacks a tar stream into `root` (owned by the caller, modes and times
/// kept, set-id bits dropped), every entry under `expect_top` when given,
/// the top entry renamed to `top`. A directory is never replaced by
/// anything else, and nothing is written or linked through a symlink.
fn unpack(
    r: impl Read,
    root: &Path,
    expect_top: Option<&OsStr>,
    top: Option<&OsStr>,
) -> Result<()> {
    let err = |e: std::io::Error| {
        invalid(format!(
            "unpacking into {}: {}",
            root.display(),
            skiff_util::error::chain(&e)
        ))
    };
    let mut ar = tar::Archive::new(r);
    // False keeps mode & 0o777: no set-uid file planted on the host.
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let outside = |p: &Path| {
        invalid(format!(
            "the archive from the container has an entry outside what was asked for: {}",
            p.display()
        ))
    };
    for entry in ar.entries().map_err(err)? {
        let mut e = entry.map_err(err)?;
        let path = e.path().map_err(err)?.into_owned();
        let rel = relative(&path)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        if let Some(want) = expect_top {
            if rel.components().next().map(|c| c.as_os_str()) != Some(want) {
                return Err(outside(&path));
            }
        }
        let rel = renamed(rel, top);
        safe_parent(root, &rel)?;
        let target = root.join(&rel);
        let is_dir = e.header().entry_type() == tar::EntryType::Directory;
        // What is there is replaced, a link included (never followed); a
        // directory only by a directory.
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if m.is_dir() && !is_dir {
                return Err(invalid(format!(
                    "{} is a directory: the copy does not replace it with a file",
                    target.display()
                )));
            }
            if !m.is_dir() {
                std::fs::remove_file(&target).map_err(err)?;
            }
        }
        if e.header().entry_type() == tar::EntryType::Link {
            let Some(link) = e.link_name().map_err(err)? else {
                continue;
            };
            let link = relative(&link)?;
            if let Some(want) = expect_top {
                if link.components().next().map(|c| c.as_os_str()) != Some(want) {
                    return Err(outside(&link));
                }
            }
            let src_rel = renamed(link, top);
            no_link_on_the_way(root, &src_rel)?;
            std::fs::hard_link(root.join(&src_rel), &target).map_err(err)?;
            continue;
        }
        e.unpack(&target).map_err(err)?;
    }
    Ok(())
}

/// Copies `src` on the host into the container at `dest`; `keep_owner`:
/// the files keep their owners (else they belong to root, as with docker cp).
pub async fn copy_to(c: &Container, src: CopySource, dest: &str, keep_owner: bool) -> Result<()> {
    if !c.status().can_exec() {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    let stat = |path: String| async move {
        match client::call(c, &Request::StatPath { path }).await {
            Ok(Event::PathStat { stat }) => Ok(Some(stat)),
            Ok(_) => Ok(None),
            Err(ContainerError::Agent(AgentError::NotFound(_))) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let dest_stat = stat(dest.to_owned()).await?;
    let (dir, top, contents) = match (&src, &dest_stat) {
        (CopySource::Tar(_), Some(s)) if s.is_dir() => (dest.to_owned(), None, false),
        (CopySource::Tar(_), _) => {
            return Err(invalid(format!(
                "{dest} is not a directory in {}: a tar stream unpacks into a directory",
                c.name()
            )))
        }
        (CopySource::Path(p), Some(s)) if s.is_dir() => {
            let contents = ends_with_dot(&p.to_string_lossy());
            let top = (!contents).then(|| base_name(p)).transpose()?;
            (dest.to_owned(), top, contents)
        }
        (CopySource::Path(p), Some(_)) => {
            if p.is_dir() {
                return Err(invalid(format!(
                    "cannot copy a directory over the file {dest} in {}",
                    c.name()
                )));
            }
            (container_parent(dest), Some(container_base(dest)?), false)
        }
        (CopySource::Path(_), None) if dest.ends_with('/') => {
            return Err(invalid(format!(
                "no such directory in {}: {dest}",
                c.name()
            )))
        }
        (CopySource::Path(_), None) => {
            let parent = container_parent(dest);
            match stat(parent.clone()).await? {
                Some(s) if s.is_dir() => {}
                _ => {
                    return Err(invalid(format!(
                        "no such directory in {}: {parent}",
                        c.name()
                    )))
                }
            }
            (parent, Some(container_base(dest)?), false)
        }
    };
    let (mut r, mut w) = client::request(c, &Request::CopyIn { dir, keep_owner }).await?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let pack = tokio::task::spawn_blocking(move || -> Result<()> {
        let out = ChannelWriter { tx };
        match src {
            CopySource::Tar(mut reader) => {
                let mut out = out;
                std::io::copy(&mut reader, &mut out)
                    .map(|_| ())
                    .map_err(|e| invalid(format!("reading the archive: {e}")))
            }
            CopySource::Path(p) => pack(&p, top.as_deref(), contents, out),
        }
    });
    let mut sent = Ok(());
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = protocol::write_frame(&mut w, DATA, &chunk).await {
            sent = Err(client::protocol_error(c, e));
            break;
        }
    }
    drop(rx);
    pack.await
        .map_err(|_| invalid("packing was interrupted".into()))??;
    sent?;
    protocol::write_frame(&mut w, DATA, &[])
        .await
        .map_err(|e| client::protocol_error(c, e))?;
    match r
        .next_json::<Event>()
        .await
        .map_err(|e| client::protocol_error(c, e))?
    {
        Some(Event::Done) => Ok(()),
        Some(Event::Error { failure, message }) => Err(client::failure(c, failure, message)),
        _ => Err(invalid("the container did not confirm the copy".into())),
    }
}

fn base_name(p: &Path) -> Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| invalid(format!("{} has no name to copy it as", p.display())))
}

fn container_parent(p: &str) -> String {
    match p.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.into(),
    }
}

fn container_base(p: &str) -> Result<String> {
    match p.trim_end_matches('/').rsplit('/').next() {
        Some(n) if !n.is_empty() && n != "." && n != ".." => Ok(n.into()),
        _ => Err(invalid(format!("{p} names no file"))),
    }
}

/// Chunks written into a channel (from a blocking thread).
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(64 << 10);
        self.tx
            .blocking_send(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tar of `src`: as `top`, or (`contents`) its entries without it.
fn pack(src: &Path, top: Option<&str>, contents: bool, out: impl Write) -> Result<()> {
    let err = |e: std::io::Error| invalid(format!("reading {}: {e}", src.display()));
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(64 << 10, out));
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src).map_err(err)?;
    if contents {
        for e in std::fs::read_dir(src).map_err(err)? {
            let e = e.map_err(err)?;
            let name = e.file_name();
            if e.file_type().map_err(err)?.is_dir() {
                b.append_dir_all(&name, e.path()).map_err(err)?;
            } else {
                b.append_path_with_name(e.path(), &name).map_err(err)?;
            }
        }
    } else {
        let name = top.unwrap_or_default();
        if meta.is_dir() {
            b.append_dir_all(name, src).map_err(err)?;
        } else {
            b.append_path_with_name(src, name).map_err(err)?;
        }
    }
    b.into_inner().and_then(|mut w| w.flush()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(dir: bool) -> PathStat {
        PathStat {
            name: "x".into(),
            size: 0,
            mode: if dir { 0o040755 } else { 0o100644 },
            mtime: 0,
            link_target: String::new(),
        }
    }

    #[test]
    fn where_a_copy_out_lands() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("existing");
        std::fs::create_dir(&dir).unwrap();
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        // Into an existing directory, under its own name.
        assert_eq!(
            plan_host(&stat(false), "/etc/hosts", &dir).unwrap(),
            HostPlan {
                root: dir.clone(),
                rename_top: None
            }
        );
        // Over a file, or to a new name: renamed.
        assert_eq!(
            plan_host(&stat(false), "/etc/hosts", &file).unwrap(),
            HostPlan {
                root: d.path().into(),
                rename_top: Some("file".into())
            }
        );
        assert_eq!(
            plan_host(&stat(true), "/etc", &d.path().join("new")).unwrap(),
            HostPlan {
                root: d.path().into(),
                rename_top: Some("new".into())
            }
        );
        // A directory's contents into a new directory.
        let fresh = d.path().join("fresh");
        assert_eq!(
            plan_host(&stat(true), "/etc/.", &fresh).unwrap(),
            HostPlan {
                root: fresh.clone(),
                rename_top: None
            }
        );
        assert!(fresh.is_dir());
        // Refused.
        let e = plan_host(&stat(true), "/etc", &file)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("cannot copy a directory over the file {}", file.display())
        );
        let e = plan_host(&stat(false), "/x", &d.path().join("no/such"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("no such directory: {}", d.path().join("no").display())
        );
        let slash = PathBuf::from(format!("{}/missing/", d.path().display()));
        assert!(plan_host(&stat(false), "/x", &slash).is_err());
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Hostile names are set byte by byte: the builder refuses them.
            let field = &mut h.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpack_renames_the_top_and_refuses_escapes() {
        use tar::EntryType::*;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let t = tar_of(&[
            ("etc", Directory, b"", None),
            ("etc/hosts", Regular, b"127.0.0.1 x\n", None),
            ("etc/hard", Link, b"", Some("etc/hosts")),
        ]);
        unpack(
            &t[..],
            &root,
            Some(OsStr::new("etc")),
            Some(OsStr::new("copy")),
        )
        .unwrap();
        // A file renamed as it lands.
        let f = tar_of(&[("hosts", Regular, b"x\n", None)]);
        unpack(
            &f[..],
            &root,
            Some(OsStr::new("hosts")),
            Some(OsStr::new("renamed")),
        )
        .unwrap();
        assert_eq!(std::fs::read(root.join("renamed")).unwrap(), b"x\n");
        assert_eq!(
            std::fs::read(root.join("copy/hosts")).unwrap(),
            b"127.0.0.1 x\n"
        );
        assert_eq!(
            std::fs::read(root.join("copy/hard")).unwrap(),
            b"127.0.0.1 x\n"
        );

        for hostile in [
            tar_of(&[("../escape", Regular, b"x", None)]),
            tar_of(&[("/abs", Regular, b"x", None)]),
            // A link out, then a file through it.
            tar_of(&[
                ("out", Symlink, b"", Some(d.path().to_str().unwrap())),
                ("out/evil", Regular, b"x", None),
            ]),
            tar_of(&[("h", Link, b"", Some("../../etc/passwd"))]),
        ] {
            let r = tempfile::tempdir_in(d.path()).unwrap();
            assert!(unpack(&hostile[..], r.path(), None, None).is_err());
        }
        let outside: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".tmp"))
            .collect();
        assert_eq!(outside, ["root"], "nothing landed outside the destinations");
    }

    /// What the review found: an entry beside the one asked for, a file over
    /// a host directory, a hard link through an earlier symlink, set-id bits.
    #[test]
    fn unpack_keeps_to_what_was_asked_for() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        use tar::EntryType::*;
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret-dir");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("precious"), b"keep").unwrap();
        let home = d.path().join("home");
        std::fs::create_dir_all(home.join("Documents/deep")).unwrap();
        std::fs::write(home.join("Documents/deep/precious"), b"keep").unwrap();

        // `cp c:/app.log home/` with an extra entry named like a host directory.
        let t = tar_of(&[
            ("app.log", Regular, b"log\n", None),
            ("Documents", Regular, b"x", None),
        ]);
        let e = unpack(&t[..], &home, Some(OsStr::new("app.log")), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("outside what was asked for: Documents"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(home.join("Documents/deep/precious")).unwrap(),
            b"keep"
        );
        // A file never replaces a directory, even under the right name.
        let t = tar_of(&[("Documents", Regular, b"x", None)]);
        let e = unpack(&t[..], &home, Some(OsStr::new("Documents")), None).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(home.join("Documents/deep/precious").exists());

        // A symlink to a host directory, then a hard link through it.
        let r = d.path().join("r");
        std::fs::create_dir(&r).unwrap();
        let t = tar_of(&[
            ("x", Directory, b"", None),
            ("x/l", Symlink, b"", Some(secret.to_str().unwrap())),
            ("x/h", Link, b"", Some("x/l/precious")),
        ]);
        assert!(unpack(&t[..], &r, Some(OsStr::new("x")), None).is_err());
        assert!(
            !r.join("x/h").exists(),
            "a host file was linked into the copy"
        );
        assert_eq!(
            std::fs::metadata(secret.join("precious")).unwrap().nlink(),
            1
        );

        // set-uid dropped.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(Regular);
        h.set_mode(0o4755);
        h.set_size(1);
        h.set_path("tool").unwrap();
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let r = d.path().join("s");
        std::fs::create_dir(&r).unwrap();
        unpack(&t[..], &r, Some(OsStr::new("tool")), None).unwrap();
        let mode = std::fs::metadata(r.join("tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn container_paths() {
        assert_eq!(container_parent("/tmp/x"), "/tmp");
        assert_eq!(container_parent("/x"), "/");
        assert_eq!(container_parent("/tmp/dir/"), "/tmp");
        assert_eq!(container_base("/tmp/x/").unwrap(), "x");
        assert!(container_base("/").is_err());
    }
}
