//! Hostile layers: `..` and absolute names, symlinks that point outside,
//! names over 255 bytes, duplicate entries, truncated and corrupt archives.
//! Each case has one expected outcome: refused with a one-line error that
//! says what is wrong, or accepted with exactly the tree that GNU tar (with
//! the whiteouts applied as docker does) extracts; never a panic, never an
//! fsck error, never a host write.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use skiff_ext4::tree::LayerError;
use skiff_ext4::writer::Error;

/// Builds; on success checks fsck and returns the image, on failure checks
/// that the message is one line and returns the error.
fn outcome(layers: &[Vec<u8>]) -> Result<Image, Error> {
    let (dir, path, r) = build(layers, &opts());
    match r {
        Ok(_) => {
            check_fsck(&path);
            Ok(Image { dir, path })
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "error message: {msg:?}"
            );
            Err(e)
        }
    }
}

#[track_caller]
fn must_fail(layers: &[Vec<u8>], what: &str) -> Error {
    match outcome(layers) {
        Ok(_) => panic!("{what}: expected an error, the build succeeded"),
        Err(e) => e,
    }
}

/// Must be refused with a message that contains `msg`.
#[track_caller]
fn refused(layers: &[Vec<u8>], what: &str, msg: &str) -> Error {
    let e = must_fail(layers, what);
    assert!(
        e.to_string().contains(msg),
        "{what}: expected an error with {msg:?}, got: {e}"
    );
    e
}

/// Must build into exactly the reference's tree.
#[track_caller]
fn accepted_as(layers: &[Vec<u8>], what: &str, reference: &Reference) -> Image {
    let img = outcome(layers).unwrap_or_else(|e| panic!("{what}: refused: {e}"));
    if let Err(diffs) = matches_reference(&img.path, reference) {
        panic!("{what}: {diffs}");
    }
    img
}

/// A layer made of what `f` adds.
fn layer(f: impl FnOnce(&mut LayerBuilder)) -> Layer {
    let mut b = LayerBuilder::new();
    f(&mut b);
    b.finish()
}

fn layer_error(e: &Error) -> &LayerError {
    match e {
        Error::Layer { source, .. } => source,
        other => panic!("expected a layer error, got {other:?}"),
    }
}

#[test]
fn dotdot_and_absolute_names_stay_inside() {
    let tag = format!("skiff-escape-{}", std::process::id());
    let mut b = LayerBuilder::new();
    b.raw(
        format!("../../{tag}-a").as_bytes(),
        b'0',
        b"a",
        b"",
        &M::default(),
    )
    .raw(
        format!("/{tag}-b").as_bytes(),
        b'0',
        b"b",
        b"",
        &M::default(),
    )
    .raw(
        format!("./../{tag}-c").as_bytes(),
        b'0',
        b"c",
        b"",
        &M::default(),
    )
    .raw(
        format!("sub/../../../{tag}-d").as_bytes(),
        b'0',
        b"d",
        b"",
        &M::default(),
    )
    .raw(
        format!("/../{tag}-e").as_bytes(),
        b'0',
        b"e",
        b"",
        &M::default(),
    )
    .raw(b"/abs/dir/", b'5', b"", b"", &M::dir())
    .raw(b"/abs/dir/file", b'0', b"f", b"", &M::default())
    .raw(b"../..", b'5', b"", b"", &M::mode(0o711))
    .raw(
        b"hl",
        b'1',
        b"",
        format!("../../{tag}-a").as_bytes(),
        &M::default(),
    )
    .raw(b"..//.//x", b'0', b"x", b"", &M::default());
    let l = b.finish();
    for wrap in [l.tar.clone(), l.gz()] {
        let img = outcome(&[wrap]).expect("`..` and `/` are clamped at the root");
        let m = Mount::ro(&img.path);
        for s in ["a", "b", "c", "d", "e"] {
            let p = m.path().join(format!("{tag}-{s}"));
            assert_eq!(fs::read(&p).unwrap(), s.as_bytes(), "{}", p.display());
            for host in ["/", "/tmp", "/work"] {
                assert!(
                    !Path::new(host).join(format!("{tag}-{s}")).exists(),
                    "written on the host under {host}"
                );
            }
        }
        assert_eq!(fs::read(m.path().join("abs/dir/file")).unwrap(), b"f");
        assert_eq!(fs::read(m.path().join("x")).unwrap(), b"x");
        let a = fs::metadata(m.path().join(format!("{tag}-a"))).unwrap();
        assert_eq!(a.ino(), fs::metadata(m.path().join("hl")).unwrap().ino());
        assert!(!img
            .dir
            .path()
            .parent()
            .unwrap()
            .join(format!("{tag}-a"))
            .exists());
    }
}

