//! Layers → ext4 → `e2fsck -fn` → loop mount → compared with GNU tar's
//! extraction of the same layers: every file type, modes, owners, times,
//! xattrs, devices, hard links, long names, large and fragmented files, big
//! directories, and the journal (read-write mount, fsck again).

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use common::*;

/// A valid v2 `security.capability` value: effective, permitted =
/// cap_dac_override, cap_fowner, cap_net_raw (0x200a: holds a `\n` byte).
pub const CAP_V2: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic_etc: VFS_CAP_REVISION_2 | EFFECTIVE
    0x0a, 0x20, 0x00, 0x00, // permitted[0]
    0x00, 0x00, 0x00, 0x00, // inheritable[0]
    0x00, 0x00, 0x00, 0x00, // permitted[1]
    0x00, 0x00, 0x00, 0x00, // inheritable[1]
];

#[test]
fn every_file_type_mode_and_owner() {
    let mut l1 = LayerBuilder::new();
    l1.dir("", &M::dir().time(T0 - 100, Some(5)))
        .dir("bin", &M::dir())
        .file("bin/setuid", b"#!/bin/sh\n", &M::mode(0o4755))
        .file("bin/setgid", b"sg", &M::mode(0o2755).owner(0, 50))
        .file("bin/both", b"both", &M::mode(0o6711))
        .file("bin/sticky-file", b"st", &M::mode(0o1644))
        .file("bin/none", b"", &M::mode(0o000))
        .dir("tmp", &M::mode(0o1777))
        .dir("srv", &M::mode(0o2775).owner(1000, 1000))
        .dir("srv/private", &M::mode(0o700).owner(1000, 1000))
        .file("srv/empty", b"", &M::default())
        .file(
            "srv/small",
            b"hello\n",
            &M::default().time(T0, Some(123_456_789)),
        )
        .file("srv/odd-size", &noise(5000, 1), &M::mode(0o640))
        .file("srv/mib", &noise(1 << 20, 2), &M::mode(0o600))
        .dir("ids", &M::dir())
        .file("ids/u65536", b"x", &M::default().owner(65536, 65537))
        .file("ids/u100000", b"x", &M::default().owner(100_000, 2_000_000))
        .file(
            "ids/u4e9",
            b"x",
            &M::default().owner(4_000_000_000, 4_294_967_294),
        )
        .file("ids/old", b"before 2038", &M::default().time(1, Some(1)))
        .file(
            "ids/y2100",
            b"after 2038",
            &M::default().time(4_102_444_800, Some(999_999_999)),
        )
        .dir("links", &M::dir())
        .symlink("links/fast", "../srv/small", &M::default())
        .symlink("links/exactly59", "a".repeat(59), &M::default())
        .symlink("links/exactly60", "b".repeat(60), &M::default())
        .symlink(
            "links/slow",
            format!("/{}", "long/".repeat(40)),
            &M::default(),
        )
        .symlink("links/max", "m".repeat(4095), &M::default())
        .symlink(
            "links/dangling",
            "/nowhere/at/all",
            &M::default().owner(7, 8),
        )
        .dir("dev", &M::dir())
        .chardev("dev/null", 1, 3, &M::mode(0o666))
        .blockdev("dev/sda", 8, 0, &M::mode(0o660).owner(0, 6))
        .chardev("dev/bigchar", 4095, 1_048_575, &M::mode(0o600))
        .blockdev("dev/nvme", 259, 300_000, &M::mode(0o600))
        .chardev("dev/minor256", 1, 256, &M::mode(0o600))
        .chardev("dev/major256", 256, 1, &M::mode(0o600))
        .fifo("dev/fifo", &M::mode(0o620))
        .dir("hard", &M::dir())
        .file("hard/one", b"shared content", &M::mode(0o751))
        .hardlink("hard/two", "hard/one")
        .hardlink("hard/three", "hard/one")
        .hardlink("srv/four", "hard/one")
        .symlink("hard/sym", "one", &M::default())
        .hardlink("hard/sym-link", "hard/sym");
    let l1 = l1.finish();

    // Layer 2: hard links to files of layer 1, one of them replaced.
    let mut l2 = LayerBuilder::new();
    l2.dir("hard", &M::dir())
        .hardlink("hard/five", "hard/one")
        .file("hard/two", b"replaced: no longer linked", &M::default())
        .dir("new", &M::dir())
        .hardlink("new/bin-link", "bin/setuid");
    let l2 = l2.finish();

    let img = roundtrip(&[(&l1, Wrap::Gzip), (&l2, Wrap::Zstd)], &opts());
    // The same checks, directly, for a few of them.
    let m = Mount::ro(&img.path);
    let md = fs::symlink_metadata(m.path().join("bin/setuid")).unwrap();
    assert_eq!(md.mode(), 0o104755);
    assert_eq!(md.nlink(), 2);
    let md = fs::metadata(m.path().join("ids/u4e9")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4_000_000_000, 4_294_967_294));
    let md = fs::metadata(m.path().join("srv/small")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (T0, 123_456_789));
    let md = fs::metadata(m.path().join("ids/y2100")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (4_102_444_800, 999_999_999));
    let md = fs::symlink_metadata(m.path().join("dev/bigchar")).unwrap();
    assert_eq!(
        (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())),
        (4095, 1_048_575)
    );
    assert_eq!(
        fs::metadata(m.path().join("hard/one")).unwrap().nlink(),
        4,
        "one, three, four, five"
    );
    assert_eq!(
        fs::read_link(m.path().join("links/max"))
            .unwrap()
            .as_os_str()
            .len(),
        4095
    );
}

