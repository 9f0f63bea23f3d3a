//! The container's filesystems beyond its image, against real QEMU: host
//! directories through virtio-fs (real virtiofsd; both ways, ownership,
//! read-only enforced on the host side, no way out of the shared directory),
//! a read-only root, `--tmpfs` and `--mount type=tmpfs` (sizes and options as
//! the guest's kernel reports them), and the flags refused before any boot.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::vm::qemu_processes_with;
use common::{wait_until, Registry, RegistryOpts, Skiff};

fn setup() -> (Registry, Skiff, String) {
    common::vm::pulled("users")
}

#[test]
fn a_read_only_root_with_tmpfs_mounts() {
    let (_reg, s, image) = setup();
    let script = "touch /x 2>&1; echo rc=$?; touch /tmp/ok && echo tmp-ok; \
                  touch /data/ok && echo data-ok; df -k /tmp /data; grep ' tmpfs ' /proc/mounts";
    let out = s.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp:size=32m,mode=755",
        // Its target does not exist in the image: made before the root
        // turns read-only.
        "--mount",
        "type=tmpfs,dst=/data,tmpfs-size=16m",
        &image,
        "sh",
        "-c",
        script,
    ]);
    let o = &out.stdout;
    assert!(
        o.contains("touch: /x: Read-only file system\nrc=1\n"),
        "{o}"
    );
    assert!(o.contains("tmp-ok\ndata-ok\n"), "{o}");
    let sizes: Vec<(&str, &str)> = o
        .lines()
        .filter(|l| l.starts_with("tmpfs "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // df's lines (not /proc/mounts'): a use% column.
            (f.len() == 6 && f[4].ends_with('%')).then(|| (f[5], f[1]))
        })
        .collect();
    assert_eq!(sizes, [("/tmp", "32768"), ("/data", "16384")], "{o}");
    // docker's defaults for --tmpfs (noexec, nosuid, nodev) and the mode.
    let tmp = o
        .lines()
        .find(|l| l.starts_with("tmpfs /tmp "))
        .unwrap_or_default();
    for want in ["nosuid", "nodev", "noexec", "mode=755"] {
        assert!(tmp.contains(want), "{want} in {tmp}");
    }
    let data = o
        .lines()
        .find(|l| l.starts_with("tmpfs /data "))
        .unwrap_or_default();
    assert!(!data.contains("noexec"), "--mount keeps exec: {data}");
}

#[test]
fn host_directories_both_ways_and_confined() {
    let (_reg, s, image) = setup();
    let top = tempfile::tempdir().unwrap();
    // A secret beside the shared directory: the guest must never see it.
    fs::write(top.path().join("secret.txt"), "host-secret\n").unwrap();
    let share = top.path().join("share");
    fs::create_dir(&share).unwrap();
    let blob = common::pseudo_random_bytes(3 << 20);
    fs::write(share.join("from-host.bin"), &blob).unwrap();
    // An absolute symlink made on the host resolves in the guest's tree.
    std::os::unix::fs::symlink(top.path().join("secret.txt"), share.join("abs-link")).unwrap();
    let vol = format!("{}:/data", share.display());
    let out = s.ok(&[
        "run", "-d", "--name", "fs", "-v", &vol, &image, "sleep", "600",
    ]);
    let id = out.stdout.trim().to_owned();

    // Host → guest, bytes compared; guest → host, bytes and owner compared.
    let out = s.ok(&["exec", "fs", "sha256sum", "/data/from-host.bin"]);
    assert_eq!(
        out.stdout.split_whitespace().next(),
        Some(common::sha256_hex(&blob).as_str())
    );
    s.ok(&[
        "exec",
        "fs",
        "sh",
        "-c",
        "seq 1 100000 > /data/from-guest.txt && chown 1000:1000 /data/from-guest.txt",
    ]);
    let written = fs::read_to_string(share.join("from-guest.txt")).unwrap();
    assert_eq!(written.lines().count(), 100000);
    assert_eq!(written.lines().last(), Some("100000"));
    let meta = fs::metadata(share.join("from-guest.txt")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1000, 1000),
        "the owner the container gave"
    );
    // A host change is seen by the running container at once.
    fs::write(share.join("late.txt"), "late\n").unwrap();
    assert_eq!(
        s.ok(&["exec", "fs", "cat", "/data/late.txt"]).stdout,
        "late\n"
    );

    // No way out: .. is the container's root, links resolve in the guest.
    let out = s.run(&["exec", "fs", "cat", "/data/../secret.txt"]);
    assert!(
        !out.success() && !out.stdout.contains("host-secret"),
        "{out:?}"
    );
    let out = s.run(&["exec", "fs", "cat", "/data/abs-link"]);
    assert!(!out.stdout.contains("host-secret"), "{out:?}");
    s.ok(&["exec", "fs", "ln", "-s", "../secret.txt", "/data/up"]);
    let out = s.run(&["exec", "fs", "cat", "/data/up"]);
    assert!(!out.stdout.contains("host-secret"), "{out:?}");
    assert_eq!(
        fs::read_to_string(top.path().join("secret.txt")).unwrap(),
        "host-secret\n"
    );
    s.ok(&["rm", "-f", "fs"]);
    assert!(qemu_processes_with(&id).is_empty());
    wait_until(Duration::from_secs(5), "virtiofsd to go", || {
        common::run_tool(std::process::Command::new("sh").args([
            "-c",
            &format!("pgrep -f '[s]ource={}' || true", share.display()),
        ]))
        .trim()
        .is_empty()
    });

    // :ro holds on the host side: a guest that remounts read-write (it may:
    // CAP_SYS_ADMIN) still cannot write.
    let vol = format!("{}:/data:ro", share.display());
    let out = s.ok(&[
        "run", "--rm", "--cap-add", "SYS_ADMIN", "-v", &vol, &image, "sh", "-c",
        "echo x > /data/a; mount -o remount,rw /data && echo remounted; echo y > /data/b; echo done",
    ]);
    assert!(out.stdout.contains("remounted\ndone"), "{out:?}");
    assert_eq!(
        out.stderr.matches("Read-only file system").count(),
        2,
        "{out:?}"
    );
    assert!(!share.join("a").exists() && !share.join("b").exists());
}