#[test]
fn symlinked_directories_pointing_outside_resolve_inside() {
    let mut l1 = LayerBuilder::new();
    l1.dir("etc", &M::dir())
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", &M::default())
        .file("etc/shadow", b"secret", &M::mode(0o600))
        .symlink("a", "/etc", &M::default())
        .symlink("up", "../../../../..", &M::default())
        .symlink("root", "/", &M::default())
        .dir("deep", &M::dir())
        .symlink("deep/rel", "../etc", &M::default());
    let l1 = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.raw(b"a/passwd", b'0', b"owned", b"", &M::default())
        .raw(b"up/escaped", b'0', b"esc", b"", &M::default())
        .raw(b"root/rootfile", b'0', b"r", b"", &M::default())
        .raw(b"deep/rel/group", b'0', b"g", b"", &M::default())
        .raw(b"a/.wh.shadow", b'0', b"", b"", &M::default())
        .raw(b"a/newdir/", b'5', b"", b"", &M::dir())
        .raw(b"a/newdir/f", b'0', b"nf", b"", &M::default())
        .raw(b"hl", b'1', b"", b"a/passwd", &M::default());
    let l2 = l2.finish();
    let host_passwd = fs::read("/etc/passwd").unwrap();
    let img = outcome(&[l1.tar, l2.tar]).expect("symlinks resolve inside the image");
    assert_eq!(fs::read("/etc/passwd").unwrap(), host_passwd);
    assert!(!Path::new("/escaped").exists() && !Path::new("/rootfile").exists());
    let m = Mount::ro(&img.path);
    let p = m.path();
    assert_eq!(fs::read(p.join("etc/passwd")).unwrap(), b"owned");
    assert_eq!(fs::read(p.join("escaped")).unwrap(), b"esc");
    assert_eq!(fs::read(p.join("rootfile")).unwrap(), b"r");
    assert_eq!(fs::read(p.join("etc/group")).unwrap(), b"g");
    assert_eq!(fs::read(p.join("etc/newdir/f")).unwrap(), b"nf");
    assert!(
        !p.join("etc/shadow").exists(),
        "the whiteout went through a -> /etc"
    );
    assert_eq!(fs::read_link(p.join("a")).unwrap(), Path::new("/etc"));
    assert_eq!(
        fs::metadata(p.join("hl")).unwrap().ino(),
        fs::metadata(p.join("etc/passwd")).unwrap().ino()
    );
}

#[test]
fn symlink_loops_are_refused() {
    let mut b = LayerBuilder::new();
    b.symlink("a", "b", &M::default())
        .symlink("b", "a", &M::default())
        .raw(b"a/x", b'0', b"x", b"", &M::default());
    let l = b.finish();
    let e = must_fail(&[l.tar], "a -> b -> a");
    assert!(
        matches!(layer_error(&e), LayerError::SymlinkLoop { .. }),
        "{e:?}"
    );
    let mut b = LayerBuilder::new();
    b.symlink("self", "self/x", &M::default())
        .raw(b"self/y", b'0', b"y", b"", &M::default());
    let l = b.finish();
    must_fail(&[l.tar], "self -> self/x");
}