#[test]
fn long_names_gnu_and_pax() {
    let long_dir = "d".repeat(200);
    let name255 = "n".repeat(255);
    for pax in [false, true] {
        let mut b = LayerBuilder::new();
        b.pax_paths = pax;
        b.dir(&long_dir, &M::dir())
            .file(format!("{long_dir}/{name255}"), b"deep", &M::default())
            .dir(format!("{long_dir}/{}", "e".repeat(250)), &M::dir())
            .file(
                format!("{long_dir}/{}/{}", "e".repeat(250), "f".repeat(120)),
                b"deeper",
                &M::default(),
            )
            .symlink("to-long", format!("{long_dir}/{name255}"), &M::default())
            .hardlink("hard-to-long", format!("{long_dir}/{name255}"))
            .file("utf8-ünïcødé-名前", b"u", &M::default())
            .file(b"latin1-\xe9\xff", b"not utf-8", &M::default())
            .file("with space and\ttab", b"s", &M::default());
        let l = b.finish();
        roundtrip(&[(&l, Wrap::Plain)], &opts());
    }
}

#[test]
fn xattrs_in_inode_in_block_and_shared() {
    let big = noise(3000, 7);
    let big2 = noise(3000, 8);
    let mut b = LayerBuilder::new();
    b.dir("x", &M::dir().xattr("user.dir", b"on a directory"))
        .file(
            "x/small",
            b"s",
            &M::default().xattr("user.a", b"1").xattr("user.b", b""),
        )
        .file(
            "x/binary",
            b"b",
            &M::default().xattr("user.bin", &[0, 10, 255, 13, 10, 0]),
        )
        .file(
            "x/big1",
            b"1",
            &M::default().xattr("user.big", &big).xattr("user.k", b"v"),
        )
        .file(
            "x/big2",
            b"2",
            &M::default().xattr("user.big", &big).xattr("user.k", b"v"),
        )
        .file("x/big3", b"3", &M::default().xattr("user.big", &big2))
        .file(
            "x/namespaces",
            b"n",
            &M::default()
                .xattr("trusted.overlay.opaque", b"y")
                .xattr("security.selinux", b"system_u:object_r:bin_t:s0\0")
                .xattr("user.many.dots.in.name", b"d"),
        )
        .file(
            "x/ping",
            &noise(10_000, 3),
            &M::mode(0o755).xattr("security.capability", &CAP_V2),
        );
    // Many small xattrs: more than the inode's in-body space.
    let mut many = M::default();
    for i in 0..40 {
        many = many.xattr(&format!("user.attr{i:02}"), format!("value {i}").as_bytes());
    }
    b.file("x/many", b"m", &many);
    let l = b.finish();
    let img = roundtrip(&[(&l, Wrap::Gzip)], &opts());

    // security.capability as getcap sees it.
    let m = Mount::ro(&img.path);
    let getcap = run(Command::new("getcap").arg(m.path().join("x/ping")));
    assert!(
        getcap.contains("cap_dac_override,cap_fowner,cap_net_raw=ep"),
        "getcap: {getcap}"
    );
    drop(m);

    // Identical large sets share one xattr block; a different set has its own.
    let acl = |p: &str| -> u64 {
        let s = debugfs(&img.path, &format!("stat /x/{p}"));
        s.split("File ACL:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no File ACL in debugfs stat of {p}:\n{s}"))
    };
    let (b1, b2, b3, small) = (acl("big1"), acl("big2"), acl("big3"), acl("small"));
    assert_ne!(b1, 0, "a 3000-byte value needs an xattr block");
    assert_eq!(b1, b2, "identical xattr sets share their block");
    assert_ne!(b1, b3);
    assert_eq!(small, 0, "small xattrs stay in the inode");
}

