//! Layer semantics across a stack: whiteouts, opaque directories, a type
//! replacing another, hard links across layers, space of deleted files, and
//! sizing errors. Every image is fsck-clean and equal to GNU tar's extraction
//! with the whiteouts applied by hand.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;
use skiff_ext4::writer::{Error, Options};

#[test]
fn whiteouts_and_opaque_directories() {
    let mut l1 = LayerBuilder::new();
    l1.dir("a", &M::dir())
        .dir("a/b", &M::dir())
        .dir("a/b/c", &M::mode(0o700))
        .file("a/f1", b"f1", &M::default())
        .file("a/b/f2", b"f2", &M::default())
        .file("a/b/c/f3", b"f3", &M::default())
        .dir("keep", &M::dir())
        .file("keep/k", b"k", &M::default())
        .file("x", b"x", &M::default())
        .symlink("s", "keep/k", &M::default())
        .dir("o", &M::mode(0o750).owner(5, 6))
        .file("o/old1", b"old", &M::default())
        .dir("o/sub", &M::dir())
        .file("o/sub/old2", b"old", &M::default())
        .dir("o/sub/deeper", &M::dir())
        .file("o/sub/deeper/old3", b"old", &M::default())
        .dir("o2", &M::dir())
        .file("o2/gone", b"gone", &M::default())
        .fifo("fifo", &M::default())
        .dir("empty", &M::dir());
    let l1 = l1.finish();

    // Whiteouts first (the OCI spec asks writers to put them first).
    let mut l2 = LayerBuilder::new();
    l2.whiteout("a/f1")
        .whiteout("a/b")
        .whiteout("nope")
        .whiteout("missing/parent/x")
        .whiteout("s")
        .whiteout("fifo")
        .whiteout("empty")
        .opaque("o")
        .opaque("o2")
        .dir("o/sub", &M::dir().time(T0 + 5, Some(7)))
        .file("o/sub/new2", b"new", &M::default())
        .file("o/new", b"new", &M::default())
        .file("keep/added", b"added", &M::default());
    let l2 = l2.finish();

    // Layer 3: what was deleted comes back as another type.
    let mut l3 = LayerBuilder::new();
    l3.file("a/b", b"a file where a directory was", &M::mode(0o600))
        .dir("s", &M::dir())
        .file("s/inside", b"", &M::default())
        .symlink("fifo", "x", &M::default());
    let l3 = l3.finish();

    let img = roundtrip(
        &[(&l1, Wrap::Plain), (&l2, Wrap::Gzip), (&l3, Wrap::Zstd)],
        &opts(),
    );
    let m = Mount::ro(&img.path);
    let p = m.path();
    assert!(!p.join("a/f1").exists());
    assert!(fs::symlink_metadata(p.join("a/b")).unwrap().is_file());
    assert!(!p.join("o/old1").exists() && !p.join("o/sub/old2").exists());
    assert!(!p.join("o/sub/deeper").exists());
    assert_eq!(fs::read(p.join("o/sub/new2")).unwrap(), b"new");
    assert_eq!(fs::read_dir(p.join("o2")).unwrap().count(), 0);
    let o = fs::metadata(p.join("o")).unwrap();
    assert_eq!((o.mode() & 0o7777, o.uid(), o.gid()), (0o750, 5, 6));
}

#[test]
fn opaque_root_and_whiteout_of_everything() {
    let mut l1 = LayerBuilder::new();
    l1.dir("etc", &M::dir())
        .file("etc/a", b"a", &M::default())
        .file("top", b"t", &M::default());
    let l1 = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.opaque("").file("fresh", b"f", &M::default());
    let l2 = l2.finish();
    let img = roundtrip(&[(&l1, Wrap::Plain), (&l2, Wrap::Plain)], &opts());
    let m = Mount::ro(&img.path);
    let mut names: Vec<_> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fresh", "lost+found"]);
}

#[test]
fn types_replace_each_other_across_layers() {
    let mut l1 = LayerBuilder::new();
    l1.file("file-to-dir", b"f", &M::default())
        .dir("dir-to-file", &M::dir())
        .file("dir-to-file/child", b"c", &M::default())
        .dir("dir-to-file/sub", &M::dir())
        .file("dir-to-file/sub/grandchild", b"g", &M::default())
        .symlink("symlink-to-dir", "elsewhere", &M::default())
        .dir("dir-to-symlink", &M::dir())
        .file("dir-to-symlink/x", b"x", &M::default())
        .file("file-to-symlink", b"f", &M::default())
        .fifo("fifo-to-file", &M::default())
        .chardev("dev-to-dir", 1, 5, &M::default())
        .file("linked", b"two names", &M::default())
        .hardlink("linked-too", "linked")
        .dir("holder", &M::dir())
        .hardlink("holder/third-name", "linked");
    let l1 = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.dir("file-to-dir", &M::mode(0o711))
        .file("file-to-dir/inner", b"i", &M::default())
        .file("dir-to-file", b"now a file", &M::default())
        .dir("symlink-to-dir", &M::dir())
        .file("symlink-to-dir/y", b"y", &M::default())
        .symlink("dir-to-symlink", "file-to-dir", &M::default())
        .symlink("file-to-symlink", "/abs/target", &M::default())
        .file("fifo-to-file", b"data", &M::default())
        .dir("dev-to-dir", &M::dir())
        .dir("linked", &M::dir())
        .file(
            "holder",
            b"a file replaces a directory holding a hard link",
            &M::default(),
        );
    let l2 = l2.finish();
    let img = roundtrip(&[(&l1, Wrap::Gzip), (&l2, Wrap::Gzip)], &opts());
    let m = Mount::ro(&img.path);
    let md = fs::metadata(m.path().join("linked-too")).unwrap();
    assert_eq!(md.nlink(), 1, "the other names are gone");
    assert_eq!(fs::read(m.path().join("linked-too")).unwrap(), b"two names");
}