#[test]
fn names_over_255_bytes_are_refused() {
    let n255 = "a".repeat(255);
    let n256 = "b".repeat(256);
    let cases: Vec<(&str, Layer)> = vec![
        ("file", {
            let mut b = LayerBuilder::new();
            b.file(&n256, b"x", &M::default());
            b.finish()
        }),
        ("directory in the middle", {
            let mut b = LayerBuilder::new();
            b.file(format!("{n256}/f"), b"x", &M::default());
            b.finish()
        }),
        ("directory", {
            let mut b = LayerBuilder::new();
            b.dir(format!("ok/{n256}"), &M::dir());
            b.finish()
        }),
        ("symlink", {
            let mut b = LayerBuilder::new();
            b.symlink(&n256, "t", &M::default());
            b.finish()
        }),
        ("hard link", {
            let mut b = LayerBuilder::new();
            b.file("t", b"", &M::default()).hardlink(&n256, "t");
            b.finish()
        }),
        ("pax path", {
            let mut b = LayerBuilder::new();
            b.pax_paths = true;
            b.file(format!("d/{n256}"), b"x", &M::default());
            b.finish()
        }),
    ];
    for (what, l) in cases {
        let e = must_fail(&[l.tar], what);
        assert!(
            matches!(layer_error(&e), LayerError::NameTooLong { len: 256, .. }),
            "{what}: {e:?}"
        );
        assert!(e.to_string().contains("255"), "{what}: {e}");
    }
    // 255 is fine, also as a whiteout target (the `.wh.` name itself is longer).
    let mut b = LayerBuilder::new();
    b.file(&n255, b"x", &M::default())
        .dir(format!("d/{n255}"), &M::dir());
    let l1 = b.finish();
    let mut b = LayerBuilder::new();
    b.whiteout(&n255);
    let l2 = b.finish();
    let img = outcome(&[l1.tar, l2.tar]).expect("255-byte names");
    let m = Mount::ro(&img.path);
    assert!(!m.path().join(&n255).exists());
    assert!(m.path().join("d").join(&n255).is_dir());
}

#[test]
fn duplicate_entries_last_one_wins() {
    let mut b = LayerBuilder::new();
    b.file("f", b"first", &M::default())
        .file("f", b"second", &M::mode(0o600))
        .dir("d", &M::mode(0o700))
        .file("d/child", b"c", &M::default())
        .dir("d", &M::mode(0o755).owner(9, 9))
        .file("x", b"file", &M::default())
        .dir("x", &M::dir())
        .dir("y", &M::dir())
        .file("y/inner", b"i", &M::default())
        .file("y", b"file replaces dir in the same layer", &M::default())
        .file("t", b"target", &M::default())
        .hardlink("h", "t")
        .file("t", b"new t", &M::default())
        .hardlink("h", "t")
        .hardlink("h", "t")
        .symlink("s", "one", &M::default())
        .symlink("s", "two", &M::default())
        .fifo("p", &M::default())
        .fifo("p", &M::mode(0o600))
        .hardlink("t", "t");
    let l = b.finish();
    let img = outcome(&[l.tar]).expect("duplicates are applied in order");
    let m = Mount::ro(&img.path);
    let p = m.path();
    assert_eq!(fs::read(p.join("f")).unwrap(), b"second");
    assert_eq!(fs::metadata(p.join("f")).unwrap().mode() & 0o7777, 0o600);
    let d = fs::metadata(p.join("d")).unwrap();
    assert_eq!((d.mode() & 0o7777, d.uid()), (0o755, 9));
    assert_eq!(fs::read(p.join("d/child")).unwrap(), b"c");
    assert!(p.join("x").is_dir());
    assert!(p.join("y").is_file());
    assert_eq!(fs::read(p.join("h")).unwrap(), b"new t");
    assert_eq!(fs::metadata(p.join("t")).unwrap().nlink(), 2);
    assert_eq!(fs::read_link(p.join("s")).unwrap(), Path::new("two"));
}