#[test]
fn bad_mounts_and_too_little_memory_fail_before_boot() {
    let s = Skiff::for_vms();
    let reg = Registry::start(RegistryOpts::default());
    let image = reg.push_vm_fixture("users", "test/vm");
    s.ok(&["pull", "-q", &image]);
    for (args, msg) in [
        (vec!["--tmpfs", "tmp"], "invalid --tmpfs \"tmp\""),
        (
            vec!["--tmpfs", "/tmp:size=lots"],
            "invalid tmpfs option \"size=lots\"",
        ),
        (
            vec!["--mount", "type=tmpfs"],
            "dst=/absolute/path is required",
        ),
        (
            vec!["-m", "10k"],
            "--memory is too little: a container's VM needs at least 96M",
        ),
    ] {
        common::vm::assert_refused(&s, &image, &args, msg);
    }
    assert_eq!(s.ok(&["ps", "-aq"]).stdout, "", "nothing was created");
}

/// Named volumes: made on first use with the image's files copied in
/// (owners and modes kept), kept when their container goes and seen by the
/// next, one running container at a time, `nocopy`, `:ro` on the disk, and
/// `volume ls/inspect/rm/prune` with their refusals.
#[test]
fn named_volumes_persist_copy_up_and_are_guarded() {
    let (_reg, s, image) = setup();
    // First use: /etc of the image (passwd, group, the files skiff wrote)
    // is copied into the new volume, which the container then writes to.
    let out = s.ok(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/etc",
        &image,
        "sh",
        "-c",
        "ls -ln /etc/passwd; id app; echo kept > /etc/note; chown 1000:50 /etc/note; \
         dd if=/dev/urandom of=/etc/blob bs=1M count=8 2>/dev/null; sha256sum /etc/blob",
    ]);
    let o = &out.stdout;
    assert!(o.contains("uid=1000(app)"), "passwd came along: {o}");
    let blob_sum = o
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // The next container, elsewhere: everything is there.
    let out = s.ok(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/data:ro",
        &image,
        "sh",
        "-c",
        "cat /data/note; ls -ln /data/note; sha256sum /data/blob; head -1 /data/passwd; \
         touch /data/x 2>&1; true",
    ]);
    let o = &out.stdout;
    assert!(o.starts_with("kept\n"), "{o}");
    assert!(
        o.contains(" 1000 ") && o.contains(" 50 "),
        "owner kept: {o}"
    );
    assert!(o.contains(&blob_sum), "8 MiB read back: {o}");
    assert!(o.contains("root:x:0:0:"), "{o}");
    assert!(o.contains("Read-only file system"), ":ro: {o}");
    // nocopy: an empty volume stays empty.
    let out = s.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=bare,dst=/etc,volume-nocopy",
        &image,
        "ls",
        "-A",
        "/etc",
    ]);
    assert_eq!(out.stdout, "lost+found\n");

    // The filesystem is clean after use (a clean power-off unmounted it).
    let inspect = s.ok(&["volume", "inspect", "etcvol"]).json();
    let disk = inspect[0]["Mountpoint"].as_str().unwrap().to_owned();
    let fsck = std::process::Command::new("e2fsck")
        .args(["-fn", &disk])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    assert_eq!(inspect[0]["Driver"], "local");

    // One running container at a time; a named volume stays while a
    // container names it.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "etcvol:/v",
        &image,
        "sleep",
        "1000",
    ]);
    let out = s.run(&["run", "--rm", "-v", "etcvol:/v", &image, "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    out.assert_clean_error(&["volume etcvol is mounted by running container"]);
    let ls = s.ok(&["volume", "ls"]).stdout;
    assert!(ls.contains("etcvol") && ls.contains("bare"), "{ls}");
    let out = s.run(&["volume", "rm", "etcvol"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    out.assert_clean_error(&["volume etcvol is in use by container"]);
    // prune takes only what no container names.
    let pruned = s.ok(&["volume", "prune", "-f"]).stdout;
    assert!(
        pruned.contains("bare") && !pruned.contains("etcvol"),
        "{pruned}"
    );
    s.ok(&["rm", "-f", "holder"]);
    s.ok(&["volume", "rm", "etcvol"]);
    assert_eq!(s.ok(&["volume", "ls", "-q"]).stdout, "");

    // Names that are none, one line each, nothing made.
    for (args, msg) in [
        (vec!["-v", "a:/x"], "neither a host directory"),
        (
            vec!["--mount", "type=volume,src=ok"],
            "type=volume needs src=NAME and dst=",
        ),
        (
            vec!["-v", "two:/x", "-v", "two:/y"],
            "volume two is mounted twice",
        ),
    ] {
        common::vm::assert_refused(&s, &image, &args, msg);
    }
    assert_eq!(s.ok(&["volume", "ls", "-q"]).stdout, "");
    assert!(qemu_processes_with(&s.root().display().to_string()).is_empty());
}
