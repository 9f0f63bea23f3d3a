//! `skiff mkfs` and `skiff image mkfs`: layer files and images from a real
//! registry into ext4, checked with `e2fsck -fn` and read back with
//! `debugfs`; the store's cached base filesystem is built once; failures are
//! one-line errors that leave no output (and no temp file) behind.

mod common;
// The strict e2fsck check that every ext4 test uses (exit 0 alone lets
// problems reported as IGNORED through).
#[path = "../../skiff-ext4/tests/common/fsck.rs"]
mod fsck;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use fsck::check_fsck;

/// `debugfs -R CMD IMG`: stdout.
fn debugfs(img: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run debugfs");
    out.stdout
}

fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    debugfs(img, &format!("cat {path}"))
}

fn exists_in(img: &Path, path: &str) -> bool {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run debugfs");
    !String::from_utf8_lossy(&out.stderr).contains("File not found")
        && String::from_utf8_lossy(&out.stdout).contains("Inode:")
}

/// Two layer files made with GNU tar: a gzip base and a zstd layer that
/// deletes, replaces and adds.
fn two_layers(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("base");
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::create_dir_all(base.join("usr/share/doc/pkg")).unwrap();
    fs::create_dir_all(base.join("bin")).unwrap();
    fs::write(base.join("etc/hello"), "hello from layer 1\n").unwrap();
    fs::write(base.join("etc/gone"), "deleted by layer 2\n").unwrap();
    fs::write(base.join("usr/share/doc/pkg/README"), "docs\n").unwrap();
    fs::write(base.join("bin/tool"), pseudo_random_bytes(300_000)).unwrap();
    fs::set_permissions(base.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("tool", base.join("bin/alias")).unwrap();
    let upper = dir.join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("usr/share/doc")).unwrap();
    fs::write(upper.join("etc/.wh.gone"), "").unwrap();
    fs::write(upper.join("usr/share/doc/.wh..wh..opq"), "").unwrap();
    fs::write(upper.join("etc/hello"), "hello from layer 2\n").unwrap();
    fs::write(upper.join("etc/new"), "new\n").unwrap();
    let l1 = dir.join("base.tar.gz");
    let l2 = dir.join("upper.tar.zst");
    run_tool(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-czf"])
            .arg(&l1)
            .arg("-C")
            .arg(&base)
            .arg("."),
    );
    run_tool(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "--zstd", "-cf"])
            .arg(&l2)
            .arg("-C")
            .arg(&upper)
            .arg("."),
    );
    (l1, l2)
}

/// Names in `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&Path]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.iter().any(|k| k == p))
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn mkfs_from_gzip_and_zstd_layers() {
    let work = tempdir();
    let (l1, l2) = two_layers(work.path());
    let out_dir = tempdir();
    let img = out_dir.path().join("rootfs.ext4");
    let s = Skiff::new();
    let o = s.ok(&[
        "mkfs",
        "-o",
        img.to_str().unwrap(),
        l1.to_str().unwrap(),
        l2.to_str().unwrap(),
    ]);
    assert!(o.stderr.contains("Wrote"), "a summary line:\n{}", o.stderr);
    check_fsck(&img);
    assert_eq!(debugfs_cat(&img, "/etc/hello"), b"hello from layer 2\n");
    assert_eq!(debugfs_cat(&img, "/etc/new"), b"new\n");
    assert_eq!(debugfs_cat(&img, "/bin/tool"), pseudo_random_bytes(300_000));
    assert!(!exists_in(&img, "/etc/gone"), "whiteout applied");
    assert!(!exists_in(&img, "/usr/share/doc/pkg"), "opaque dir applied");
    assert!(exists_in(&img, "/usr/share/doc"));
    let stat = String::from_utf8_lossy(&debugfs(&img, "stat /bin/tool")).into_owned();
    assert!(stat.contains("Mode:  04755"), "setuid kept:\n{stat}");
    let link = String::from_utf8_lossy(&debugfs(&img, "stat /bin/alias")).into_owned();
    assert!(link.contains("Fast link dest: \"tool\""), "{link}");
    assert_eq!(leftovers(out_dir.path(), &[&img]), Vec::<String>::new());

    // --size: exactly that many bytes; --headroom: at least that much free.
    let sized = out_dir.path().join("sized.ext4");
    s.ok(&[
        "mkfs",
        "-q",
        "--size",
        "64M",
        "-o",
        sized.to_str().unwrap(),
        l1.to_str().unwrap(),
    ]);
    assert_eq!(fs::metadata(&sized).unwrap().len(), 64 << 20);
    check_fsck(&sized);
    let roomy = out_dir.path().join("roomy.ext4");
    s.ok(&[
        "mkfs",
        "-q",
        "--headroom",
        "300M",
        "-o",
        roomy.to_str().unwrap(),
        l2.to_str().unwrap(),
    ]);
    check_fsck(&roomy);
    let free = String::from_utf8_lossy(&debugfs(&roomy, "stats")).into_owned();
    let free_blocks: u64 = free
        .lines()
        .find_map(|l| l.trim().strip_prefix("Free blocks:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no free blocks in debugfs stats:\n{free}"));
    assert!(
        free_blocks * 4096 >= 300 << 20,
        "headroom: {free_blocks} free blocks"
    );
    // The image is sparse.
    assert!(fs::metadata(&roomy).unwrap().blocks() * 512 < 64 << 20);
}