/// A layer with a bit of everything, for cutting and corrupting.
fn sample() -> Layer {
    let mut b = LayerBuilder::new();
    b.dir("d", &M::dir().time(T0, Some(5)))
        .file(
            "d/big",
            &noise(100_000, 3),
            &M::default().xattr("user.x", b"y"),
        )
        .file(format!("d/{}", "l".repeat(150)), b"long", &M::default())
        .symlink("d/s", "big", &M::default())
        .hardlink("d/h", "d/big")
        .file("d/last", b"last", &M::default());
    b.finish()
}

#[test]
fn truncated_archives_are_clean_errors() {
    let l = sample();
    let full = l.tar.clone();
    let end = full.len() - 1024; // where the end-of-archive marker starts
    let data_end = end - 512 + 4; // after the 4 bytes of d/last
    let wraps = |t: &[u8]| [("tar", t.to_vec()), ("gz", gz(t)), ("zst", zst(t))];
    // Cut in a header or in data before the last entry's data ends.
    for cut in [
        1,
        100,
        511,
        512,
        513,
        1000,
        5000,
        50_000,
        end - 600,
        end - 512,
        data_end - 1,
    ] {
        for (name, bytes) in wraps(&full[..cut]) {
            refused(&[bytes], &format!("{name} cut at {cut}"), "truncated");
        }
    }
    // Like Go's reader (docker, containerd): the stream may stop right after
    // the last data, anywhere in its padding, or before either block of the
    // end marker; the tree is the whole archive's.
    let whole = Reference::of(&[&l]);
    for cut in [data_end, end - 100, end, end + 512] {
        for (name, bytes) in wraps(&full[..cut]) {
            accepted_as(&[bytes], &format!("{name} cut at {cut}"), &whole);
        }
    }
    // But not inside a block of the end marker (Go: unexpected EOF).
    for cut in [end + 100, end + 600] {
        for (name, bytes) in wraps(&full[..cut]) {
            refused(&[bytes], &format!("{name} cut at {cut}"), "truncated");
        }
    }
    // A compressed stream that itself stops short.
    for cut in [1, 100, 5000] {
        let g = l.gz();
        let g = &g[..cut.min(g.len() - 1)];
        must_fail(&[g.to_vec()], &format!("gzip stream cut at {cut}"));
        let z = l.zst();
        let z = &z[..cut.min(z.len() - 1)];
        must_fail(&[z.to_vec()], &format!("zstd stream cut at {cut}"));
    }
    // A header announcing 8 GiB of data with 10 bytes present: no big allocation, an error.
    let mut b = LayerBuilder::new();
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..4].copy_from_slice(b"huge");
    h.set_size(8 << 30);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.bytes(h.as_bytes()).bytes(&[1u8; 10]);
    let e = must_fail(&[b.unfinished()], "8 GiB announced, 10 bytes present");
    assert!(e.to_string().to_lowercase().contains("truncated"), "{e}");
}

