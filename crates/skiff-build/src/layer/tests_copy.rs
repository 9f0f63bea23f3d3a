use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::tarread::TarReader;
use super::*;
use crate::context::Context;

/// A lower image described by its paths.
#[derive(Default)]
struct Lower(BTreeMap<String, LowerKind>);

impl Lower {
    fn with(items: &[(&str, LowerKind)]) -> Self {
        Lower(
            items
                .iter()
                .map(|(p, k)| (p.to_string(), k.clone()))
                .collect(),
        )
    }
}

impl LowerFs for Lower {
    fn kind(&self, path: &str) -> Option<LowerKind> {
        self.0.get(path).cloned()
    }
}

/// One entry of a written layer.
#[derive(Debug, PartialEq, Eq)]
struct Out {
    path: String,
    typeflag: u8,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    link: String,
    data: Vec<u8>,
}

fn read_layer(bytes: &[u8]) -> Vec<Out> {
    let mut r = TarReader::new(bytes);
    let mut out = Vec::new();
    while let Some(e) = r.next().unwrap() {
        let mut data = Vec::new();
        r.data().read_to_end(&mut data).unwrap();
        out.push(Out {
            path: String::from_utf8(e.path).unwrap(),
            typeflag: e.typeflag,
            mode: e.mode,
            owner: (e.uid, e.gid),
            mtime: e.mtime,
            link: String::from_utf8(e.link).unwrap(),
            data,
        });
    }
    out
}

fn paths(out: &[Out]) -> Vec<&str> {
    out.iter().map(|o| o.path.as_str()).collect()
}

fn context(files: &[&str]) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let p = dir.path().join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("<{f}>")).unwrap();
    }
    let ctx = Context::open(dir.path(), &dir.path().join("Containerfile")).unwrap();
    (dir, ctx)
}

/// COPY `sources` to `dest` in a fresh uncompressed layer.
fn copy(
    ctx: &Context,
    sources: &[&str],
    dest: &str,
    o: &CopyOptions,
    lower: &dyn LowerFs,
) -> Result<(Vec<Out>, CopyStats), LayerError> {
    let sel = ctx.select(&sources.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None)?;
    let stats = copy_from_context(&mut w, ctx, &sel, dest, o, lower)?;
    let (bytes, _) = w.finish()?;
    Ok((read_layer(&bytes), stats))
}

const NONE: CopyOptions = CopyOptions {
    chown: None,
    chmod: None,
};

#[test]
fn directory_source_copies_its_contents() {
    let (d, ctx) = context(&["src/a.txt", "src/sub/b.txt"]);
    fs::set_permissions(d.path().join("src"), fs::Permissions::from_mode(0o750)).unwrap();
    let (out, stats) = copy(&ctx, &["src"], "/app", &NONE, &EmptyLower).unwrap();
    assert_eq!(
        paths(&out),
        ["app/", "app/a.txt", "app/sub/", "app/sub/b.txt"]
    );
    // The new destination takes the source directory's mode.
    assert_eq!(out[0].mode, 0o750);
    assert_eq!(out[1].data, b"<src/a.txt>");
    assert_eq!(
        stats,
        CopyStats {
            files: 2,
            bytes: 26
        }
    );
    // Into an existing directory: only the contents.
    let lower = Lower::with(&[("/app", LowerKind::Dir)]);
    let (out, _) = copy(&ctx, &["src"], "/app", &NONE, &lower).unwrap();
    assert_eq!(paths(&out), ["app/a.txt", "app/sub/", "app/sub/b.txt"]);
}