#[test]
fn too_many_xattrs_for_a_block_is_an_error() {
    let mut b = LayerBuilder::new();
    b.file(
        "f",
        b"",
        &M::default()
            .xattr("user.a", &noise(3000, 1))
            .xattr("user.b", &noise(3000, 2)),
    );
    let l = b.finish();
    let (_d, _p, r) = build(&[l.tar], &opts());
    let e = r.expect_err("6000 bytes of xattrs do not fit in one 4 KiB block");
    assert!(e.to_string().contains("/f"), "{e}");
}

#[test]
fn files_with_many_extents_and_a_depth_two_extent_tree() {
    // Data blocks separated by zero blocks (which become holes): one extent each.
    fn fragmented(n: usize, seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(n * 8192);
        for i in 0..n {
            v.extend_from_slice(&noise(4096, seed + i as u64));
            v.extend_from_slice(&[0u8; 4096]);
        }
        v.truncate(v.len() - 4000); // ends inside a hole
        v
    }
    let mut b = LayerBuilder::new();
    b.file("five", &fragmented(5, 100), &M::default())
        .file("three-hundred", &fragmented(300, 200), &M::default())
        .file("deep", &fragmented(2000, 5000), &M::default())
        .file("zeros", &vec![0u8; 1 << 20], &M::default())
        .file(
            "leading-hole",
            &[vec![0u8; 1 << 20], noise(10, 9)].concat(),
            &M::default(),
        );
    let l = b.finish();
    let img = roundtrip(&[(&l, Wrap::Zstd)], &opts());

    let depth = |p: &str| -> usize {
        let s = debugfs(&img.path, &format!("ex /{p}"));
        // "Level Entries ..." then lines starting with " 0/ 1" etc.
        s.lines()
            .filter_map(|l| {
                l.trim_start()
                    .split('/')
                    .next()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .unwrap_or_else(|| panic!("debugfs ex /{p}:\n{s}"))
    };
    assert_eq!(depth("five"), 1, "five extents need an index node");
    assert_eq!(depth("three-hundred"), 1);
    assert_eq!(depth("deep"), 2, "2000 extents need a depth-2 tree");

    let m = Mount::ro(&img.path);
    let md = fs::metadata(m.path().join("deep")).unwrap();
    assert!(
        md.blocks() * 512 <= 2000 * 4096 + 64 * 4096,
        "holes became data: {} blocks",
        md.blocks()
    );
    assert_eq!(fs::metadata(m.path().join("zeros")).unwrap().blocks(), 0);
}

/// Makes a mostly-sparse file of `size` bytes on the host (data at a few
/// offsets, the last one 10 bytes before the end) and archives it with GNU tar.
fn sparse_layer(format: &str, size: u64) -> Layer {
    let src = tempdir();
    let f = src.path().join("big");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut fh = fs::File::create(&f).unwrap();
        let offsets = [
            0u64,
            1 << 20,
            size / 2,
            size - (200 << 20) + 12345,
            size - 50_010,
        ];
        for (i, off) in offsets.into_iter().enumerate() {
            fh.seek(SeekFrom::Start(off)).unwrap();
            fh.write_all(&noise(10 + 5000 * i, i as u64)).unwrap();
        }
        fh.set_len(size).unwrap();
    }
    let out = src.path().join("layer.tar");
    run(Command::new("tar")
        .args(["--sparse", "--numeric-owner", "--mtime=@1700000000"])
        .arg(format!("--format={format}"))
        .arg("-C")
        .arg(src.path())
        .arg("-cf")
        .arg(&out)
        .arg("big"));
    Layer {
        tar: fs::read(&out).unwrap(),
        entries: vec![Recorded {
            path: b"big".to_vec(),
            kind: Kind::File,
            mode: 0o644,
        }],
    }
}

#[test]
fn sparse_file_over_4_gib_keeps_its_holes() {
    // posix: PAX sparse 1.0; gnu: old GNU sparse headers (type S). One file
    // over 4 GiB is enough (the writer reads every hole as zeros: slow in a
    // debug build); the other format gets a smaller one.
    for (format, size) in [
        ("posix", (4u64 << 30) + (256 << 20) + 4096 + 77),
        ("gnu", 300 << 20),
    ] {
        let l = sparse_layer(format, size);
        assert!(l.tar.len() < 1 << 20, "the layer is small: {}", l.tar.len());
        let img = roundtrip(&[(&l, Wrap::Gzip)], &opts());
        let m = Mount::ro(&img.path);
        let md = fs::metadata(m.path().join("big")).unwrap();
        assert_eq!(md.len(), size);
        assert!(
            md.blocks() * 512 < 1 << 20,
            "{format}: holes stay holes, but {} bytes are allocated",
            md.blocks() * 512
        );
        let image_len = fs::metadata(&img.path).unwrap().len();
        assert!(
            image_len < 1 << 30,
            "the image does not grow with the holes: {image_len} bytes"
        );
    }
}

#[test]
fn directory_with_100k_entries() {
    const N: usize = 100_000;
    let mut b = LayerBuilder::new();
    b.dir("big", &M::dir());
    let name = |i: usize| format!("entry-{i:06}-{}", "x".repeat(i % 37));
    for i in 0..N {
        b.file(format!("big/{}", name(i)), b"", &M::default());
    }
    b.file("big/last", b"last", &M::default());
    let l = b.finish();
    // Default headroom: with a small one, see many_small_files_small_headroom.
    let o = skiff_ext4::writer::Options {
        time: Some(T0 as u32),
        ..Default::default()
    };
    let img = build_ok(&[l.zst()], &o);
    let m = Mount::ro(&img.path);
    let d = m.path().join("big");
    let count = fs::read_dir(&d).unwrap().count();
    assert_eq!(count, N + 1);
    for i in [0, 1, 4242, 50_000, 77_777, N - 1] {
        let md = fs::symlink_metadata(d.join(name(i)))
            .unwrap_or_else(|e| panic!("stat big/{}: {e}", name(i)));
        assert!(md.is_file());
    }
    assert!(fs::symlink_metadata(d.join("entry-000001-x-nope")).is_err());
    assert_eq!(fs::read(d.join("last")).unwrap(), b"last");
    let lsattr = run(Command::new("lsattr").arg("-d").arg(&d));
    assert!(
        lsattr.split_whitespace().next().unwrap_or("").contains('I'),
        "a 100k-entry directory is hash-indexed: {lsattr}"
    );
    // `ls | wc -l`, as a user would.
    let ls = run(Command::new("sh")
        .arg("-c")
        .arg(format!("ls {} | wc -l", d.display())));
    assert_eq!(ls.trim(), (N + 1).to_string());
}

#[test]
fn read_write_mount_then_fsck_is_clean() {
    let mut b = LayerBuilder::new();
    b.dir("etc", &M::dir())
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", &M::default())
        .dir("many", &M::dir());
    for i in 0..3000 {
        b.file(format!("many/f{i}"), b"", &M::default());
    }
    let l = b.finish();
    let img = build_ok(&[l.tar], &opts());
    {
        let m = Mount::rw(&img.path);
        let p = m.path();
        fs::write(p.join("etc/new"), noise(3 << 20, 11)).unwrap();
        fs::write(p.join("etc/passwd"), b"changed\n").unwrap();
        fs::create_dir_all(p.join("a/b/c")).unwrap();
        for i in 0..500 {
            fs::write(p.join(format!("many/g{i}")), b"more").unwrap();
        }
        for i in 0..1000 {
            fs::remove_file(p.join(format!("many/f{i}"))).unwrap();
        }
        fs::rename(p.join("many/f2000"), p.join("a/b/c/moved")).unwrap();
        run(&mut Command::new("sync"));
        m.unmount();
    }
    check_fsck(&img.path);
    let m = Mount::ro(&img.path);
    assert_eq!(fs::read(m.path().join("etc/passwd")).unwrap(), b"changed\n");
    assert_eq!(
        fs::read(m.path().join("etc/new")).unwrap(),
        noise(3 << 20, 11)
    );
    assert_eq!(
        fs::read_dir(m.path().join("many")).unwrap().count(),
        2000 + 500 - 1
    );
    assert!(m.path().join("a/b/c/moved").exists());
    drop(m);
    let features = run(Command::new("dumpe2fs").arg("-h").arg(&img.path));
    for f in ["has_journal", "extent", "metadata_csum", "dir_index"] {
        assert!(features.contains(f), "feature {f} missing:\n{features}");
    }
}

#[test]
fn default_options_leave_at_least_a_gib_free() {
    let mut b = LayerBuilder::new();
    b.file("f", &noise(100_000, 5), &M::default());
    let l = b.finish();
    let img = build_ok(&[l.gz()], &skiff_ext4::writer::Options::default());
    // What the kernel offers to write, as `df` shows it.
    let st = statvfs_of(&img.path);
    assert!(
        st.f_bavail * st.f_frsize >= 1 << 30,
        "default headroom: {} bytes available",
        st.f_bavail * st.f_frsize
    );
    let md = fs::metadata(&img.path).unwrap();
    let on_disk = md.blocks() * 512;
    assert!(
        on_disk < 64 << 20,
        "the image is sparse: {on_disk} bytes on disk for {} bytes",
        md.len()
    );
    let reference = Reference::of(&[&l]);
    assert_matches_reference(&img.path, &reference);
}

/// More files than one block group has inodes (32768), little content and a
/// small headroom: the layout must grow to more groups, not give up.
#[test]
fn many_small_files_small_headroom() {
    let mut b = LayerBuilder::new();
    b.dir("d", &M::dir());
    for i in 0..40_000 {
        b.file(format!("d/{i}"), b"", &M::default());
    }
    let l = b.finish();
    let img = build_ok(&[l.tar], &opts());
    // Inodes in use as the kernel counts them: the 40,000 files, d, and the
    // 11 that every ext4 has (reserved ones, root, lost+found); the same as
    // e2fsck's count, over more groups than one.
    let used = 40_000 + 1 + 11;
    let st = statvfs_of(&img.path);
    assert_eq!(st.f_files - st.f_ffree, used);
    assert_eq!(check_fsck(&img.path).inodes_used, used);
    assert!(dumpe2fs_field(&img.path, "Inodes per group") < used);
    let m = Mount::ro(&img.path);
    assert_eq!(fs::read_dir(m.path().join("d")).unwrap().count(), 40_000);
}

/// The comparison itself: each kind of difference is reported.
#[test]
fn comparison_reports_every_kind_of_difference() {
    let base = |f: &mut dyn FnMut(&mut LayerBuilder)| {
        let mut b = LayerBuilder::new();
        f(&mut b);
        b.finish()
    };
    let good = |b: &mut LayerBuilder| {
        b.dir("d", &M::dir())
            .file(
                "d/f",
                b"content",
                &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
            )
            .file("d/g", b"g", &M::default())
            .hardlink("d/h", "d/f")
            .symlink("d/s", "f", &M::default())
            .chardev("d/c", 1, 2, &M::default());
    };
    let img = build_ok(&[base(&mut |b| good(b)).tar], &opts());
    let m = Mount::ro(&img.path);
    let image = snapshot(m.path());
    type Variant = Box<dyn Fn(&mut LayerBuilder)>;
    let variants: Vec<(&str, Variant)> = vec![
        (
            "mtime",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(6)).xattr("user.a", b"1"),
                    )
                    .file("d/g", b"g", &M::default())
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
        (
            "xattrs",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"2"),
                    )
                    .file("d/g", b"g", &M::default())
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
        (
            "hard links",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .file("d/g", b"g", &M::default())
                    .file(
                        "d/h",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
        (
            "content",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .file("d/g", b"G", &M::default())
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
        (
            "target",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .file("d/g", b"g", &M::default())
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "g", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
        (
            "rdev",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .file("d/g", b"g", &M::default())
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 3, &M::default());
            }),
        ),
        (
            "mode",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::mode(0o750))
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .file("d/g", b"g", &M::default())
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
        (
            "only in the image",
            Box::new(|b: &mut LayerBuilder| {
                b.dir("d", &M::dir())
                    .file(
                        "d/f",
                        b"content",
                        &M::default().time(T0, Some(5)).xattr("user.a", b"1"),
                    )
                    .hardlink("d/h", "d/f")
                    .symlink("d/s", "f", &M::default())
                    .chardev("d/c", 1, 2, &M::default());
            }),
        ),
    ];
    let same = Reference::of(&[&base(&mut |b| good(b))]);
    assert_eq!(
        compare(&image, &same, &snapshot(&same.root)),
        Vec::<String>::new()
    );
    for (what, f) in variants {
        let l = base(&mut |b| f(b));
        let r = Reference::of(&[&l]);
        let diffs = compare(&image, &r, &snapshot(&r.root));
        assert!(
            diffs.iter().any(|d| d.contains(what)),
            "a {what} difference is not reported: {diffs:?}"
        );
    }
    drop(m);
}