#[test]
fn hard_links_across_layers() {
    let mut l1 = LayerBuilder::new();
    l1.dir("d", &M::dir())
        .file("d/orig", &noise(9000, 1), &M::mode(0o4711).owner(3, 4))
        .file("d/other", b"other", &M::default());
    let l1 = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.dir("e", &M::dir())
        .hardlink("e/link1", "d/orig")
        .hardlink("e/link2", "/d/orig") // absolute link names are inside the root
        .hardlink("d/other", "d/orig"); // a link replaces a file
    let l2 = l2.finish();
    let mut l3 = LayerBuilder::new();
    l3.whiteout("d/orig").whiteout("e/link2");
    let l3 = l3.finish();
    let img = roundtrip(
        &[(&l1, Wrap::Plain), (&l2, Wrap::Plain), (&l3, Wrap::Plain)],
        &opts(),
    );
    let m = Mount::ro(&img.path);
    let a = fs::metadata(m.path().join("e/link1")).unwrap();
    let b = fs::metadata(m.path().join("d/other")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(a.mode() & 0o7777, 0o4711);
    assert_eq!(fs::read(m.path().join("d/other")).unwrap(), noise(9000, 1));
}

fn used_blocks(img: &std::path::Path) -> u64 {
    dumpe2fs_field(img, "Block count") - dumpe2fs_field(img, "Free blocks")
}

/// Space of files that later layers delete or replace is not counted as used.
#[test]
fn deleted_and_replaced_files_free_their_space() {
    let big = noise(48 << 20, 42);
    let fixed = Options {
        size: Some(256 << 20),
        time: Some(T0 as u32),
        ..Options::default()
    };
    let mut l1 = LayerBuilder::new();
    l1.file("big", &big, &M::default())
        .file("replaced", &big[..16 << 20], &M::default())
        .dir("dir", &M::dir())
        .file("dir/inner", &big[..8 << 20], &M::default())
        .file("small", b"s", &M::default());
    let l1 = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.whiteout("big")
        .whiteout("dir")
        .file("replaced", b"tiny now", &M::default());
    let l2 = l2.finish();
    let img = roundtrip(&[(&l1, Wrap::Zstd), (&l2, Wrap::Plain)], &fixed);

    // The same final tree, built without the deleted data ever being there.
    let mut only = LayerBuilder::new();
    only.file("replaced", b"tiny now", &M::default())
        .file("small", b"s", &M::default());
    let only = only.finish();
    let baseline = build_ok(&[only.tar], &fixed);

    let (used, base) = (used_blocks(&img.path), used_blocks(&baseline.path));
    assert!(
        used <= base + 16,
        "72 MiB deleted by layer 2 still count as used: {used} blocks used vs {base} \
         for the same tree built directly"
    );
    // And through the kernel's eyes.
    let m = Mount::ro(&img.path);
    let st = rustix::fs::statvfs(m.path()).unwrap();
    let used_kernel = (st.f_blocks - st.f_bfree) * st.f_frsize;
    assert!(
        used_kernel < 40 << 20,
        "df reports {used_kernel} bytes used after deleting 72 MiB"
    );
}

#[test]
fn size_too_small_is_a_clean_error() {
    let mut b = LayerBuilder::new();
    b.file("four-mib", &noise(4 << 20, 1), &M::default());
    let l = b.finish();
    for size in [0u64, 4096, 1 << 20, 4 << 20] {
        let o = Options {
            size: Some(size),
            ..opts()
        };
        let (_d, _p, r) = build(std::slice::from_ref(&l.tar), &o);
        match r {
            Err(e @ Error::TooSmall { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("needs") && !msg.contains('\n'), "{msg}");
            }
            other => panic!("--size {size}: expected TooSmall, got {other:?}"),
        }
    }
    // Just enough is fine.
    let o = Options {
        size: Some(16 << 20),
        ..opts()
    };
    let img = build_ok(std::slice::from_ref(&l.tar), &o);
    assert_eq!(fs_bytes(&img.path), 16 << 20);
    assert_eq!(fs::metadata(&img.path).unwrap().len(), 16 << 20);
}

#[test]
fn explicit_size_is_exact_and_unaligned_size_rounds_down() {
    let mut b = LayerBuilder::new();
    b.file("f", b"x", &M::default());
    let l = b.finish();
    for size in [(64 << 20) + 1000, 200 << 20, (1 << 30) + 4096] {
        let o = Options {
            size: Some(size),
            ..opts()
        };
        let img = build_ok(std::slice::from_ref(&l.tar), &o);
        assert_eq!(fs_bytes(&img.path), size / 4096 * 4096);
        assert_eq!(fs::metadata(&img.path).unwrap().len(), size / 4096 * 4096);
    }
}

#[test]
fn empty_layer_stack_and_empty_layers() {
    let img = build_ok(&[], &opts());
    let m = Mount::ro(&img.path);
    assert_eq!(
        fs::read_dir(m.path()).unwrap().count(),
        1,
        "just lost+found"
    );
    drop(m);
    // A zero-byte layer, an end-of-archive marker alone, gzip of nothing:
    // they add nothing and do not end the stack (the layer after them is
    // applied).
    let mut b = LayerBuilder::new();
    b.file("after", b"after the empty ones", &M::default());
    let after = b.finish();
    let img = build_ok(
        &[
            Vec::new(),
            vec![0u8; 1024],
            gz(&[0u8; 1024]),
            zst(b""),
            after.tar.clone(),
        ],
        &opts(),
    );
    assert_matches_reference(&img.path, &Reference::of(&[&after]));
}
