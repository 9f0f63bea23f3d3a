//! The container's filesystems beyond its image, against real QEMU: a
//! read-only root, `--tmpfs` and `--mount type=tmpfs` (sizes and options as
//! the guest's kernel reports them), and the flags refused before any boot.

mod common;

use common::{Registry, RegistryOpts, Skiff};

fn setup() -> (Registry, Skiff, String) {
    let reg = Registry::start(RegistryOpts::default());
    let image = reg.push_vm_fixture("users", "test/vm");
    let s = Skiff::for_vms();
    s.ok(&["pull", "-q", &image]);
    (reg, s, image)
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
            vec!["--mount", "type=bind,src=/srv,dst=/srv"],
            "bind mounts and volumes are not supported yet",
        ),
        (
            vec!["-m", "10k"],
            "--memory is too little: a container's VM needs at least 96M",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args);
        a.extend([image.as_str(), "true"]);
        let out = s.run(&a);
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        assert!(out.stderr.contains(msg), "{msg}: {out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    }
    assert_eq!(s.ok(&["ps", "-aq"]).stdout, "", "nothing was created");
}