#[test]
fn file_source_destination_rules() {
    let (_d, ctx) = context(&["a.txt", "b.txt"]);
    // Trailing slash: into the directory, which is created.
    let (out, _) = copy(&ctx, &["a.txt"], "/app/", &NONE, &EmptyLower).unwrap();
    assert_eq!(paths(&out), ["app/", "app/a.txt"]);
    assert_eq!((out[0].mode, out[0].owner), (0o755, (0, 0)));
    // No slash, nothing there: the file is the destination.
    let (out, _) = copy(&ctx, &["a.txt"], "/app/renamed", &NONE, &EmptyLower).unwrap();
    assert_eq!(paths(&out), ["app/", "app/renamed"]);
    // No slash, an existing directory: into it.
    let lower = Lower::with(&[("/app", LowerKind::Dir)]);
    let (out, _) = copy(&ctx, &["a.txt"], "/app", &NONE, &lower).unwrap();
    assert_eq!(paths(&out), ["app/a.txt"]);
    // An existing file is replaced.
    let lower = Lower::with(&[("/app", LowerKind::Dir), ("/app/x", LowerKind::File)]);
    let (out, _) = copy(&ctx, &["a.txt"], "/app/x", &NONE, &lower).unwrap();
    assert_eq!(paths(&out), ["app/x"]);
    // Several sources: into the directory.
    let (out, _) = copy(&ctx, &["a.txt", "b.txt"], "/app/", &NONE, &EmptyLower).unwrap();
    assert_eq!(paths(&out), ["app/", "app/a.txt", "app/b.txt"]);
    // To the root.
    let (out, _) = copy(&ctx, &["a.txt"], "/", &NONE, &EmptyLower).unwrap();
    assert_eq!(paths(&out), ["a.txt"]);
}

#[test]
fn several_sources_need_a_trailing_slash() {
    let (_d, ctx) = context(&["a.txt", "b.txt"]);
    let want = "When using COPY with more than one source file, the destination must be a directory and end with a /";
    let err = copy(&ctx, &["a.txt", "b.txt"], "/app", &NONE, &EmptyLower).unwrap_err();
    assert_eq!(err.to_string(), want);
    // A glob with several matches counts as several.
    let err = copy(&ctx, &["*.txt"], "/app", &NONE, &EmptyLower).unwrap_err();
    assert_eq!(err.to_string(), want);
    // Even an existing directory needs the slash.
    let lower = Lower::with(&[("/app", LowerKind::Dir)]);
    assert!(copy(&ctx, &["*.txt"], "/app", &NONE, &lower).is_err());
    assert!(copy(&ctx, &["*.txt"], "/app/", &NONE, &lower).is_ok());
}

#[test]
fn parents_created_only_where_lower_lacks_them() {
    let (_d, ctx) = context(&["a.txt"]);
    let lower = Lower::with(&[("/usr", LowerKind::Dir), ("/usr/local", LowerKind::Dir)]);
    let o = CopyOptions {
        chown: Some((1000, 1001)),
        chmod: Some(0o600),
    };
    let (out, _) = copy(&ctx, &["a.txt"], "/usr/local/share/x/", &o, &lower).unwrap();
    assert_eq!(
        paths(&out),
        [
            "usr/local/share/",
            "usr/local/share/x/",
            "usr/local/share/x/a.txt"
        ]
    );
    // Parents: chown, but 0755 whatever chmod says; the file: both.
    for p in &out[..2] {
        assert_eq!((p.typeflag, p.mode, p.owner), (b'5', 0o755, (1000, 1001)));
    }
    assert_eq!((out[2].mode, out[2].owner), (0o600, (1000, 1001)));
    // A file where a directory is needed.
    let lower = Lower::with(&[("/usr", LowerKind::File)]);
    let err = copy(&ctx, &["a.txt"], "/usr/local/", &NONE, &lower).unwrap_err();
    assert_eq!(
        err.to_string(),
        "COPY destination '/usr/local/': '/usr' is not a directory"
    );
}

#[test]
fn chown_and_chmod_apply_to_copied_entries() {
    let (d, ctx) = context(&["src/a.txt", "src/sub/b.txt"]);
    symlink("a.txt", d.path().join("src/ln")).unwrap();
    let o = CopyOptions {
        chown: Some((7, 8)),
        chmod: Some(0o640),
    };
    let lower = Lower::with(&[("/app", LowerKind::Dir)]);
    let (out, _) = copy(&ctx, &["src"], "/app/", &o, &lower).unwrap();
    assert_eq!(
        paths(&out),
        ["app/a.txt", "app/ln", "app/sub/", "app/sub/b.txt"]
    );
    for e in &out {
        assert_eq!(e.owner, (7, 8), "{}", e.path);
        let want = if e.typeflag == b'2' { 0o777 } else { 0o640 };
        assert_eq!(e.mode, want, "{}", e.path);
    }
    // Without chown: 0:0 for context files, even when the host says else.
    std::os::unix::fs::chown(d.path().join("src/a.txt"), Some(1234), Some(1234)).unwrap();
    let (out, _) = copy(&ctx, &["src/a.txt"], "/app/", &NONE, &lower).unwrap();
    assert_eq!(out[0].owner, (0, 0));
}