#[test]
fn corrupt_archives_are_clean_errors() {
    let l = sample();
    // Garbage, and things that look like other compressors.
    let e = must_fail(&[b"this is not a tar archive at all".repeat(40)], "text");
    assert!(matches!(layer_error(&e), LayerError::NotTar), "{e:?}");
    let e = must_fail(&[b"BZh91AY&SY".repeat(60)], "bzip2");
    assert!(e.to_string().contains("bzip2"), "{e}");
    let mut xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
    xz.resize(600, 1);
    let e = must_fail(&[xz], "xz");
    assert!(e.to_string().contains("xz"), "{e}");
    must_fail(
        &[vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]],
        "bad gzip",
    );
    must_fail(
        &[vec![0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff]],
        "bad zstd",
    );
    // A gzip stream whose CRC is wrong.
    let mut g = l.gz();
    let n = g.len();
    g[n - 6] ^= 0xff;
    must_fail(&[g], "gzip CRC");

    // Header checksum, size and mode fields.
    let mut t = l.tar.clone();
    t[148] ^= 1;
    must_fail(&[t], "checksum");
    let mut bad_size = l.tar.clone();
    let second = 1024; // the PAX header of d/big... any header will do
    bad_size[second + 124..second + 136].copy_from_slice(b"zzzzzzzzzzz\0");
    refresh_checksum(&mut bad_size[second..second + 512]);
    must_fail(&[bad_size], "size field");
    // A lone zero block followed by data.
    let mut z = vec![0u8; 512];
    z.extend_from_slice(&l.tar);
    must_fail(&[z], "zero block then data");
    // PAX records: broken framing and values that are not what the key
    // needs are refused, as Go's archive/tar (docker, containerd) refuses
    // them (GNU tar rejects a negative uid too); a record nobody knows is
    // ignored.
    let pax_then_file = |records: &[u8]| {
        let mut b = LayerBuilder::new();
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..3].copy_from_slice(b"pax");
        h.set_size(records.len() as u64);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_cksum();
        b.bytes(h.as_bytes()).bytes(records);
        let pad = (512 - records.len() % 512) % 512;
        b.bytes(&vec![0u8; pad]).file("after", b"x", &M::default());
        b.finish()
    };
    let junk_after = [pax_record("size", b"1"), b"zz".to_vec()].concat();
    for (what, records, msg) in [
        (
            "a length past the end",
            b"99 path=x\n".to_vec(),
            "malformed PAX record",
        ),
        (
            "a length short of the newline",
            b"5 a=b\n".to_vec(),
            "malformed PAX record",
        ),
        (
            "a length that is no number",
            b"x path=y\n".to_vec(),
            "malformed PAX record",
        ),
        ("no '='", b"7 path\n".to_vec(), "malformed PAX record"),
        ("junk after a record", junk_after, "malformed PAX record"),
        (
            "an mtime that is no number",
            pax_record("mtime", b"abc"),
            "PAX mtime",
        ),
        ("a negative uid", pax_record("uid", b"-5555"), "PAX uid"),
        (
            "a size past the data",
            pax_record("size", b"99999"),
            "truncated",
        ),
    ] {
        let l = pax_then_file(&records);
        refused(&[l.tar], &format!("PAX header with {what}"), msg);
    }
    let unknown = pax_then_file(&pax_record("SKIFF.unknown", b"v"));
    accepted_as(
        std::slice::from_ref(&unknown.tar),
        "an unknown PAX record",
        &Reference::of(&[&unknown]),
    );
    // Unknown type flags and out-of-range devices.
    let mut b = LayerBuilder::new();
    b.raw(b"weird", b'Z', b"", b"", &M::default());
    must_fail(&[b.finish().tar], "type Z");
    let mut b = LayerBuilder::new();
    b.chardev("dev", 4096, 0, &M::default());
    must_fail(&[b.finish().tar], "major 4096");
    let mut b = LayerBuilder::new();
    b.blockdev("dev", 1, 1 << 20, &M::default());
    must_fail(&[b.finish().tar], "minor 2^20");
}

