//! One real boot of skiff-init as PID 1 under QEMU (TCG), the way skiff
//! boots it: skiff-sandbox's initramfs and QEMU command line, and the guest
//! kernel the suite installs (the sandbox tests' shared one). Hello, network,
//! SetupContainer onto a busybox ext4 disk, a process that reads back what
//! skiff-init wrote (the only test that reads /etc/hosts and /etc/resolv.conf
//! inside a guest); then, in the same boot, what `skiff top`, `skiff stats`
//! and `skiff cp` ask of the guest (ListProcesses, Stats, StatPath,
//! ReadArchive, WriteArchive into "/"); shutdown, and the disk read back on
//! the host.
//! Nothing skips: a missing kernel is installed, a missing skiff-init fails.

#[path = "../../skiff-sandbox/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skiff_proto::v1::{
    ArchiveChunk, ContainerSetup, Empty, HostEntry, Interface, NetworkConfig, PathRequest,
    ProcessRef, ProcessSpec, StdinChunk,
};
use skiff_sandbox::{initramfs, Accel, Disk, DiskFormat, QemuBinary, RunningVm, VmConfig};
use tokio_stream::wrappers::ReceiverStream;

/// Runs a host tool; returns its stdout, failing with its stderr.
fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ext4 root: busybox and its applet links and an /etc/passwd, nothing
/// else (no /proc, /sys or /dev: skiff-init makes what it needs).
fn busybox_rootfs(dir: &Path) -> std::path::PathBuf {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static (/bin/busybox) is not installed: run scripts/setup.sh");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for app in ["sh", "cat", "ls", "hostname", "date", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    // ListProcesses names users from the container's passwd, not the initramfs's.
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let image = dir.join("root.ext4");
    tool(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-d"])
            .arg(&root)
            .arg(&image)
            .arg("64M"),
    );
    image
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `--- name` lines split the output into named sections.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name = None;
    for line in text.split_inclusive('\n') {
        if let Some(n) = line.strip_prefix("--- ") {
            name = Some(n.trim_end().to_owned());
            out.insert(n.trim_end().to_owned(), String::new());
        } else {
            let n = name
                .as_ref()
                .unwrap_or_else(|| panic!("before any section: {text}"));
            out.get_mut(n).unwrap().push_str(line);
        }
    }
    out
}

const HOSTS: &str = "127.0.0.1\tlocalhost smoke\n\
                     ::1\tlocalhost ip6-localhost ip6-loopback\n\
                     10.0.2.2\thost.skiff.internal gw\n";