#[test]
fn symlinks_in_dest_follow_the_lower_image() {
    let (_d, ctx) = context(&["a.txt"]);
    let lower = Lower::with(&[
        ("/app", LowerKind::Symlink("/srv/app".into())),
        ("/srv", LowerKind::Dir),
        ("/srv/app", LowerKind::Dir),
        ("/lib", LowerKind::Symlink("usr/lib".into())),
        ("/usr", LowerKind::Dir),
        ("/usr/lib", LowerKind::Dir),
        ("/loop", LowerKind::Symlink("/loop".into())),
    ]);
    let (out, _) = copy(&ctx, &["a.txt"], "/app/", &NONE, &lower).unwrap();
    assert_eq!(paths(&out), ["srv/app/a.txt"]);
    // A symlink to a directory at the end, no slash: into it.
    let (out, _) = copy(&ctx, &["a.txt"], "/app", &NONE, &lower).unwrap();
    assert_eq!(paths(&out), ["srv/app/a.txt"]);
    let (out, _) = copy(&ctx, &["a.txt"], "/lib/x/", &NONE, &lower).unwrap();
    assert_eq!(paths(&out), ["usr/lib/x/", "usr/lib/x/a.txt"]);
    let err = copy(&ctx, &["a.txt"], "/loop/", &NONE, &lower).unwrap_err();
    assert!(err.to_string().contains("symbolic links"), "{err}");
}

#[test]
fn symlinks_copied_as_symlinks_with_host_mtimes() {
    let (d, ctx) = context(&["src/a.txt"]);
    symlink("/etc/shadow", d.path().join("src/out")).unwrap();
    let f = fs::File::options()
        .write(true)
        .open(d.path().join("src/a.txt"))
        .unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    let (out, stats) = copy(&ctx, &["src"], "/", &NONE, &EmptyLower).unwrap();
    assert_eq!(paths(&out), ["a.txt", "out"]);
    assert_eq!(out[0].mtime, 1_000_000);
    assert_eq!(
        (out[1].typeflag, out[1].link.as_str()),
        (b'2', "/etc/shadow")
    );
    assert_eq!(stats.files, 2);
}

#[test]
fn whiteout_names_refused() {
    let (_d, ctx) = context(&["src/.wh.x"]);
    let err = copy(&ctx, &["src"], "/app/", &NONE, &EmptyLower).unwrap_err();
    assert!(matches!(err, LayerError::Reserved(_)), "{err}");
}

#[test]
fn copy_bytes_heredoc_files() {
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    let files = vec![
        ("run.sh".to_string(), b"echo hi\n".to_vec()),
        ("conf".to_string(), b"x=1\n".to_vec()),
    ];
    let stats = copy_bytes(&mut w, &files, "/opt/", &NONE, &EmptyLower, 42).unwrap();
    let out = read_layer(&w.finish().unwrap().0);
    assert_eq!(paths(&out), ["opt/", "opt/run.sh", "opt/conf"]);
    assert_eq!(
        (out[1].mode, out[1].mtime, &out[1].data[..]),
        (0o644, 42, &b"echo hi\n"[..])
    );
    assert_eq!(
        stats,
        CopyStats {
            files: 2,
            bytes: 12
        }
    );
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    assert!(copy_bytes(&mut w, &files, "/opt", &NONE, &EmptyLower, 0).is_err());
}

