//! VM test support: a busybox image with users and groups (and one without
//! any /etc/passwd), the guest kernel installed once per machine, and
//! skiff-init from scripts/build-init.sh. Nothing skips: a missing piece fails
//! with what to run.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{run_tool, Registry, Skiff};

/// busybox applets the tests use, as symlinks in /bin.
const APPLETS: &[&str] = &[
    // The network tests' servers and clients.
    "httpd",
    "wget",
    "nc",
    "ip",
    "nslookup",
    "mkdir",
    "timeout",
    "df",
    "ln",
    "chown",
    "sh",
    "echo",
    "cat",
    "id",
    "pwd",
    "sleep",
    "kill",
    "stty",
    "head",
    "tee",
    "sha256sum",
    "nproc",
    "ls",
    "true",
    "false",
    "env",
    "wc",
    "hostname",
    "tty",
    "ps",
    "uname",
    "mount",
    "test",
    "[",
    "grep",
    "dd",
    "printf",
    "seq",
    "touch",
    "chmod",
    "cp",
    "readlink",
    "rm",
];

pub struct VmFixtures {
    pub layout: PathBuf,
}

/// OCI layout with three images: `users` (busybox, applet links, /etc/passwd
/// and /etc/group with a user in supplementary groups), `exposed` (`users`
/// with EXPOSE 80/tcp 53/udp) and `nopasswd` (busybox and links only: no /etc
/// at all).
pub fn vm_fixtures() -> &'static VmFixtures {
    static F: OnceLock<VmFixtures> = OnceLock::new();
    F.get_or_init(build)
}

fn build() -> VmFixtures {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static (/bin/busybox) is not installed: run scripts/setup.sh");
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("skiff-vm-fixtures-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let bin = base.join("src/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(busybox, bin.join("busybox")).unwrap();
    for a in APPLETS {
        symlink("busybox", bin.join(a)).unwrap();
    }
    let tmp = base.join("src-tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let etc = base.join("src-etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        etc.join("group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app,nobody\nwheel:x:10:app\n",
    )
    .unwrap();
    let layout = base.join("layout");
    let img = |tag: &str| format!("{}:{tag}", layout.display());
    let umoci = |args: &[&str]| {
        run_tool(Command::new("umoci").args(args));
    };
    let s = |p: &Path| p.display().to_string();
    umoci(&["init", "--layout", &s(&layout)]);
    umoci(&["new", "--image", &img("nopasswd")]);
    umoci(&["insert", "--image", &img("nopasswd"), &s(&bin), "/bin"]);
    umoci(&["insert", "--image", &img("nopasswd"), &s(&tmp), "/tmp"]);
    umoci(&[
        "config",
        "--image",
        &img("nopasswd"),
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    umoci(&[
        "insert",
        "--image",
        &img("nopasswd"),
        "--tag",
        "users",
        &s(&etc),
        "/etc",
    ]);
    // `exposed`: `users` that EXPOSEs 80/tcp and 53/udp (for -P).
    umoci(&[
        "config",
        "--image",
        &img("users"),
        "--tag",
        "exposed",
        "--config.exposedports",
        "80/tcp",
        "--config.exposedports",
        "53/udp",
    ]);
    VmFixtures { layout }
}

impl Registry {
    /// Pushes an image of the VM fixture layout with skopeo.
    pub fn push_vm_fixture(&self, fixture_tag: &str, repo: &str) -> String {
        let f = vm_fixtures();
        let dest = format!("{}/{repo}:latest", self.host());
        run_tool(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{fixture_tag}", f.layout.display()),
            &format!("docker://{dest}"),
        ]));
        dest
    }
}

/// The workspace's target directory (this test binary lives in target/debug/deps).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(".."))
}

/// target/skiff-init, built by scripts/build-init.sh.
pub fn init_binary() -> PathBuf {
    let p = target_dir().join("skiff-init");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-init.sh (scripts/test.sh does) before the VM tests",
        p.display()
    );
    p
}

/// The guest kernel, installed once per target directory into
/// target/tmp/skiff-test-kernels with `skiff system kernel install` (apt-get
/// download), under the lock skiff-sandbox's tests take for the same directory,
/// so that the whole suite downloads it once.
pub fn kernel_dir() -> PathBuf {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        let kernels = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skiff-test-kernels");
        fs::create_dir_all(&kernels).unwrap();
        let lock = fs::File::create(kernels.with_extension("lock")).unwrap();
        rustix_flock(&lock);
        if !kernels.join("current").exists() {
            let root = super::tempdir();
            let out = Command::new(super::SKIFF)
                .arg("--root")
                .arg(root.path())
                .args(["system", "kernel", "install"])
                .env("SKIFF_KERNEL_DIR", &kernels)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "skiff system kernel install failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        kernels
    })
    .clone()
}

fn rustix_flock(f: &fs::File) {
    rustix::fs::flock(f, rustix::fs::FlockOperation::LockExclusive).expect("flock");
}

/// A registry with the `fixture` image (as test/vm), and a skiff env for
/// VMs that has pulled it: what most VM tests start from.
pub fn pulled(fixture: &str) -> (super::Registry, Skiff, String) {
    let reg = super::Registry::start(super::RegistryOpts::default());
    let image = reg.push_vm_fixture(fixture, "test/vm");
    let s = Skiff::for_vms();
    s.ok(&["pull", "-q", &image]);
    (reg, s, image)
}

impl Skiff {
    /// A skiff environment that can boot VMs: the shared kernel and the built init.
    pub fn for_vms() -> Skiff {
        Skiff::new()
            // No bridge or rule on the test host: the network tests run in
            // namespaces of their own and unset this.
            .with_env("SKIFF_NETWORK", "none")
            .with_env("SKIFF_KERNEL_DIR", kernel_dir())
            .with_env("SKIFF_INIT", init_binary())
    }
}

/// QEMU processes whose command line mentions `needle` (a store root or
/// container id): none may outlive a run.
pub fn qemu_processes_with(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// A static program for the guest (the image's busybox lacks it), built
/// once per test binary from C with the host's gcc and static libc.
pub fn static_c_tool(name: &str, source: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skiff-c-tools");
    fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    // Rebuilt when the source changed (several test binaries share it).
    if fs::read_to_string(&src).ok().as_deref() != Some(source) || !bin.exists() {
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        let tmp_src = dir.join(format!("{name}.{}.c", std::process::id()));
        fs::write(&tmp_src, source).unwrap();
        run_tool(
            Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&tmp)
                .arg(&tmp_src),
        );
        fs::rename(&tmp, &bin).unwrap();
        fs::rename(&tmp_src, &src).unwrap();
    }
    bin
}

/// `skiff run --rm ARGS IMAGE true` is refused before any boot: exit 125
/// and a one-line error that says `msg`.
pub fn assert_refused(s: &Skiff, image: &str, args: &[&str], msg: &str) {
    let mut a = vec!["run", "--rm"];
    a.extend(args);
    a.extend([image, "true"]);
    let out = s.run(&a);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    out.assert_clean_error(&[msg]);
}