/// POSIX ACLs travel as `SCHILY.xattr.system.posix_acl_*` in the VFS format;
/// ext4 stores them in its own format. They must read back the same.
#[test]
fn posix_acls_round_trip() {
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }
    const UNDEF: u32 = u32::MAX;
    let access = acl(&[
        (0x01, 6, UNDEF),
        (0x02, 4, 1000),
        (0x02, 6, 70_000),
        (0x04, 4, UNDEF),
        (0x08, 5, 50),
        (0x10, 6, UNDEF),
        (0x20, 4, UNDEF),
    ]);
    let default = acl(&[
        (0x01, 7, UNDEF),
        (0x04, 5, UNDEF),
        (0x08, 7, 4242),
        (0x10, 7, UNDEF),
        (0x20, 5, UNDEF),
    ]);
    let mut b = LayerBuilder::new();
    b.dir(
        "shared",
        &M::mode(0o775)
            // (A minimal ACL, one that only repeats the mode, is no ACL to
            // the kernel: the reference would drop it.)
            .xattr(
                "system.posix_acl_access",
                &acl(&[
                    (0x01, 7, UNDEF),
                    (0x04, 7, UNDEF),
                    (0x08, 5, 7),
                    (0x10, 7, UNDEF),
                    (0x20, 5, UNDEF),
                ]),
            )
            .xattr("system.posix_acl_default", &default),
    )
    .file(
        "shared/file",
        b"acl",
        &M::mode(0o664).xattr("system.posix_acl_access", &access),
    );
    let l = b.finish();
    roundtrip(&[(&l, Wrap::Plain)], &opts());
}