const RESOLV: &str = "nameserver 10.0.2.3\n\
                      nameserver 1.1.1.1\n\
                      search a.example b.example\n\
                      options ndots:2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_sets_up_the_container_and_powers_off() {
    let kernel = common::kernel();
    let init = common::skiff_init();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rootfs = busybox_rootfs(d);
    let cfg = VmConfig {
        qemu: QemuBinary::find().expect("QEMU"),
        initramfs: initramfs::build(&d.join("cache"), &init, &kernel).unwrap(),
        kernel: kernel.clone(),
        accel: Accel::Tcg,
        cpus: 1,
        memory_mib: 256,
        disks: vec![Disk {
            path: rootfs.clone(),
            format: DiskFormat::Raw,
            readonly: false,
            serial: None,
        }],
        state_dir: d.join("state"),
        extra_cmdline: vec![],
        debug: true,
        boot_timeout: Duration::from_secs(120),
        nics: Vec::new(),
        shares: Vec::new(),
    };
    let booted_at = unix_now();
    let vm = RunningVm::boot(cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let hello = vm.hello().clone();
    assert_eq!(hello.kernel_release, kernel.release);
    assert!(hello.init_started_us > 0 && hello.agent_ready_us >= hello.init_started_us);

    let mut c = vm.agent();
    c.configure_network(NetworkConfig {
        interfaces: vec![Interface {
            name: "lo".into(),
            ..Default::default()
        }],
        routes: vec![],
    })
    .await
    .unwrap();
    c.setup_container(ContainerSetup {
        rootfs_device: "/dev/vda".into(),
        rootfs_fstype: "ext4".into(),
        hostname: "smoke".into(),
        hosts: vec![HostEntry {
            ip: "10.0.2.2".into(),
            names: vec!["host.skiff.internal".into(), "gw".into()],
        }],
        nameservers: vec!["10.0.2.3".into(), "1.1.1.1".into()],
        search: vec!["a.example".into(), "b.example".into()],
        dns_options: vec!["ndots:2".into()],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("SetupContainer: {e}"));

    let script = "echo '--- hostname'; hostname
echo '--- /etc/hostname'; cat /etc/hostname
echo '--- /etc/hosts'; cat /etc/hosts
echo '--- /etc/resolv.conf'; cat /etc/resolv.conf
echo '--- ls /'; ls /
echo '--- mounts'; cat /proc/mounts
echo '--- date'; date +%s
exit 5";
    c.create_process(ProcessSpec {
        id: "main".into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(StdinChunk {
        id: "main".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut out = c.stdio(ReceiverStream::new(rx)).await.unwrap().into_inner();
    c.start_process(ProcessRef { id: "main".into() })
        .await
        .unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = out.message().await.unwrap() {
        // Stdout and stderr both: an error message would land in a section.
        bytes.extend(chunk.data);
    }
    let status = c
        .wait(ProcessRef { id: "main".into() })
        .await
        .unwrap()
        .into_inner();
    let read_at = unix_now();

    // `skiff top`, `skiff stats`, `skiff cp`: an exec'd process, then the
    // guest seen through the new calls.
    c.create_process(ProcessSpec {
        id: "probe".into(),
        args: vec!["sleep".into(), "1000".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let probe = c
        .start_process(ProcessRef { id: "probe".into() })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let list = c.list_processes(Empty {}).await.unwrap().into_inner();
    let stats = c.stats(Empty {}).await.unwrap().into_inner();
    let hostname_stat = c
        .stat_path(PathRequest {
            path: "/etc/hostname".into(),
            follow_link: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut archive = Vec::new();
    let mut stream = c
        .read_archive(PathRequest {
            path: "/etc/hostname".into(),
            follow_link: false,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = stream.message().await.unwrap() {
        archive.extend(chunk.data);
    }
    let mut copied = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o640);
    h.set_mtime(1_700_000_000);
    copied
        .append_data(&mut h, "smoke-cp/copied.txt", &b"copied\n"[..])
        .unwrap();
    c.write_archive(tokio_stream::iter([ArchiveChunk {
        path: "/".into(),
        keep_owner: false,
        data: copied.into_inner().unwrap(),
    }]))
    .await
    .unwrap_or_else(|e| panic!("WriteArchive: {e}"));

    let pid = vm.pid();
    let console = vm.console_log();
    vm.shutdown(Duration::from_millis(100))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- console\n{}",
                std::fs::read_to_string(&console).unwrap_or_default()
            )
        });
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} left"
    );

    let text = String::from_utf8_lossy(&bytes).into_owned();
    println!("--- process output\n{text}");
    assert_eq!((status.exit_code, status.signal), (5, 0));
    let s = sections(&text);
    let names: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "date",
            "hostname",
            "ls /",
            "mounts"
        ],
        "{text}"
    );
    assert_eq!(s["hostname"], "smoke\n");
    assert_eq!(s["/etc/hostname"], "smoke\n");
    assert_eq!(s["/etc/hosts"], HOSTS);
    assert_eq!(s["/etc/resolv.conf"], RESOLV);
    // The image's two entries and what skiff-init made; the initramfs
    // (/init, its modules) is gone.
    assert_eq!(s["ls /"], "bin\ndev\netc\nlost+found\nproc\nsys\n");
    let mounts: Vec<(&str, &str, &str)> = s["mounts"]
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0], f[1], f[2])
        })
        .collect();
    // The container's root and the pseudo filesystems skiff-init mounted in
    // it, nothing of the initramfs.
    assert_eq!(
        mounts,
        [
            ("/dev/vda", "/", "ext4"),
            ("proc", "/proc", "proc"),
            ("sysfs", "/sys", "sysfs"),
            ("devtmpfs", "/dev", "devtmpfs"),
            ("devpts", "/dev/pts", "devpts"),
            ("tmpfs", "/dev/shm", "tmpfs"),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        ],
        "{}",
        s["mounts"]
    );
    // The RTC (microvm's rtc=on) gave the guest the host's time, not 1970.
    let guest_now: u64 = s["date"].trim().parse().unwrap();
    assert!(
        (booted_at - 60..=read_at + 60).contains(&guest_now),
        "guest clock {guest_now}, host {booted_at}..{read_at}"
    );

    // Only the exec'd sleep: not skiff-init (PID 1), no kernel threads, and
    // its user named from the container's /etc/passwd.
    assert_eq!(list.processes.len(), 1, "{list:#?}");
    let p = &list.processes[0];
    assert_eq!(
        (
            p.pid,
            p.ppid,
            p.uid,
            p.user.as_str(),
            p.state.as_str(),
            p.args.clone(),
            p.tty.as_str()
        ),
        (
            probe,
            1,
            0,
            "root",
            "S",
            vec!["sleep".to_owned(), "1000".into()],
            ""
        ),
        "{p:?}"
    );
    assert!(
        p.started_us > hello.agent_ready_us && p.started_us <= list.now_us,
        "{p:?}"
    );
    assert_eq!((stats.cpus, stats.processes), (1, 1), "{stats:?}");
    assert!(
        0 < stats.memory_available_bytes
            && stats.memory_available_bytes <= stats.memory_total_bytes
            && stats.memory_total_bytes <= 256 << 20,
        "{stats:?}"
    );
    assert!(stats.cpu_busy_us > 0, "{stats:?}");
    assert_eq!(
        (
            hostname_stat.name.as_str(),
            hostname_stat.size,
            hostname_stat.mode & 0o170000
        ),
        ("hostname", 6, 0o100000)
    );
    let mut entries = Vec::new();
    for e in tar::Archive::new(&archive[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = String::new();
        std::io::Read::read_to_string(&mut e, &mut data).unwrap();
        entries.push((e.path().unwrap().display().to_string(), data));
    }
    assert_eq!(entries, [("hostname".to_owned(), "smoke\n".to_owned())]);

    // Shutdown unmounted the disk cleanly, with what skiff-init wrote on it.
    let header = tool(Command::new("dumpe2fs").arg("-h").arg(&rootfs));
    assert!(
        header
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Filesystem", "state:", "clean"]),
        "{header}"
    );
    let cat = |p: &str| {
        tool(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("cat {p}"))
                .arg(&rootfs),
        )
    };
    assert_eq!(cat("/etc/hosts"), HOSTS);
    assert_eq!(cat("/etc/resolv.conf"), RESOLV);
    assert_eq!(cat("/etc/hostname"), "smoke\n");
    // WriteArchive into "/", parent made, owner root, mode and mtime kept.
    assert_eq!(cat("/smoke-cp/copied.txt"), "copied\n");
    let stat = tool(
        Command::new("debugfs")
            .arg("-R")
            .arg("stat /smoke-cp/copied.txt")
            .arg(&rootfs),
    );
    let words: Vec<&str> = stat.split_whitespace().collect();
    let after = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1];
    assert_eq!(
        (after("Mode:"), after("User:"), after("Group:")),
        ("0640", "0", "0"),
        "{stat}"
    );
    assert!(stat.contains("mtime: 0x6553f100"), "{stat}");
}
