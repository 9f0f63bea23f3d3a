//! Real QEMU, real kernel. Each boot is seconds under TCG, so there are few.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_sandbox::accel::{self, Accel, Settings};
use skiff_sandbox::{initramfs, KernelInfo, QemuBinary, RunningVm, VmConfig};

/// A static init that prints the probe marker and powers off: stands in for
/// skiff-init in the accelerator tests.
fn tiny_init(dir: &Path) -> PathBuf {
    let src = dir.join("init.c");
    std::fs::write(
        &src,
        format!(
            r#"#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/reboot.h>
int main(void) {{
    const char *m = "\n{}\n";
    int fd = open("/dev/console", O_WRONLY);
    if (fd >= 0) write(fd, m, strlen(m));
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}}
"#,
            skiff_proto::PROBE_OK_MARKER
        ),
    )
    .unwrap();
    let out = dir.join("init");
    let st = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc (apt-get install gcc libc6-dev)");
    assert!(st.success(), "compiling the test init");
    out
}

fn qemu() -> QemuBinary {
    QemuBinary::find().expect("QEMU")
}

/// A stand-in for `qemu-system-x86_64`: a shell script that appends its pid
/// to a log and execs the real QEMU (which keeps that pid). The probe's
/// `-accel kvm -cpu host` becomes `-accel tcg -cpu max` (with the TCG command
/// line), so its boot runs the same on any host, KVM or not; the variant
/// then adds its arguments. Each line of the log is one QEMU started.
///
/// The script is written once, before anything runs it; a variant lives in
/// a file beside it, and changing it sets a new mtime on the script (the
/// QEMU binary's identity is path, size and mtime), without opening it for
/// writing, so no exec of it can meet ETXTBSY from a concurrent fork.
struct LoggingQemu {
    script: PathBuf,
    variant: PathBuf,
    log: PathBuf,
    changes: std::cell::Cell<i64>,
}

enum Variant {
    /// Nothing added: a real boot that reaches the marker.
    Boots,
    /// An option QEMU refuses: it exits at once with an error on stderr.
    Refused,
    /// `-S`: the CPUs never start, so the marker can never come.
    Paused,
}

impl LoggingQemu {
    fn new(dir: &Path) -> Self {
        let q = Self {
            script: dir.join("qemu-logging"),
            variant: dir.join("qemu-variant"),
            log: dir.join("qemu-starts.log"),
            changes: 0.into(),
        };
        let text = format!(
            r#"#!/bin/sh
echo $$ >> '{log}'
extra=$(cat '{variant}')
prev=
for a do
  shift
  case "$prev" in
    -accel) [ "$a" = kvm ] && a=tcg ;;
    -cpu) [ "$a" = host ] && a=max ;;
    -append) a="$a {tcg}" ;;
  esac
  prev=$a
  set -- "$@" "$a"