#[test]
fn mkfs_errors_leave_nothing_behind() {
    let work = tempdir();
    let (l1, _l2) = two_layers(work.path());
    let out_dir = tempdir();
    let img = out_dir.path().join("out.ext4");
    let s = Skiff::new();

    // A layer file that does not exist.
    let missing = work.path().join("no-such-layer.tar.gz");
    s.run(&[
        "mkfs",
        "-o",
        img.to_str().unwrap(),
        l1.to_str().unwrap(),
        missing.to_str().unwrap(),
    ])
    .assert_clean_error(&["no-such-layer.tar.gz"]);
    assert_eq!(leftovers(out_dir.path(), &[]), Vec::<String>::new());

    // A corrupt layer: garbage, and a gzip stream cut short.
    let garbage = work.path().join("garbage.tar");
    fs::write(&garbage, b"certainly not a tar archive\n".repeat(100)).unwrap();
    s.run(&[
        "mkfs",
        "-o",
        img.to_str().unwrap(),
        l1.to_str().unwrap(),
        garbage.to_str().unwrap(),
    ])
    .assert_clean_error(&["layer 1", "not a tar"]);
    assert_eq!(leftovers(out_dir.path(), &[]), Vec::<String>::new());
    let cut = work.path().join("cut.tar.gz");
    let bytes = fs::read(&l1).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    s.run(&["mkfs", "-o", img.to_str().unwrap(), cut.to_str().unwrap()])
        .assert_clean_error(&["layer 0"]);
    assert_eq!(leftovers(out_dir.path(), &[]), Vec::<String>::new());

    // --size too small for the content.
    s.run(&[
        "mkfs",
        "--size",
        "1M",
        "-o",
        img.to_str().unwrap(),
        l1.to_str().unwrap(),
    ])
    .assert_clean_error(&["needs"]);
    assert_eq!(leftovers(out_dir.path(), &[]), Vec::<String>::new());

    // A failed build does not touch an existing output file.
    fs::write(&img, b"previous contents").unwrap();
    s.run(&[
        "mkfs",
        "-o",
        img.to_str().unwrap(),
        garbage.to_str().unwrap(),
    ])
    .assert_clean_error(&["not a tar"]);
    assert_eq!(fs::read(&img).unwrap(), b"previous contents");
    assert_eq!(leftovers(out_dir.path(), &[&img]), Vec::<String>::new());

    // An output directory that does not exist.
    let nowhere = out_dir.path().join("missing-dir/out.ext4");
    s.run(&[
        "mkfs",
        "-o",
        nowhere.to_str().unwrap(),
        l1.to_str().unwrap(),
    ])
    .assert_clean_error(&["missing-dir"]);
}

/// Pushes an OCI image made of `layers` (files made by GNU tar: gzip or zstd)
/// to `<registry>/<repo>:latest` with skopeo; returns the reference.
fn push_tar_image(reg: &Registry, repo: &str, layers: &[PathBuf]) -> String {
    let layout = tempdir();
    let blobs = layout.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let hex = sha256_hex(data);
        fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let data = fs::read(l).unwrap();
        let (media, plain) = if data.starts_with(&[0x1f, 0x8b]) {
            let out = run_tool(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("gzip -dc {} | sha256sum", l.display())),
            );
            ("application/vnd.oci.image.layer.v1.tar+gzip", out)
        } else {
            let out = run_tool(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("zstd -dc {} | sha256sum", l.display())),
            );
            ("application/vnd.oci.image.layer.v1.tar+zstd", out)
        };
        let (digest, size) = put(&data);
        descs.push(serde_json::json!({"mediaType": media, "digest": digest, "size": size}));
        diff_ids.push(format!(
            "sha256:{}",
            plain.split_whitespace().next().unwrap()
        ));
    }
    let arch = host_platform().split('/').nth(1).unwrap();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/tool"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cdigest, csize) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": descs,
    });
    let (mdigest, msize) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    fs::write(
        layout.path().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let dest = format!("{}/{repo}:latest", reg.host());
    skopeo_copy(
        &format!("oci:{}:latest", layout.path().display()),
        &format!("docker://{dest}"),
        None,
    );
    dest
}