/// A crash with the journal committed but not checkpointed (ext4's shutdown
/// ioctl, `EXT4_GOING_FLAGS_LOGFLUSH`): the next mount replays the journal
/// the writer laid out, the data is there and fsck is clean.
#[test]
fn journal_replays_after_a_crash() {
    let mut b = LayerBuilder::new();
    b.dir("etc", &M::dir()).file("etc/a", b"a", &M::default());
    let l = b.finish();
    let img = build_ok(&[l.gz()], &opts());
    {
        let m = Mount::rw(&img.path);
        let p = m.path();
        fs::write(p.join("etc/after-crash"), noise(200_000, 3)).unwrap();
        fs::create_dir(p.join("newdir")).unwrap();
        fs::remove_file(p.join("etc/a")).unwrap();
        fs::File::open(p.join("etc/after-crash"))
            .unwrap()
            .sync_all()
            .unwrap();
        // EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32), flags 1 = LOGFLUSH.
        run(Command::new("python3").arg("-c").arg(format!(
            "import fcntl, os, struct\n\
             fd = os.open({:?}, os.O_RDONLY)\n\
             fcntl.ioctl(fd, 0x8004587D, struct.pack('I', 1))",
            p.display().to_string()
        )));
        m.unmount();
    }
    let features = run(Command::new("dumpe2fs").arg("-h").arg(&img.path));
    assert!(
        features.contains("needs_recovery"),
        "the shutdown left the journal to replay:\n{features}"
    );
    {
        let m = Mount::rw(&img.path); // replays
        assert_eq!(
            fs::read(m.path().join("etc/after-crash")).unwrap(),
            noise(200_000, 3)
        );
        assert!(m.path().join("newdir").is_dir());
        assert!(!m.path().join("etc/a").exists());
        m.unmount();
    }
    check_fsck(&img.path);
}

