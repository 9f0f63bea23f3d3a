use super::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A layer entry for [`layer`].
pub(crate) enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Fifo(&'a str),
}

/// An uncompressed tar layer of `entries`, in order, mtime 1000.
pub(crate) fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                (p, b"")
            }
            E::File(p, m, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                (p, d)
            }
            E::Link(p, t) | E::Hard(p, t) => {
                h.set_entry_type(if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_link_name(t).unwrap();
                (p, b"")
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn load(layers: &[Vec<u8>]) -> ImageFs {
    let readers: Vec<Box<dyn Read>> = layers
        .iter()
        .map(|l| Box::new(std::io::Cursor::new(l.clone())) as Box<dyn Read>)
        .collect();
    ImageFs::from_layer_readers(readers, &|_, _| true).unwrap()
}

fn kind(fs: &ImageFs, p: &str) -> Option<NodeKind> {
    fs.get(p).map(|n| n.kind.clone())
}

#[test]
fn files_dirs_and_implicit_parents() {
    let fs = load(&[layer(&[
        E::Dir("./etc/", 0o755),
        E::File("./etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n"),
        E::File("usr/local/bin/tool", 0o755, b"#!/bin/sh\n"),
        E::Link("bin", "usr/bin"),
    ])]);
    assert_eq!(
        fs.content("/etc/passwd").unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    let n = fs.get("usr/local/bin/tool").unwrap();
    assert_eq!((n.mode, n.size), (0o755, 10));
    assert_eq!(
        kind(&fs, "/usr/local"),
        Some(NodeKind::Dir),
        "made implicitly"
    );
    assert_eq!(fs.get("/usr/local").unwrap().mode, 0o755);
    assert_eq!(kind(&fs, "/bin"), Some(NodeKind::Symlink("usr/bin".into())));
    let paths: Vec<&str> = fs.iter().map(|(p, _)| p).collect();
    assert_eq!(paths[0], "/");
    assert!(paths.windows(2).all(|w| w[0] < w[1]));
    // keep decides what is held.
    let only: Vec<Box<dyn Read>> = vec![Box::new(std::io::Cursor::new(layer(&[
        E::File("a", 0o644, b"A"),
        E::File("b", 0o644, b"B"),
    ])))];
    let fs = ImageFs::from_layer_readers(only, &|p, size| p == "/b" && size == 1).unwrap();
    assert_eq!(
        (fs.content("/a"), fs.content("/b")),
        (None, Some(&b"B"[..]))
    );
}

#[test]
fn whiteouts_and_opaque_directories() {
    let fs = load(&[
        layer(&[
            E::File("a/x", 0o644, b"1"),
            E::File("a/sub/y", 0o644, b"2"),
            E::File("b/z", 0o644, b"3"),
            E::File("c/keep", 0o644, b"4"),
        ]),
        layer(&[
            E::File("a/new", 0o644, b"5"),
            E::File("a/.wh..wh..opq", 0o644, b""),
            E::File("a/sub/later", 0o644, b"6"),
            E::File(".wh.b", 0o644, b""),
            E::File("c/.wh..wh.plnk", 0o644, b""),
        ]),
    ]);
    assert!(
        fs.get("/a/x").is_none() && fs.get("/a/sub/y").is_none(),
        "lower hidden"
    );
    assert!(
        fs.get("/a/new").is_some(),
        "same layer, before the marker, kept"
    );
    assert!(
        fs.get("/a/sub/later").is_some(),
        "same layer, after the marker, kept"
    );
    assert!(fs.get("/b").is_none() && fs.get("/b/z").is_none());
    assert!(fs.get("/c/keep").is_some());
    assert!(fs.get("/c/.wh..wh.plnk").is_none() && fs.get("/.wh.b").is_none());
}

#[test]
fn entries_follow_symlinked_parents() {
    let fs = load(&[
        layer(&[
            E::Dir("usr/bin", 0o755),
            E::Link("bin", "usr/bin"),
            E::Link("lib64", "/usr/lib64"),
        ]),
        layer(&[
            E::File("bin/x", 0o755, b"x"),
            E::File("lib64/ld.so", 0o755, b"l"),
        ]),
    ]);
    assert!(fs.get("/usr/bin/x").is_some() && fs.get("/bin/x").is_none());
    assert_eq!(
        kind(&fs, "/usr/lib64"),
        Some(NodeKind::Dir),
        "dangling target made"
    );
    assert!(fs.get("/usr/lib64/ld.so").is_some());
}

#[test]
fn replacing_kinds() {
    let fs = load(&[
        layer(&[E::File("d/f", 0o644, b"1"), E::File("f", 0o644, b"2")]),
        layer(&[E::File("d", 0o600, b"now a file"), E::Dir("f", 0o700)]),
    ]);
    assert_eq!(kind(&fs, "/d"), Some(NodeKind::File));
    assert!(
        fs.get("/d/f").is_none(),
        "the subtree went with the directory"
    );
    assert_eq!(fs.get("/f").unwrap().kind, NodeKind::Dir);
    let bad: Vec<Box<dyn Read>> = vec![Box::new(std::io::Cursor::new(layer(&[
        E::File("f", 0o644, b"2"),
        E::File("f/g", 0o644, b"3"),
    ])))];
    let err = ImageFs::from_layer_readers(bad, &|_, _| false).unwrap_err();
    assert!(err.to_string().contains("/f is not a directory"), "{err}");
}

#[test]
fn hard_links_keep_their_data() {
    let fs = load(&[
        layer(&[E::File("a", 0o755, b"data"), E::Hard("b", "./a")]),
        layer(&[E::File(".wh.a", 0o644, b"")]),
    ]);
    let b = fs.get("/b").unwrap();
    assert_eq!(
        (b.kind.clone(), b.size, b.mode),
        (NodeKind::Hardlink("/a".into()), 4, 0o755)
    );
    assert_eq!(fs.content("/b").unwrap(), b"data");
    assert!(fs.get("/a").is_none());
}

#[test]
fn resolving_symlinks() {
    let fs = load(&[layer(&[
        E::Dir("usr/lib/x86_64-linux-gnu", 0o755),
        E::File("usr/lib/x86_64-linux-gnu/libc.so.6", 0o755, b""),
        E::Link("lib", "usr/lib"),
        E::Link("usr/lib64", "lib"),
        E::Link("lib64", "/usr/lib64"),
        E::Link("usr/lib/libc.so", "x86_64-linux-gnu/libc.so.6"),
        E::Link("up", "../../../../usr"),
        E::Link("loop1", "loop2"),
        E::Link("loop2", "/loop1"),
        E::File("file", 0o644, b""),
    ])]);
    let r = |p, f| fs.resolve(p, f);
    assert_eq!(
        r("/lib64/libc.so", true).as_deref(),
        Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
    );
    assert_eq!(
        r("/lib64/libc.so", false).as_deref(),
        Some("/usr/lib/libc.so")
    );
    assert_eq!(
        r("/up/lib", true).as_deref(),
        Some("/usr/lib"),
        "`..` stops at /"
    );
    assert_eq!(
        r("/lib/../etc", true).as_deref(),
        Some("/usr/etc"),
        "`..` after a symlink"
    );
    assert_eq!(r("/loop1", true), None);
    assert_eq!(r("/loop1", false).as_deref(), Some("/loop1"));
    assert_eq!(r("/file/x", true), None, "a file is no directory");
    assert_eq!(r("/missing/dir/x", true).as_deref(), Some("/missing/dir/x"));
    assert_eq!(r("/", true).as_deref(), Some("/"));
}

#[test]
fn compressed_layers() {
    let plain = layer(&[E::File("g", 0o644, b"gz"), E::File("z", 0o644, b"zs")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let zs = zstd::encode_all(&plain[..], 1).unwrap();
    let fs = load(&[gz.finish().unwrap(), zs]);
    assert_eq!(fs.content("/g").unwrap(), b"gz");
    let err = ImageFs::from_layer_readers(
        vec![Box::new(std::io::Cursor::new(b"BZh91AY&SY".to_vec()))],
        &|_, _| false,
    )
    .unwrap_err();
    assert!(
        matches!(err, ImageFsError::Layer { layer: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn users_and_groups() {
    let fs = load(&[layer(&[
        E::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nnum:x:33:44::/:/bin/sh\n"),
        E::File("etc/group", 0o644, b"root:x:0:\nstaff:x:50:app\n"),
    ])]);
    assert_eq!(lookup_user(&fs, "app"), Ok((1000, 1001)));
    assert_eq!(lookup_user(&fs, "app:staff"), Ok((1000, 50)));
    assert_eq!(
        lookup_user(&fs, "33"),
        Ok((33, 44)),
        "numeric with an entry: its group"
    );
    assert_eq!(lookup_user(&fs, "4242"), Ok((4242, 0)));
    assert_eq!(lookup_chown(&fs, "4242"), Ok((4242, 4242)));
    assert_eq!(lookup_user(&fs, "7:8"), Ok((7, 8)));
    let e = lookup_user(&fs, "nobody").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to find user nobody: no matching entries in passwd file"
    );
    assert!(lookup_user(&fs, "app:wheel")
        .unwrap_err()
        .to_string()
        .contains("group wheel"));
    assert!(matches!(
        lookup_user(&fs, "a:b:c"),
        Err(UserError::Invalid(_))
    ));
    assert!(user_files("/etc/group", 10) && !user_files("/etc/shadow", 10));
}

#[test]
fn sniffing_elf_and_scripts() {
    let elf = std::fs::read("/bin/busybox").unwrap();
    let readers: Vec<Box<dyn Read>> = vec![Box::new(std::io::Cursor::new(layer(&[
        E::File("bin/busybox", 0o755, &elf),
        E::File("bin/s", 0o755, b"#!/bin/sh -e\necho\n"),
        E::File("bin/bad", 0o755, b"\x7fELF\x02\x01\x01"),
        E::File("etc/motd", 0o644, b"hello"),
    ])))];
    let keep = |_: &str, _: u64| false;
    let fs = ImageFs::load_with(
        here(readers),
        &LoadOptions {
            keep: &keep,
            sniff: true,
        },
    )
    .unwrap();
    assert!(matches!(fs.sniff("/bin/busybox"), Some(Sniff::Elf(i)) if i.interpreter.is_none()));
    assert!(matches!(fs.sniff("/bin/s"), Some(Sniff::Script(l)) if l == "/bin/sh -e"));
    assert!(matches!(fs.sniff("/bin/bad"), Some(Sniff::BadElf(_))));
    assert!(fs.sniff("/etc/motd").is_none() && fs.content("/bin/busybox").is_none());
}

#[test]
fn extracting_a_directory_and_a_file() {
    use std::os::unix::fs::MetadataExt;
    let layers = vec![
        layer(&[
            E::Dir("app", 0o750),
            E::File("app/run", 0o4755, b"#!/bin/sh\n"),
            E::Hard("app/run2", "app/run"),
            E::Link("app/cur", "run"),
            E::File("app/old", 0o644, b"gone"),
            E::Fifo("app/pipe"),
            E::Link("link-to-app", "/app"),
        ]),
        layer(&[E::File("app/.wh.old", 0o644, b"")]),
    ];
    let fs = load(&layers);
    let again = || {
        let v: Vec<Box<dyn Read>> = layers
            .iter()
            .map(|l| Box::new(std::io::Cursor::new(l.clone())) as Box<dyn Read>)
            .collect();
        here(v)
    };
    let d = tempfile::tempdir().unwrap();
    let out = extract::extract_from(&fs, again(), "/link-to-app", d.path()).unwrap();
    assert_eq!(out.kind, ExtractedKind::Dir);
    let names: Vec<String> = out.paths.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["cur", "pipe", "run", "run2"]);
    assert_eq!(out.bytes, 20);
    let run = std::fs::metadata(d.path().join("run")).unwrap();
    assert_eq!((run.mode() & 0o7777, run.mtime()), (0o4755, 1000));
    assert_eq!(
        std::fs::read(d.path().join("run2")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_link(d.path().join("cur")).unwrap(),
        Path::new("run")
    );
    assert!(!d.path().join("old").exists());
    let d2 = tempfile::tempdir().unwrap();
    let one = extract::extract_from(&fs, again(), "/app/cur", d2.path()).unwrap();
    assert_eq!(
        (one.kind, one.paths),
        (ExtractedKind::File, vec![PathBuf::from("cur")])
    );
    assert_eq!(
        std::fs::read(d2.path().join("cur")).unwrap(),
        b"#!/bin/sh\n",
        "followed"
    );
    let err = extract::extract_from(&fs, again(), "/app/old", d2.path()).unwrap_err();
    assert!(matches!(err, ImageFsError::NotFound(_)), "{err}");
}

#[test]
fn normalizing() {
    assert_eq!(normalize("./a//b/../c/"), "/a/c");
    assert_eq!(normalize("../../x"), "/x");
    assert_eq!(normalize(""), "/");
    assert_eq!(
        (parent("/a/b"), parent("/a"), parent("/")),
        ("/a", "/", "/")
    );
}

/// Layers from the store are decompressed on a thread of their own: many
/// chunks arrive whole and in order, and errors on either side end the read.
#[test]
fn threaded_layers() {
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let plain = layer(&[E::File("big", 0o644, &big), E::File("after", 0o644, b"end")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let threaded = |bytes: Vec<u8>| vec![Layer::Threaded(Box::new(std::io::Cursor::new(bytes)))];
    let keep = |_: &str, _: u64| true;
    let opts = LoadOptions {
        keep: &keep,
        sniff: false,
    };
    let fs = ImageFs::load_with(threaded(gz.clone()), &opts).unwrap();
    assert!(fs.content("/big").unwrap() == &big[..]);
    assert_eq!(fs.content("/after").unwrap(), b"end");
    let err = ImageFs::load_with(threaded(b"BZh91AY&SY".to_vec()), &opts).unwrap_err();
    assert!(
        matches!(err, ImageFsError::Layer { layer: 1, .. }),
        "{err:?}"
    );
    let err = ImageFs::load_with(threaded(gz[..gz.len() / 2].to_vec()), &opts).unwrap_err();
    assert!(
        matches!(err, ImageFsError::Read { layer: 1, .. }),
        "{err:?}"
    );
    // The reader failing first (a bad entry) stops the thread too.
    let bad = layer(&[E::File("f", 0o644, &big), E::File("f/g", 0o644, b"")]);
    let err = ImageFs::load_with(threaded(bad), &opts).unwrap_err();
    assert!(matches!(err, ImageFsError::Entry { .. }), "{err:?}");
}

#[test]
fn a_layer_may_end_right_after_its_last_entry() {
    // umoci writes layers so: no padding after the last file's data and no
    // end-of-archive blocks. docker, containerd and skiff-ext4 accept them.
    let full = layer(&[
        E::Dir("etc/", 0o755),
        E::File("etc/passwd", 0o644, b"root:x:0:0::/:/bin/sh\n"),
    ]);
    let data_end = 512 * 2 + b"root:x:0:0::/:/bin/sh\n".len();
    let cut = full[..data_end].to_vec();
    let fs = load(&[cut]);
    assert_eq!(
        fs.content("/etc/passwd"),
        Some(&b"root:x:0:0::/:/bin/sh\n"[..])
    );
    // Cut inside the data, it is an error, not a file with zeros.
    let short = full[..data_end - 5].to_vec();
    let readers: Vec<Box<dyn Read>> = vec![Box::new(std::io::Cursor::new(short))];
    assert!(ImageFs::from_layer_readers(readers, &|_, _| true).is_err());
}
