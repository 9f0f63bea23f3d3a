//! `skiff run` against real QEMU booting the real Debian cloud kernel with
//! skiff-init (TCG here; KVM where it works). Each `skiff run` is a boot of a
//! few seconds under TCG, so assertions share runs and at most two VMs run at
//! once.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use common::vm::qemu_processes_with;
use common::{sha256_hex, Registry, RegistryOpts, Skiff};

/// At most two VMs at a time: TCG runs each on one host core.
struct VmSlots(Mutex<usize>, Condvar);
static SLOTS: VmSlots = VmSlots(Mutex::new(0), Condvar::new());
struct Slot;
fn slot() -> Slot {
    let mut n = SLOTS.0.lock().unwrap_or_else(|e| e.into_inner());
    while *n >= 2 {
        n = SLOTS.1.wait(n).unwrap_or_else(|e| e.into_inner());
    }
    *n += 1;
    Slot
}
impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        SLOTS.1.notify_one();
    }
}

fn setup(fixture: &str) -> (Registry, Skiff, String) {
    let reg = Registry::start(RegistryOpts::default());
    let image = reg.push_vm_fixture(fixture, "test/vm");
    let s = Skiff::for_vms();
    (reg, s, image)
}

#[test]
fn echo_resources_and_cleanup() {
    let (_reg, s, image) = setup("users");
    let _slot = slot();
    // Pulls on first use, builds the base filesystem, boots.
    let out = s.run(&[
        "--debug", "run", "--rm", "--cpus", "2", "--memory", "1G", &image, "sh", "-c",
        "echo hello; nproc; grep MemTotal /proc/meminfo; test -e /init && echo INIT-VISIBLE; ls /lib/modules 2>&1; hostname",
    ]);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert_eq!(lines[0], "hello", "{}", out.stdout);
    assert_eq!(lines[1], "2", "vCPUs: {}", out.stdout);
    let mem_kb: u64 = lines[2].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (900_000..=1_048_576).contains(&mem_kb),
        "MemTotal {mem_kb} kB for --memory 1G"
    );
    // Neither skiff-init's /init nor the initramfs's modules are in the container.
    assert_eq!(
        lines[3], "ls: /lib/modules: No such file or directory",
        "{}",
        out.stdout
    );
    let hostname = lines[4];
    assert!(
        hostname.len() == 12 && hostname.bytes().all(|b| b.is_ascii_hexdigit()),
        "hostname is the short id: {hostname:?}"
    );
    // --debug: one line with the time of each phase.
    let timings = out
        .stderr
        .lines()
        .find(|l| l.starts_with("skiff: timings: total "))
        .unwrap_or_else(|| panic!("no timings line with --debug:\n{}", out.stderr));
    for phase in [
        "vm boot ",
        "qemu connected ",
        "kernel→init ",
        "init→ready ",
        "setup+create ",
        "command→process start ",
        "process ran ",
        "exit→vm gone ",
    ] {
        let rest = timings
            .split_once(phase)
            .unwrap_or_else(|| panic!("no {phase:?} in {timings:?}"))
            .1;
        assert!(
            rest.starts_with(|c: char| c.is_ascii_digit()),
            "{phase:?} has no duration in {timings:?}"
        );
    }
    // --rm removed the container's directory; the base filesystem stays cached.
    assert_eq!(containers_left(&s), 0, "containers left behind");
    assert_eq!(
        std::fs::read_dir(s.root().join("rootfs")).unwrap().count(),
        1
    );
    assert!(qemu_processes_with(&s.root().display().to_string()).is_empty());

    let info = s.ok(&["system", "info", "--format", "json"]).json();
    let accel = info["accelerator"].as_str().unwrap_or_default().to_owned();
    assert!(accel == "kvm" || accel == "tcg", "{info}");
    assert!(!info["accelerator_reason"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert!(
        info["kernel"]
            .as_str()
            .unwrap_or_default()
            .contains("cloud-amd64"),
        "{info}"
    );
}

#[test]
fn env_workdir_user_groups_and_exit_code() {
    let (_reg, s, image) = setup("users");
    s.ok(&["pull", "-q", &image]);
    let _slot = slot();
    // -e wins over --env-file, as in docker.
    let env_file = s.root().join("env.list");
    std::fs::write(&env_file, "# comment\nB=from-file\n\nA=overridden-by-e\n").unwrap();
    let out = s.run(&[
        "run",
        "--rm",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "A=1",
        "-w",
        "/tmp/work",
        "-u",
        "app",
        "--entrypoint",
        "/bin/sh",
        "--hostname",
        "web-1",
        &image,
        "-c",
        "id; pwd; echo $A $B; hostname; cat /etc/hostname; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let (ids, groups) = lines[0].split_once(" groups=").expect("id output");
    assert_eq!(ids, "uid=1000(app) gid=1000(app)");
    let mut groups: Vec<&str> = groups.split(',').collect();
    groups.sort_unstable();
    assert_eq!(
        groups,
        ["10(wheel)", "1000(app)", "50(staff)"],
        "supplementary groups"
    );
    assert_eq!(&lines[1..], ["/tmp/work", "1 from-file", "web-1", "web-1"]);
    assert!(out.stderr.contains("to-stderr"), "stderr: {}", out.stderr);
    assert!(!out.stdout.contains("to-stderr"));
}

#[test]
fn stdin_and_10mb_streams_intact_then_sigkill_is_137() {
    let (_reg, s, image) = setup("users");
    s.ok(&["pull", "-q", &image]);
    let input = common::pseudo_random_bytes(10 << 20);
    let want = sha256_hex(&input);
    let _slot = slot();
    let mut child = s
        .command(&[
            "run",
            "--rm",
            "-i",
            &image,
            "sh",
            "-c",
            // The process is PID 1 of its namespace, which its own SIGKILL
            // does not end (as in docker): a child takes it, and the shell
            // reports that child's 128 + 9 (not exec'd: `; exit`).
            "cat > /tmp/f; cat /tmp/f; cat /tmp/f >&2; sh -c 'kill -9 $$'; exit $?",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
        // Dropping stdin is the EOF the container's cat waits for.
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut stdout = Vec::new();
    out.read_to_end(&mut stdout).unwrap();
    let stderr = err_reader.join().unwrap();
    writer.join().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(stdout.len(), 10 << 20, "stdout length");
    assert_eq!(sha256_hex(&stdout), want, "stdout differs from stdin");
    // stderr carries the same 10 MB after skiff's own (empty) output.
    assert!(stderr.len() >= 10 << 20, "stderr length {}", stderr.len());
    assert_eq!(
        sha256_hex(&stderr[..10 << 20]),
        want,
        "stderr differs from stdin"
    );
    assert_eq!(
        status.code(),
        Some(137),
        "{status:?}: {}",
        String::from_utf8_lossy(&stderr[10 << 20..])
    );
}

#[test]
fn numeric_user_without_passwd() {
    let (_reg, s, image) = setup("nopasswd");
    s.ok(&["pull", "-q", &image]);
    let _slot = slot();
    // Kept (no --rm), so its id can be read from the store. The image has no /etc at
    // all: skiff-init writes /etc/hostname itself.
    let out = s.run(&[
        "run",
        "-u",
        "1234:5678",
        &image,
        "sh",
        "-c",
        "id; hostname; cat /etc/hostname",
    ]);
    out.assert_success();
    let ids: Vec<String> = std::fs::read_dir(s.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let short = &ids[0][..12];
    assert_eq!(
        out.stdout,
        format!("uid=1234 gid=5678 groups=5678\n{short}\n{short}\n"),
        "{}",
        out.stderr
    );
}

/// A command that is missing or not executable: 127 and 126, as a shell (and docker)
/// report them, each with a one-line error naming the command; nothing left behind.
#[test]
fn missing_and_non_executable_commands_are_127_and_126() {
    let (_reg, s, image) = setup("users");
    s.ok(&["pull", "-q", &image]);
    let root = s.root().display().to_string();
    let _slot = slot();
    for (cmd, code) in [("/no/such/cmd", 127), ("/etc/passwd", 126)] {
        let out = s.run(&["run", "--rm", "-q", &image, cmd]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", out.stderr);
        out.assert_clean_error(&[cmd]);
        assert!(out.stdout.is_empty(), "{cmd}: {}", out.stdout);
    }
    assert!(qemu_processes_with(&root).is_empty());
    assert_eq!(containers_left(&s), 0);
}

/// A boot that never gets to skiff-init's agent (here a static busybox as PID 1):
/// exit 125, one line saying so, no QEMU and no container left.
#[test]
fn boot_error_leaves_no_qemu_behind() {
    let (_reg, s, image) = setup("users");
    s.ok(&["pull", "-q", &image]);
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static");
    s.set_env("SKIFF_INIT", busybox)
        .set_env("SKIFF_BOOT_TIMEOUT", "3");
    let root = s.root().display().to_string();
    let _slot = slot();
    let out = s.run(&["run", "--rm", "-q", &image, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", out.stderr);
    out.assert_clean_error(&["starting the VM", "did not answer within 3s"]);
    assert!(
        qemu_processes_with(&root).is_empty(),
        "QEMU left after a boot error"
    );
    assert_eq!(containers_left(&s), 0);
}

/// Entries of the store's containers/ directory (not hidden ones).
fn containers_left(s: &Skiff) -> usize {
    std::fs::read_dir(s.root().join("containers"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

/// Opens a pty pair; the slave is given to skiff as its controlling terminal.
fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap()
        .into();
    set_size(&master, rows, cols);
    (master, slave)
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws).unwrap();
}

/// Reads from the pty master until `needle` shows up (or panics after `timeout`).
fn expect(master: &mut std::fs::File, seen: &mut String, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on the terminal; saw:\n{seen}"
        );
        let mut fds = [rustix::event::PollFd::new(
            master,
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        if rustix::event::poll(&mut fds, Some(&t)).unwrap_or(0) == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => panic!("terminal closed before {needle:?}; saw:\n{seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

#[test]
fn interactive_tty_resize_and_ctrl_c() {
    let (_reg, s, image) = setup("users");
    s.ok(&["pull", "-q", &image]);
    let _slot = slot();
    let (master, slave) = open_pty(24, 80);
    let mut cmd = s.command(&["run", "--rm", "-it", &image, "sh"]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let mut term = std::fs::File::from(master);
    let mut seen = String::new();
    let boot = Duration::from_secs(90);
    // busybox ash's prompt: the shell runs and owns the terminal.
    expect(&mut term, &mut seen, "/ # ", boot);
    seen.clear();
    term.write_all(b"stty size; echo SIZE-$((1+1))\r").unwrap();
    expect(&mut term, &mut seen, "SIZE-2", Duration::from_secs(20));
    assert!(seen.contains("24 80"), "initial size not passed on: {seen}");
    // A resize of the host terminal reaches the container's terminal.
    set_size(&term.as_fd().try_clone_to_owned().unwrap(), 30, 100);
    std::thread::sleep(Duration::from_millis(300));
    seen.clear();
    term.write_all(b"stty size\r").unwrap();
    expect(&mut term, &mut seen, "30 100", Duration::from_secs(20));
    // Ctrl-C interrupts the container's foreground command, not skiff.
    term.write_all(b"sleep 100\r").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    term.write_all(b"\x03").unwrap();
    seen.clear();
    term.write_all(b"echo after-$((40+2))\r").unwrap();
    expect(&mut term, &mut seen, "after-42", Duration::from_secs(20));
    term.write_all(b"exit 5\r").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "skiff did not exit after `exit 5`"
        );
        // Keep the master drained so the guest's output never blocks.
        let mut fds = [rustix::event::PollFd::new(
            &term,
            rustix::event::PollFlags::IN,
        )];
        if rustix::event::poll(
            &mut fds,
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            }),
        )
        .unwrap_or(0)
            > 0
        {
            let mut b = [0u8; 4096];
            let _ = term.read(&mut b);
        }
    };
    assert_eq!(status.code(), Some(5), "{status:?}\n{seen}");
}

#[test]
fn interrupt_is_forwarded_and_kill_leaves_no_qemu() {
    let (_reg, s, image) = setup("users");
    s.ok(&["pull", "-q", &image]);
    let root = s.root().display().to_string();
    let _slot = slot();

    // SIGTERM to skiff (no tty) reaches the process, which decides the exit code.
    let run = s.spawn(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.2; done",
    ]);
    wait_for_ready(&run);
    send(&run, rustix::process::Signal::TERM);
    let out = run.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    assert_eq!(out.stdout, "ready\ngot-term\n");
    assert!(
        qemu_processes_with(&root).is_empty(),
        "QEMU left after SIGTERM"
    );

    // SIGINT reaches the process too; a process that ignores it is given up on at the
    // third Ctrl-C within 2 s: the VM is stopped, exit 130.
    let run = s.spawn(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "trap 'echo got-int' INT; echo ready; while true; do sleep 0.2; done",
    ]);
    wait_for_ready(&run);
    interrupt(&run);
    let out_path = run.stdout_path();
    common::wait_until(Duration::from_secs(30), "the trap to run", || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("got-int")
    });
    // Apart, as keys are pressed: signals sent back to back may arrive as one.
    for _ in 0..3 {
        interrupt(&run);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    out.assert_clean_error(&["after three interrupts"]);
    assert!(
        qemu_processes_with(&root).is_empty(),
        "QEMU left after three Ctrl-C"
    );

    // Ctrl-C while the VM boots: skiff stops it and exits 130.
    let run = s.spawn(&["run", "--rm", &image, "true"]);
    common::wait_until(Duration::from_secs(30), "QEMU to start", || {
        !qemu_processes_with(&root).is_empty()
    });
    interrupt(&run);
    let out = run.wait(Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert!(
        qemu_processes_with(&root).is_empty(),
        "QEMU left after Ctrl-C during boot"
    );

    // SIGKILL of skiff: its VM dies with it.
    let run = s.spawn(&["run", &image, "sh", "-c", "echo ready; sleep 100"]);
    wait_for_ready(&run);
    assert!(
        !qemu_processes_with(&root).is_empty(),
        "no QEMU found while running"
    );
    let st = run.kill();
    assert_eq!(st.signal(), Some(9));
    common::wait_until(
        Duration::from_secs(5),
        "QEMU to exit after skiff was killed",
        || qemu_processes_with(&root).is_empty(),
    );
}

/// Errors before any boot: one line, exit 125, nothing left behind.
#[test]
fn refuses_foreign_platform_and_missing_kernel() {
    let reg = Registry::start(RegistryOpts::default());
    let arm = reg.push_fixture("arm64", "test/arm", "latest");
    let s = Skiff::for_vms();
    let out = s.run(&[
        "run",
        "--rm",
        "-q",
        "--platform",
        "linux/arm64/v8",
        &arm,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", out.stderr);
    out.assert_clean_error(&["linux/arm64", "--platform linux/amd64"]);

    let amd = reg.push_fixture("latest", "test/amd", "latest");
    let empty = common::tempdir();
    let s = Skiff::new()
        .with_env("SKIFF_KERNEL_DIR", empty.path())
        .with_env("SKIFF_INIT", common::vm::init_binary());
    let out = s.run(&["run", "--rm", "-q", &amd, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", out.stderr);
    out.assert_clean_error(&["skiff system kernel install"]);
    assert_eq!(
        containers_left(&s),
        0,
        "a failed --rm run left its container directory"
    );
}

/// SIGINT to a spawned skiff, as Ctrl-C on its terminal would send.
fn interrupt(run: &common::Spawned) {
    send(run, rustix::process::Signal::INT);
}

fn send(run: &common::Spawned, sig: rustix::process::Signal) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(run.child.id() as i32).expect("child pid"),
        sig,
    )
    .expect("kill");
}

/// Waits for the container's "ready" line on a spawned skiff's stdout.
fn wait_for_ready(run: &common::Spawned) {
    let out_path = run.stdout_path();
    common::wait_until(Duration::from_secs(90), "the container to start", || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("ready")
    });
}

/// `--pull missing|always|never`, seen from the registry's side. No VM is needed: the
/// kernel directory is empty, so each run stops (125) right after the image is
/// resolved, and the proxy tells what each policy asked the registry for.
#[test]
fn pull_policies() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = common::Proxy::start(&reg, common::Mode::Normal);
    let image = format!("{}/test/busybox:latest", proxy.host());
    let empty = common::tempdir();
    let s = Skiff::new()
        .with_env("SKIFF_KERNEL_DIR", empty.path())
        .with_env("SKIFF_INIT", common::vm::init_binary());
    let no_kernel = |out: &common::Out| {
        assert_eq!(out.status.code(), Some(125), "{}", out.stderr);
        assert!(
            out.stderr.contains("skiff system kernel install"),
            "{}",
            out.stderr
        );
    };
    let manifest_gets =
        |p: &common::Proxy| p.count_method_path("GET", "/v2/test/busybox/manifests/");

    // never, and the image is not here: a clean error, the registry not asked.
    let out = s.run(&["run", "--rm", "--pull", "never", &image, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", out.stderr);
    out.assert_clean_error(&["--pull never", "test/busybox"]);
    assert_eq!(proxy.requests().len(), 0, "{}", proxy.dump());

    // missing (the default): pulls, saying so.
    let out = s.run(&["run", "--rm", &image, "true"]);
    no_kernel(&out);
    assert!(
        out.stderr
            .contains(&format!("Unable to find image '{image}' locally")),
        "{}",
        out.stderr
    );
    assert_eq!(manifest_gets(&proxy), 1, "{}", proxy.dump());
    assert!(!proxy.blob_gets().is_empty());
    assert_eq!(s.images().len(), 1);

    // missing, and it is here: the registry is not asked.
    proxy.reset();
    no_kernel(&s.run(&["run", "--rm", "-q", "--pull", "missing", &image, "true"]));
    assert_eq!(proxy.requests().len(), 0, "{}", proxy.dump());

    // always: asks for the manifest again (and fetches no blob it has).
    no_kernel(&s.run(&["run", "--rm", "-q", "--pull", "always", &image, "true"]));
    assert_eq!(manifest_gets(&proxy), 1, "{}", proxy.dump());
    assert!(proxy.blob_gets().is_empty(), "{}", proxy.dump());

    // never, and it is here: runs from the store.
    proxy.reset();
    no_kernel(&s.run(&["run", "--rm", "-q", "--pull", "never", &image, "true"]));
    assert_eq!(proxy.requests().len(), 0, "{}", proxy.dump());
    assert_eq!(containers_left(&s), 0);
    s.assert_consistent();
}