done
exec '{real}' "$@" $extra
"#,
            log = q.log.display(),
            variant = q.variant.display(),
            tcg = skiff_sandbox::qemu::tcg_cmdline().join(" "),
            real = qemu().path.display(),
        );
        std::fs::write(&q.script, text).unwrap();
        std::fs::set_permissions(&q.script, std::fs::Permissions::from_mode(0o755)).unwrap();
        q.set(Variant::Boots);
        q
    }

    fn binary(&self) -> QemuBinary {
        QemuBinary::at(self.script.clone())
    }

    /// Another variant, and another QEMU binary as far as the cache can tell.
    fn set(&self, variant: Variant) {
        let extra = match variant {
            Variant::Boots => "",
            Variant::Refused => "-no-such-option",
            Variant::Paused => "-S",
        };
        std::fs::write(&self.variant, extra).unwrap();
        self.changes.set(self.changes.get() + 1);
        let t = rustix::fs::Timespec {
            tv_sec: 1_000_000_000 + self.changes.get(),
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &self.script,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }

    /// The pids of every QEMU started so far, oldest first.
    fn starts(&self) -> Vec<u32> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// Asserts `n` QEMUs were started in all, and that none is left.
    fn assert_started(&self, n: usize, what: &str) {
        let starts = self.starts();
        assert_eq!(starts.len(), n, "{what}: QEMU starts {starts:?}");
        for pid in starts {
            assert!(!pid_alive(pid), "{what}: QEMU {pid} is still there");
        }
    }
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

const TCG_FALLBACK: &str = "; using TCG emulation, which is much slower";

/// Every branch of the accelerator choice, on any host (with or without a
/// working /dev/kvm): the KVM device and the boot id are files of the test,
/// and QEMU is the real one behind a script that logs each start. One real
/// boot (the successful probe, under TCG); the other probes end at once,
/// but for the last, which runs into its 1 s deadline.
/// The answer is cached by host boot, QEMU binary and kernel release.
#[test]
fn accelerator_choice_probe_and_cache() {
    let tmp = tempfile::tempdir().unwrap();
    // First: a fork elsewhere while the script is written is long gone
    // (exec'd) by the time the script is run.
    let q = LoggingQemu::new(tmp.path());
    let kernel = common::kernel();
    let init = tiny_init(tmp.path());
    let cache = tmp.path().join("cache");
    let initrd = initramfs::build(&cache, &init, &kernel).unwrap();
    let kvm = tmp.path().join("kvm");
    std::fs::write(&kvm, "").unwrap();
    let boot_id = tmp.path().join("boot_id");
    std::fs::write(&boot_id, "boot-1\n").unwrap();
    let mut settings = Settings {
        forced: None,
        kvm_device: kvm.clone(),
        boot_id_file: boot_id.clone(),
        probe_timeout: Duration::from_secs(60),
    };
    let choose = |s: &Settings, k: &KernelInfo| {
        let c = accel::choose_with(s, &cache, &q.binary(), k, &initrd);
        eprintln!("{:?}: {} (probe_ms {:?})", c.accel, c.reason, c.probe_ms);
        c
    };
    let cached = |reason: &str| format!("{reason} (cached probe result)");

    // SKIFF_ACCEL: no probe.
    for a in [Accel::Kvm, Accel::Tcg] {
        let forced = Settings {
            forced: Some(a),
            ..settings.clone()
        };
        let c = choose(&forced, &kernel);
        assert_eq!(c.accel, a);
        assert_eq!(c.reason, format!("forced by SKIFF_ACCEL={}", a.as_str()));
        assert_eq!(c.probe_ms, None);
    }
    q.assert_started(0, "forced");

    // No KVM device: TCG, no probe, nothing cached.
    let before = listing(&cache);
    let missing = tmp.path().join("no-kvm");
    let c = choose(
        &Settings {
            kvm_device: missing.clone(),
            ..settings.clone()
        },
        &kernel,
    );
    assert_eq!(c.accel, Accel::Tcg);
    assert_eq!(
        c.reason,
        format!(
            "{} cannot be opened read-write (No such file or directory (os error 2)){TCG_FALLBACK}",
            missing.display()
        )
    );
    assert_eq!(c.probe_ms, None);
    q.assert_started(0, "no KVM device");
    assert_eq!(listing(&cache), before, "nothing cached without a probe");

    // A probe that reaches the marker: KVM, and the answer is written down.
    let c = choose(&settings, &kernel);
    assert_eq!(c.accel, Accel::Kvm);
    assert_eq!(c.reason, "KVM probe boot succeeded");
    assert!(c.probe_ms.is_some());
    q.assert_started(1, "first probe");
    let written: Vec<String> = listing(&cache).difference(&before).cloned().collect();
    assert_eq!(written.len(), 1, "one cache file: {written:?}");
    let cache_file = cache.join(&written[0]);

    // Asked again: from the cache, no QEMU.
    let c = choose(&settings, &kernel);
    assert_eq!(
        (c.accel, c.reason.as_str(), c.probe_ms),
        (
            Accel::Kvm,
            cached("KVM probe boot succeeded").as_str(),
            None
        )
    );
    q.assert_started(1, "cached");

    // Another QEMU binary: probed again; this one fails, and says why.
    q.set(Variant::Refused);
    let refused = format!(
        "KVM does not work here (QEMU exited: qemu-system-x86_64: -no-such-option: invalid option){TCG_FALLBACK}"
    );
    let c = choose(&settings, &kernel);
    assert_eq!((c.accel, c.reason.as_str()), (Accel::Tcg, refused.as_str()));
    assert!(c.probe_ms.is_some());
    q.assert_started(2, "new QEMU binary");
    // A failure is cached too.
    let c = choose(&settings, &kernel);
    assert_eq!(
        (c.accel, c.reason.as_str(), c.probe_ms),
        (Accel::Tcg, cached(&refused).as_str(), None)
    );
    q.assert_started(2, "failure cached");

    // Another kernel release: probed again, then cached.
    let other = KernelInfo {
        release: format!("{}-other", kernel.release),
        ..kernel.clone()
    };
    assert_eq!(choose(&settings, &other).reason, refused);
    q.assert_started(3, "new kernel release");
    assert_eq!(choose(&settings, &other).reason, cached(&refused));
    q.assert_started(3, "new kernel release cached");

    // The host rebooted: probed again, then cached.
    std::fs::write(&boot_id, "boot-2\n").unwrap();
    assert_eq!(choose(&settings, &other).reason, refused);
    q.assert_started(4, "new boot id");
    assert_eq!(choose(&settings, &other).reason, cached(&refused));
    q.assert_started(4, "new boot id cached");

    // A damaged cache file: probed again and rewritten.
    std::fs::write(&cache_file, "not json").unwrap();
    assert_eq!(choose(&settings, &other).reason, refused);
    q.assert_started(5, "damaged cache");
    assert_eq!(choose(&settings, &other).reason, cached(&refused));
    q.assert_started(5, "rewritten cache");

    // No boot id to key the cache by: every call probes.
    let no_boot_id = Settings {
        boot_id_file: tmp.path().join("no-boot-id"),
        ..settings.clone()
    };
    assert_eq!(choose(&no_boot_id, &other).reason, refused);
    assert_eq!(choose(&no_boot_id, &other).reason, refused);
    q.assert_started(7, "no boot id");

    // A probe that can never reach the marker (CPUs stopped) ends at its
    // deadline, and its QEMU is killed.
    q.set(Variant::Paused);
    settings.probe_timeout = Duration::from_secs(1);
    let c = choose(&settings, &other);
    assert_eq!(
        (c.accel, c.reason),
        (
            Accel::Tcg,
            format!(
                "KVM does not work here (the probe boot printed no {} within 1000 ms){TCG_FALLBACK}",
                skiff_proto::PROBE_OK_MARKER
            )
        )
    );
    q.assert_started(8, "probe deadline");
}

/// The real skiff-init answers Hello over the control channel, and shutdown
/// leaves no QEMU behind. The state directory is deeper than a UNIX socket
/// path may be, so the control socket goes through the directory-fd route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_skiff_init_and_shuts_down() {
    let init = common::skiff_init();
    let kernel = common::kernel();
    let release = kernel.release.clone();
    let tmp = tempfile::tempdir().unwrap();
    let initrd = initramfs::build(&tmp.path().join("cache"), &init, &kernel).unwrap();
    let state_dir = tmp.path().join("s".repeat(70)).join("t".repeat(40));
    let cfg = VmConfig {
        qemu: qemu(),
        kernel,
        initramfs: initrd,
        // Not SKIFF_ACCEL: that one is the product's, read by accel::choose.
        accel: match std::env::var("SKIFF_TEST_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            _ => Accel::Tcg,
        },
        cpus: 1,
        memory_mib: 512,
        disks: vec![],
        state_dir: state_dir.clone(),
        extra_cmdline: vec![],
        debug: true,
        boot_timeout: Duration::from_secs(60),
        nics: Vec::new(),
        shares: Vec::new(),
    };
    let t = Instant::now();
    let vm = RunningVm::boot(cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let hello = vm.hello().clone();
    eprintln!(
        "hello: {hello:?}\ntimings: {:?} (boot() took {:?})",
        vm.timings(),
        t.elapsed()
    );
    assert_eq!(hello.protocol_version, skiff_proto::PROTOCOL_VERSION);
    assert_eq!(hello.kernel_release, release);
    let pid = vm.pid();
    assert!(pid_alive(pid));

    let t = Instant::now();
    vm.shutdown(Duration::from_secs(1))
        .await
        .expect("clean power-off");
    eprintln!("shutdown: {:?}", t.elapsed());
    assert!(!pid_alive(pid), "QEMU {pid} still exists after shutdown");
    assert!(state_dir.join("console.log").is_file());
}

fn pid_alive(pid: u32) -> bool {
    // Signal 0: existence check; a zombie counts as alive.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn tiny_vm(tmp: &Path, state: &str, timeout: Duration) -> VmConfig {
    let kernel = common::kernel();
    let init = tiny_init(tmp);
    let initrd = initramfs::build(&tmp.join("cache"), &init, &kernel).unwrap();
    VmConfig {
        qemu: qemu(),
        kernel,
        initramfs: initrd,
        accel: Accel::Tcg,
        cpus: 1,
        memory_mib: 256,
        disks: vec![],
        state_dir: tmp.join(state),
        extra_cmdline: vec![],
        debug: false,
        boot_timeout: timeout,
        nics: Vec::new(),
        shares: Vec::new(),
    }
}

/// Processes whose command line mentions `needle` (QEMU names its state dir).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// An init that powers off without serving the agent: boot fails because
/// QEMU exited, and the error quotes the console (where the marker is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_that_powers_off_is_a_boot_error_with_the_console() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_vm(tmp.path(), "exits", Duration::from_secs(60));
    let err = RunningVm::boot(cfg)
        .await
        .err()
        .expect("boot must fail")
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("QEMU exited"), "{err}");
    assert!(
        err.contains(skiff_proto::PROBE_OK_MARKER),
        "console tail quoted: {err}"
    );
}

/// A boot timeout kills QEMU: nothing naming the state dir survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_timeout_kills_qemu() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_vm(tmp.path(), "timeout", Duration::from_millis(500));
    let needle = cfg.state_dir.to_string_lossy().into_owned();
    let boot = tokio::spawn(RunningVm::boot(cfg));
    // QEMU is seen running before the deadline passes...
    let mut qemu = Vec::new();
    while qemu.is_empty() && !boot.is_finished() {
        qemu = processes_mentioning(&needle);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!qemu.is_empty(), "QEMU was never seen running");
    let err = boot
        .await
        .unwrap()
        .err()
        .expect("boot must time out")
        .to_string();
    assert!(err.contains("did not answer within 500ms"), "{err}");
    // ...and afterwards it is gone and reaped: not even a zombie is left.
    for pid in qemu {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "QEMU (pid {pid}) survived the timeout or was not reaped"
        );
    }
}