#[test]
fn image_mkfs_from_a_pulled_image_and_the_cached_base_filesystem() {
    let work = tempdir();
    let (l1, l2) = two_layers(work.path());
    let reg = Registry::start(RegistryOpts::default());
    let reference = push_tar_image(&reg, "test/layers", &[l1, l2]);
    let s = Skiff::new();
    let digest = s.pull_ok(&reference);
    let hex = digest.strip_prefix("sha256:").unwrap();

    // -o: a file of our own.
    let out_dir = tempdir();
    let img = out_dir.path().join("image.ext4");
    s.ok(&["image", "mkfs", &reference, "-o", img.to_str().unwrap()]);
    check_fsck(&img);
    assert_eq!(debugfs_cat(&img, "/etc/hello"), b"hello from layer 2\n");
    assert_eq!(debugfs_cat(&img, "/bin/tool"), pseudo_random_bytes(300_000));
    assert!(!exists_in(&img, "/etc/gone"));
    assert!(!exists_in(&img, "/usr/share/doc/pkg"));

    // No -o: the store's cached base filesystem, built once.
    let first = s.ok(&["image", "mkfs", &reference]);
    let cached = PathBuf::from(first.last_line());
    assert_eq!(cached, s.root().join("rootfs").join(format!("{hex}.ext4")));
    check_fsck(&cached);
    assert_eq!(debugfs_cat(&cached, "/etc/hello"), b"hello from layer 2\n");
    let md = fs::metadata(&cached).unwrap();
    assert_eq!(
        md.permissions().mode() & 0o777,
        0o444,
        "read-only once built"
    );
    let (mtime, ino) = (md.modified().unwrap(), md.ino());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = s.ok(&["image", "mkfs", &reference]);
    assert_eq!(
        again.last_line(),
        first.last_line(),
        "same path the second time"
    );
    let md2 = fs::metadata(&cached).unwrap();
    assert_eq!(
        (md2.modified().unwrap(), md2.ino()),
        (mtime, ino),
        "not rebuilt"
    );
    // By digest, too.
    let by_digest = s.ok(&[
        "image",
        "mkfs",
        &format!("{}/test/layers@{digest}", reg.host()),
    ]);
    assert_eq!(by_digest.last_line(), first.last_line());
    assert_eq!(
        leftovers(&s.root().join("rootfs"), &[&cached]),
        Vec::<String>::new()
    );

    // Errors: an image that is not in the store; --size too small.
    s.run(&["image", "mkfs", "no/such-image:latest"])
        .assert_clean_error(&["no/such-image"]);
    let small = out_dir.path().join("small.ext4");
    s.run(&[
        "image",
        "mkfs",
        &reference,
        "--size",
        "1M",
        "-o",
        small.to_str().unwrap(),
    ])
    .assert_clean_error(&["needs"]);
    assert!(!small.exists());
    assert_eq!(leftovers(out_dir.path(), &[&img]), Vec::<String>::new());
}

/// The harness's fixture image (made with Debian's umoci 0.4.7, whose layers
/// stop right after the last file's data: no padding, no end-of-archive
/// blocks, which Go's archive/tar and so docker/containerd accept).
#[test]
fn image_mkfs_of_the_umoci_fixture_image() {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let s = Skiff::new();
    s.pull_ok(&reference);
    let out_dir = tempdir();
    let img = out_dir.path().join("busybox.ext4");
    s.ok(&["image", "mkfs", &reference, "-o", img.to_str().unwrap()]);
    check_fsck(&img);
    assert_eq!(
        debugfs_cat(&img, "/etc/hello.txt"),
        b"hello from skiff tests\n"
    );
    assert_eq!(
        debugfs_cat(&img, "/data/small.txt"),
        "small\n".repeat(100).as_bytes()
    );
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    assert_eq!(
        debugfs_cat(&img, "/bin/busybox"),
        fs::read(busybox).unwrap()
    );
}