#[test]
fn copy_from_dir_resolves_in_the_stage_root() {
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), "ELF").unwrap();
    std::os::unix::fs::chown(root.join("usr/bin/tool"), Some(33), Some(44)).unwrap();
    // An absolute symlink means the stage's /usr/bin, not the host's.
    symlink("/usr/bin", root.join("bin")).unwrap();
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    copy_from_dir(
        &mut w,
        root,
        &[PathBuf::from("bin/tool")],
        "/x/",
        &NONE,
        &EmptyLower,
    )
    .unwrap();
    let out = read_layer(&w.finish().unwrap().0);
    assert_eq!(paths(&out), ["x/", "x/tool"]);
    assert_eq!((out[1].owner, &out[1].data[..]), ((33, 44), &b"ELF"[..]));
    // Owners from the caller's lookup instead.
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    let owner = |p: &Path, _: &std::fs::Metadata| {
        assert_eq!(p, Path::new("usr/bin/tool"));
        (5, 6)
    };
    copy_from_dir_owned(
        &mut w,
        root,
        &[PathBuf::from("bin/tool")],
        "/x/",
        &NONE,
        &EmptyLower,
        &owner,
    )
    .unwrap();
    let out = read_layer(&w.finish().unwrap().0);
    assert_eq!(out[1].owner, (5, 6));
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    assert!(copy_from_dir(
        &mut w,
        root,
        &[PathBuf::from("nope")],
        "/x/",
        &NONE,
        &EmptyLower
    )
    .is_err());
}

/// A tar with entries made by hand (the tar crate refuses hostile names).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, ty, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o640);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(77);
        h.set_size(data.len() as u64);
        h.set_entry_type(*ty);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn add(files: &[(&str, Vec<u8>)], sources: &[&str], dest: &str) -> Result<Vec<Out>, LayerError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let ctx = Context::open(dir.path(), &dir.path().join("Containerfile")).unwrap();
    let sel = ctx.select(&sources.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None)?;
    add_local(&mut w, &ctx, &sel, dest, &NONE, &EmptyLower)?;
    Ok(read_layer(&w.finish()?.0))
}

#[test]
fn add_unpacks_archives_by_content() {
    use tar::EntryType as T;
    let tar = tar_of(&[
        ("./", T::Directory, b""),
        ("a/", T::Directory, b""),
        ("a/b", T::Regular, b"bee"),
        ("/abs/c", T::Regular, b"c"),
        ("x/../d", T::Regular, b"d"),
    ]);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let files = [
        ("app.tgz", gzip(&tar)),
        ("plain.bin", tar.clone()),
        ("z", zst),
        ("notes.gz", gzip(b"just text, not a tar")),
    ];
    for name in ["app.tgz", "plain.bin", "z"] {
        let out = add(&files, &[name], "/dest").unwrap();
        assert_eq!(
            paths(&out),
            ["dest/", "dest/a/", "dest/a/b", "dest/abs/c", "dest/d"],
            "{name}"
        );
        // The archive's owners, modes and times are kept.
        assert_eq!(
            (out[2].owner, out[2].mode, out[2].mtime),
            ((1000, 1000), 0o640, 77)
        );
        assert_eq!(out[2].data, b"bee");
    }
    // A gzip of something else is copied as it is.
    let out = add(&files, &["notes.gz"], "/dest/").unwrap();
    assert_eq!(paths(&out), ["dest/", "dest/notes.gz"]);
    assert_eq!(out[1].data, gzip(b"just text, not a tar"));
}

#[test]
fn add_refuses_hostile_archives() {
    use tar::EntryType as T;
    let evil = gzip(&tar_of(&[
        ("ok", T::Regular, b"1"),
        ("../x", T::Regular, b"2"),
    ]));
    let err = add(&[("evil.tar.gz", evil)], &["evil.tar.gz"], "/dest/").unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(msg.contains("'../x'"), "{msg}");
    assert!(msg.contains("outside the destination"), "{msg}");
    let dev = tar_of(&[("null", T::Char, b"")]);
    let err = add(&[("dev.tar", dev)], &["dev.tar"], "/dest/").unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(msg.contains("device"), "{msg}");
    let link = tar_of(&[("l", T::Link, b"")]);
    let mut link = link;
    // Point the hard link out of the destination.
    let mut h = tar::Header::from_byte_slice(&link[..512]).clone();
    h.as_old_mut().linkname[..9].copy_from_slice(b"../../etc");
    h.set_cksum();
    link[..512].copy_from_slice(h.as_bytes());
    assert!(add(&[("l.tar", link)], &["l.tar"], "/dest/").is_err());
}