/// The fsck check itself (`common/fsck.rs`): a clean image passes with
/// e2fsck's own counts; a bad group descriptor checksum, which `e2fsck -fn`
/// reports as IGNORED and still exits 0 for, is rejected.
#[test]
fn fsck_check_rejects_what_the_exit_status_lets_through() {
    let mut b = LayerBuilder::new();
    b.file("f", b"x", &M::default());
    let img = build_ok(&[b.finish().tar], &opts());
    let s = check_fsck(&img.path);
    let blocks = dumpe2fs_field(&img.path, "Block count");
    assert_eq!(s.blocks, blocks);
    assert_eq!(
        s.blocks_used,
        blocks - dumpe2fs_field(&img.path, "Free blocks")
    );
    // The 11 inodes every ext4 has (reserved, root, lost+found), and f.
    assert_eq!(s.inodes_used, 12);

    // Group 0's descriptor is the first in block 1 (4 KiB blocks); its
    // checksum is bg_checksum at offset 0x1e.
    assert_eq!(dumpe2fs_field(&img.path, "Block size"), 4096);
    assert_eq!(dumpe2fs_field(&img.path, "First block"), 0);
    let groups = run(Command::new("dumpe2fs").arg(&img.path));
    let csum = groups
        .lines()
        .find(|l| l.starts_with("Group 0:"))
        .and_then(|l| l.split_once(" csum 0x"))
        .and_then(|(_, r)| u16::from_str_radix(&r[..4], 16).ok())
        .unwrap_or_else(|| panic!("no checksum for group 0 in dumpe2fs:\n{groups}"));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img.path)
        .unwrap();
    let mut raw = [0u8; 2];
    f.read_exact_at(&mut raw, 4096 + 0x1e).unwrap();
    assert_eq!(raw, csum.to_le_bytes(), "bg_checksum of group 0");
    f.write_all_at(&[!raw[0], raw[1]], 4096 + 0x1e).unwrap();
    drop(f);

    let bare = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img.path)
        .output()
        .unwrap();
    assert_eq!(
        bare.status.code(),
        Some(0),
        "the premise: e2fsck -fn exits 0 for this corruption"
    );
    let err = fsck::fsck(&img.path).expect_err("a bad descriptor checksum must be rejected");
    assert!(err.contains("IGNORED"), "{err}");
}
