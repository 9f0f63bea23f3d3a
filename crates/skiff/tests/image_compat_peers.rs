//! Slow suite: archives written by `skiff image save` are read by the real
//! `docker load` and `podman load`, and theirs by `skiff image load`.
//! Run with `SKIFF_SLOW=1 ./scripts/test.sh` (installs docker.io and podman).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn skiff(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
    c.arg("--root").arg(root);
    c
}

/// A two-layer busybox image in skiff's store, named `NAME`; returns its image ID.
fn seed_image(dir: &Path, root: &Path, name: &str) -> String {
    let layout = dir.join("oci");
    sh(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    let img = format!("{}:latest", layout.display());
    sh(Command::new("umoci").args(["new", "--image", &img]));
    sh(Command::new("umoci").args(["insert", "--image", &img, "/bin/busybox", "/bin/busybox"]));
    std::fs::write(dir.join("motd"), "compat\n").unwrap();
    sh(Command::new("umoci")
        .args(["insert", "--image", &img])
        .arg(dir.join("motd"))
        .arg("/etc/motd"));
    sh(Command::new("umoci").args(["config", "--image", &img, "--config.cmd", "/bin/sh"]));
    let archive = dir.join("seed.tar");
    sh(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{img}"))
        .arg(format!("oci-archive:{}:{name}", archive.display())));
    sh(skiff(root).args(["image", "load", "-i"]).arg(&archive));
    let v: serde_json::Value =
        serde_json::from_str(&sh(skiff(root).args(["image", "inspect", name]))).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

struct Dockerd {
    child: std::process::Child,
    sock: String,
}

impl Dockerd {
    fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let sock = format!("unix://{}/docker.sock", dir.display());
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args(["-H", &sock, "--iptables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("dockerd (apt-get install docker.io)");
        let d = Self { child, sock };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d
            .docker()
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: see {}",
                dir.join("dockerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    /// Debian's client; a newer one may sit earlier on PATH.
    fn docker(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.args(["-H", &self.sock]);
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "slow: needs docker.io (SKIFF_SLOW=1 ./scripts/test.sh)"]
fn docker_loads_our_archives_and_we_load_docker_save() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let name = "localhost/compat/busybox:latest";
    let id = seed_image(dir.path(), &root, name);
    let d = Dockerd::start(&dir.path().join("docker"));
    for format in ["docker-archive", "oci-archive"] {
        let tar = dir.path().join(format!("{format}.tar"));
        sh(skiff(&root)
            .args(["image", "save", name, "--format", format, "-o"])
            .arg(&tar));
        if format == "docker-archive" {
            // docker 20.10 reads only docker-archive.
            sh(d.docker().arg("load").arg("-i").arg(&tar));
            let got = sh(d
                .docker()
                .args(["image", "inspect", "--format", "{{.Id}}", name]));
            assert_eq!(got, id, "docker sees another image ID");
        }
    }
    let saved = dir.path().join("docker-save.tar");
    sh(d.docker().args(["save", "-o"]).arg(&saved).arg(name));
    let root2 = dir.path().join("store2");
    let out = sh(skiff(&root2).args(["image", "load", "-i"]).arg(&saved));
    assert!(out.contains(name), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&sh(skiff(&root2).args(["image", "inspect", name]))).unwrap();
    assert_eq!(v["id"], id.as_str());
}

#[test]
#[ignore = "slow: needs podman (SKIFF_SLOW=1 ./scripts/test.sh)"]
fn podman_loads_our_archives_and_we_load_podman_save() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let name = "localhost/compat/busybox:latest";
    let id = seed_image(dir.path(), &root, name);
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(dir.path().join("podman"))
            .arg("--runroot")
            .arg(dir.path().join("podrun"));
        c
    };
    for format in ["docker-archive", "oci-archive"] {
        let tar = dir.path().join(format!("{format}.tar"));
        sh(skiff(&root)
            .args(["image", "save", name, "--format", format, "-o"])
            .arg(&tar));
        sh(podman().args(["load", "-q", "-i"]).arg(&tar));
        let got = sh(podman().args(["image", "inspect", "--format", "{{.Id}}", name]));
        assert_eq!(
            format!("sha256:{got}"),
            id,
            "podman sees another image ID ({format})"
        );
        sh(podman().args(["rmi", "-f", name]));
    }
    sh(podman()
        .args(["load", "-q", "-i"])
        .arg(dir.path().join("docker-archive.tar")));
    for format in ["docker-archive", "oci-archive"] {
        let tar = dir.path().join(format!("podman-{format}.tar"));
        sh(podman()
            .args(["save", "--format", format, "-o"])
            .arg(&tar)
            .arg(name));
        let root2 = dir.path().join(format!("store-{format}"));
        sh(skiff(&root2).args(["image", "load", "-i"]).arg(&tar));
        let v: serde_json::Value =
            serde_json::from_str(&sh(skiff(&root2).args(["image", "inspect", name]))).unwrap();
        // podman may rewrite the config when it converts formats: compare with
        // what its archive says, as read by skopeo.
        let raw: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("{format}:{}", tar.display()))))
        .unwrap();
        assert_eq!(v["id"], raw["config"]["digest"], "{format}");
        let diff_ids = v["config"]["rootfs"]["diff_ids"].as_array().map(Vec::len);
        assert_eq!(diff_ids, Some(2), "{format}: {v}");
    }
}
