//! The real-world case: a Debian minbase rootfs (`debootstrap
//! --variant=minbase`, ~200 MB, ~7k files) as one layer, plus a second layer
//! that deletes and replaces things; fsck-clean and equal to GNU tar's
//! extraction.
//!
//! In the slow suite (`SKIFF_SLOW=1 ./scripts/test.sh`, which runs ignored
//! tests): debootstrapping the input takes a minute or more and the network,
//! too much for the default suite on a fresh machine. Input:
//! `SKIFF_DEBIAN_ROOTFS`, else a rootfs debootstrapped once into
//! `$SKIFF_TEST_CACHE` (default `/var/cache/skiff-tests`), outside the clone.
//! Without either (no debootstrap, no network) the test fails.

mod common;

use std::fs;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;

fn is_rootfs(p: &Path) -> bool {
    p.join("usr/bin/dpkg").exists()
}

/// The Debian minbase rootfs, debootstrapped on first use.
fn rootfs() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_DEBIAN_ROOTFS") {
        let p = PathBuf::from(p);
        assert!(
            is_rootfs(&p),
            "SKIFF_DEBIAN_ROOTFS={} is no Debian rootfs",
            p.display()
        );
        return p;
    }
    let cache = std::env::var_os("SKIFF_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/skiff-tests"))
        .join("debian-minbase-bookworm");
    let root = cache.join("rootfs");
    if !is_rootfs(&root) {
        assert!(
            Command::new("debootstrap")
                .arg("--version")
                .output()
                .is_ok(),
            "no Debian rootfs at {} and no debootstrap to make one \
             (apt-get install debootstrap; scripts/test.sh does with SKIFF_SLOW=1)",
            root.display()
        );
        // Into a temporary name first: an interrupted run leaves no
        // half-made rootfs behind under the final one.
        let tmp = cache.join(format!("rootfs.tmp-{}", std::process::id()));
        fs::create_dir_all(&cache).unwrap();
        let _ = fs::remove_dir_all(&tmp);
        let _ = fs::remove_dir_all(&root);
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&tmp)
            .arg("http://deb.debian.org/debian"));
        fs::rename(&tmp, &root).unwrap();
    }
    root
}

/// What a `tar -C rootfs -c .` archive holds, for the reference: every path
/// with its kind and, for directories, its mode.
fn entries_of(root: &Path) -> Vec<Recorded> {
    let mut out = vec![Recorded {
        path: b"./".to_vec(),
        kind: Kind::Dir,
        mode: fs::symlink_metadata(root).unwrap().mode() & 0o7777,
    }];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let mut path = b"./".to_vec();
            path.extend_from_slice(&rel);
            let kind = if md.is_dir() {
                stack.push(e.path());
                Kind::Dir
            } else if md.file_type().is_symlink() {
                Kind::Symlink
            } else {
                Kind::File
            };
            out.push(Recorded {
                path,
                kind,
                mode: md.mode() & 0o7777,
            });
        }
    }
    out
}

#[test]
#[ignore = "slow (debootstrap): SKIFF_SLOW=1 ./scripts/test.sh"]
fn debian_minbase_plus_a_layer_that_deletes_and_replaces() {
    let root = rootfs();
    let t0 = Instant::now();
    let work = tempdir();
    let base = work.path().join("base.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&base)
        .arg("."));
    let base_entries = entries_of(&root);
    assert!(base_entries.len() > 5000, "a minbase has ~7k files");
    for must in [
        "usr/share/doc",
        "etc/apt",
        "usr/bin/ls",
        "usr/bin/cat",
        "var/log",
    ] {
        assert!(root.join(must).exists(), "the rootfs has no /{must}");
    }

    // Layer 2: deletions, an opaque directory, a replaced binary (with a
    // capability), a directory replaced by a file and the reverse, a hard
    // link to a file of layer 1, a new tree.
    let mut b = LayerBuilder::new();
    b.whiteout("usr/share/doc")
        .whiteout("etc/hostname")
        .whiteout("var/log")
        .whiteout("etc/motd")
        .opaque("etc/apt")
        .dir("etc/apt", &M::dir())
        .file(
            "etc/apt/sources.list",
            b"deb http://deb.debian.org/debian bookworm main\n",
            &M::default(),
        )
        .dir("usr/bin", &M::dir())
        .file(
            "usr/bin/ls",
            &noise(150_000, 1),
            &M::mode(0o755).xattr(
                "security.capability",
                &[
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
        )
        .hardlink("usr/bin/cat-again", "usr/bin/cat")
        .file("var/log", b"a file where /var/log was\n", &M::mode(0o600))
        .dir("opt", &M::dir())
        .dir("opt/app", &M::mode(0o750).owner(1000, 1000))
        .file(
            "opt/app/run",
            b"#!/bin/sh\necho hi\n",
            &M::mode(0o4755).owner(1000, 1000).time(T0, Some(42)),
        );
    let extra = b.finish();

    let img_dir = tempdir();
    let img_path = img_dir.path().join("debian.ext4");
    let mut out = fs::File::create(&img_path).unwrap();
    let t_build = Instant::now();
    let layers: Vec<Box<dyn std::io::Read + Send>> = vec![
        Box::new(BufReader::with_capacity(
            1 << 20,
            fs::File::open(&base).unwrap(),
        )),
        Box::new(std::io::Cursor::new(extra.gz())),
    ];
    let stats = skiff_ext4::writer::build(layers, &mut out, &opts(), &mut |_| {})
        .unwrap_or_else(|e| panic!("build: {e}"));
    drop(out);
    let build_s = t_build.elapsed().as_secs_f64();
    check_fsck(&img_path);

    let mut reference = Reference::new();
    reference.apply_tar_file(&base, &base_entries);
    reference.apply(&extra);
    assert_matches_reference(&img_path, &reference);

    let m = Mount::ro(&img_path);
    assert!(!m.path().join("usr/share/doc").exists());
    assert!(m.path().join("var/log").is_file());
    assert_eq!(fs::read_dir(m.path().join("etc/apt")).unwrap().count(), 1);
    let getcap = run(Command::new("getcap").arg(m.path().join("usr/bin/ls")));
    assert!(getcap.contains("cap_net_raw=ep"), "{getcap}");
    assert_eq!(
        fs::metadata(m.path().join("usr/bin/cat")).unwrap().ino(),
        fs::metadata(m.path().join("usr/bin/cat-again"))
            .unwrap()
            .ino()
    );
    drop(m);
    eprintln!(
        "debian: {} entries, {} MB content, build {build_s:.1} s, whole test {:.1} s",
        stats.entries,
        stats.content_bytes / 1_000_000,
        t0.elapsed().as_secs_f64()
    );
}