fn refresh_checksum(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn bad_links_are_refused_or_contained() {
    // Hard link to something missing, to a directory, to itself.
    let mut b = LayerBuilder::new();
    b.hardlink("h", "missing");
    let e = must_fail(&[b.finish().tar], "hard link to nothing");
    assert!(
        matches!(layer_error(&e), LayerError::LinkTargetMissing { .. }),
        "{e:?}"
    );
    let mut b = LayerBuilder::new();
    b.dir("d", &M::dir()).hardlink("h", "d");
    let e = must_fail(&[b.finish().tar], "hard link to a directory");
    assert!(
        matches!(layer_error(&e), LayerError::LinkTargetIsDir { .. }),
        "{e:?}"
    );
    let mut b = LayerBuilder::new();
    b.hardlink("self", "self");
    must_fail(&[b.finish().tar], "hard link to itself, nothing there");
    let mut b = LayerBuilder::new();
    b.hardlink("root", "/").hardlink("dot", ".");
    must_fail(&[b.finish().tar], "hard link to the root");
    // Empty and over-long symlink targets.
    let mut b = LayerBuilder::new();
    b.symlink("empty", "", &M::default());
    must_fail(&[b.finish().tar], "empty symlink target");
    let mut b = LayerBuilder::new();
    b.symlink("long", "x".repeat(4096), &M::default());
    must_fail(&[b.finish().tar], "4096-byte symlink target");
    // A file where a parent directory should be.
    let mut b = LayerBuilder::new();
    b.file("f", b"", &M::default())
        .raw(b"f/child", b'0', b"", b"", &M::default());
    let e = must_fail(&[b.finish().tar], "a file as a parent");
    assert!(
        matches!(layer_error(&e), LayerError::NotADirectory { .. }),
        "{e:?}"
    );
}

#[test]
fn weird_whiteouts() {
    let l1 = layer(|b| {
        b.dir("d", &M::dir())
            .file("d/f", b"f", &M::default())
            .file("keep", b"k", &M::default());
    });
    let weird = |name: &[u8]| {
        let mut b = LayerBuilder::new();
        b.raw(name, b'0', b"", b"", &M::default());
        vec![l1.tar.clone(), b.finish().tar]
    };
    // A whiteout of "", "." or ".." names no file (docker would delete the
    // directory itself or its parent; containerd refuses it).
    for name in [&b".wh."[..], b".wh..", b".wh...", b"d/.wh..", b"d/.wh..."] {
        let what = String::from_utf8_lossy(name);
        refused(&weird(name), &what, "invalid whiteout name");
    }
    // The others mean what a tame layer says.
    let with = |tame: Layer| Reference::of(&[&l1, &tame]);
    let file_named_like_a_marker = {
        let mut r = Reference::of(&[&l1]);
        r.apply_verbatim(&layer(|b| {
            b.file("d/.wh..wh..opq/x", b"", &M::default());
        }));
        r
    };
    let cases: [(&[u8], &str, Reference); 5] = [
        (
            b"../.wh.d",
            "`..` stops at the root",
            with(layer(|b| {
                b.whiteout("d");
            })),
        ),
        (
            b"/.wh..wh..opq",
            "the root made opaque",
            with(layer(|b| {
                b.opaque("");
            })),
        ),
        (
            b".wh..wh..plnk",
            "AUFS metadata, ignored as docker and containerd do",
            Reference::of(&[&l1]),
        ),
        (
            b"missing/.wh..wh..opq",
            "hides nothing and creates nothing",
            Reference::of(&[&l1]),
        ),
        (
            b"d/.wh..wh..opq/x",
            "a plain file in a directory of that name, as docker makes it",
            file_named_like_a_marker,
        ),
    ];
    for (name, why, reference) in cases {
        let what = format!("{} ({why})", String::from_utf8_lossy(name));
        accepted_as(&weird(name), &what, &reference);
    }
}

/// Go's archive/tar (docker, containerd, buildkit) reads an archive that
/// stops right after the last entry's data — no padding to 512 bytes, no
/// end-of-archive blocks — as complete, and so must we: Debian's umoci
/// 0.4.7 writes layers like that (the skiff test fixtures are made with it).
#[test]
fn archive_ending_right_after_the_last_data_is_accepted_like_go() {
    let mut b = LayerBuilder::new();
    b.dir("bin", &M::dir())
        .file("bin/tool", &noise(1000, 1), &M::mode(0o755));
    let full = b.unfinished(); // padded, no end marker
    let tool = b.finish();
    let unpadded = &full[..full.len() - (512 - 1000 % 512)];
    let mut b = LayerBuilder::new();
    b.file("aligned", &noise(4096, 2), &M::default());
    let aligned = b.unfinished(); // block-aligned data, no end marker
    let aligned_layer = b.finish();
    for (what, bytes, whole) in [
        ("no padding, no end marker", unpadded.to_vec(), &tool),
        ("no end marker", full.clone(), &tool),
        ("aligned, no end marker", aligned.clone(), &aligned_layer),
    ] {
        let reference = Reference::of(&[whole]);
        for (wrap, data) in [("tar", bytes.clone()), ("gzip", gz(&bytes))] {
            accepted_as(&[data], &format!("{what} ({wrap})"), &reference);
        }
    }
}

/// A layer may put anything at /lost+found (a file, a symlink, a directory
/// with contents): it is extracted as GNU tar and docker extract it (e2fsck
/// and the kernel need no lost+found directory), and the image stays
/// fsck-clean.
#[test]
fn lost_and_found_of_another_type() {
    let dir = layer(|b| {
        b.dir("lost+found", &M::mode(0o700));
    });
    let cases = [
        (
            "a regular file",
            vec![layer(|b| {
                b.file("lost+found", b"not a directory", &M::default());
            })],
        ),
        (
            "a symlink",
            vec![layer(|b| {
                b.symlink("lost+found", "/tmp", &M::default());
            })],
        ),
        (
            "a directory with a file",
            vec![layer(|b| {
                b.dir("lost+found", &M::mode(0o755))
                    .file("lost+found/x", b"x", &M::default());
            })],
        ),
        (
            "a FIFO over a directory",
            vec![
                dir,
                layer(|b| {
                    b.whiteout("lost+found").fifo("lost+found", &M::default());
                }),
            ],
        ),
    ];
    for (what, layers) in cases {
        let tars: Vec<Vec<u8>> = layers.iter().map(|l| l.tar.clone()).collect();
        let plain: Vec<&Layer> = layers.iter().collect();
        accepted_as(
            &tars,
            &format!("/lost+found as {what}"),
            &Reference::of(&plain),
        );
    }
}

/// Times an inode cannot hold are clamped to 1901-12-13 and 2446-05-10, as
/// the kernel clamps them when GNU tar or docker extract onto ext4; and
/// 2310-04-04 to 2378, which e2fsck takes for mis-encoded pre-1970 times
/// (found by the fuzzer: a 12-digit octal mtime), to the second before.
#[test]
fn times_out_of_range_are_clamped_as_the_kernel_does() {
    let last_unambiguous = 10_737_418_239; // 2310-04-04 16:10:39
    let cases: [(&str, i64, u32, (i64, i64)); 7] = [
        ("before-1901", -3_000_000_000, 5, (i32::MIN as i64, 0)),
        ("in-2106", 4_000_000_000, 5, (4_000_000_000, 5)),
        (
            "last-before-2310",
            last_unambiguous,
            5,
            (last_unambiguous, 5),
        ),
        (
            "first-of-2310",
            last_unambiguous + 1,
            5,
            (last_unambiguous, 0),
        ),
        ("in-2334", 11_491_634_688, 5, (last_unambiguous, 0)),
        ("in-2378", 3 << 32, 5, (3 << 32, 5)),
        (
            "after-2446",
            20_000_000_000,
            5,
            (i32::MAX as i64 + (3 << 32), 0),
        ),
    ];
    let l = layer(|b| {
        for (name, secs, nanos, _) in cases {
            b.file(name, b"", &M::default().time(secs, Some(nanos)));
        }
    });
    let img = outcome(&[l.tar]).expect("out-of-range times are clamped, not refused");
    let m = Mount::ro(&img.path);
    for (name, _, _, want) in cases {
        let md = fs::symlink_metadata(m.path().join(name)).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), want, "{name}");
    }
}
