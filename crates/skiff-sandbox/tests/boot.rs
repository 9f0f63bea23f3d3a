//! Real QEMU, real kernel. Each boot is seconds under TCG, so there are few.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_sandbox::accel::{self, Accel};
use skiff_sandbox::{initramfs, QemuBinary, RunningVm, VmConfig};

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

/// SKIFF_ACCEL unset: /dev/kvm is here but KVM cannot run a Linux guest on
/// this host (on a working KVM host this picks KVM); either way the answer
/// comes fast and says why. Then SKIFF_ACCEL forces each way, and a TCG boot
/// of the same initramfs reaches the marker.
#[test]
fn accelerator_choice_and_tcg_probe_boot() {
    let kernel = common::kernel();
    let tmp = tempfile::tempdir().unwrap();
    let init = tiny_init(tmp.path());
    let cache = tmp.path().join("cache");
    let initrd = initramfs::build(&cache, &init, &kernel).unwrap();
    let qemu = qemu();

    // The only test in this binary that touches the environment.
    std::env::remove_var("SKIFF_ACCEL");
    let t = Instant::now();
    let choice = accel::choose(&cache, &qemu, &kernel, &initrd);
    let took = t.elapsed();
    eprintln!(
        "choose: {:?} in {took:?}: {} (probe_ms {:?})",
        choice.accel, choice.reason, choice.probe_ms
    );
    assert!(!choice.reason.is_empty());
    assert!(
        took < Duration::from_secs(5),
        "the probe must be quick: {took:?}"
    );
    if choice.accel == Accel::Tcg && std::path::Path::new("/dev/kvm").exists() {
        // Second call: from the cache, no boot.
        let t = Instant::now();
        let again = accel::choose(&cache, &qemu, &kernel, &initrd);
        assert_eq!(again.accel, choice.accel);
        assert!(
            again.probe_ms.is_none() && again.reason.contains("cached"),
            "{}",
            again.reason
        );
        eprintln!("cached choose: {:?}", t.elapsed());
    }

    std::env::set_var("SKIFF_ACCEL", "tcg");
    let forced = accel::choose(&cache, &qemu, &kernel, &initrd);
    assert_eq!(forced.accel, Accel::Tcg);
    assert!(
        forced.reason.contains("SKIFF_ACCEL=tcg"),
        "{}",
        forced.reason
    );
    std::env::set_var("SKIFF_ACCEL", "kvm");
    assert_eq!(
        accel::choose(&cache, &qemu, &kernel, &initrd).accel,
        Accel::Kvm
    );
    std::env::remove_var("SKIFF_ACCEL");

    let t = Instant::now();
    accel::probe_boot(&qemu, Accel::Tcg, &kernel, &initrd, Duration::from_secs(60))
        .expect("TCG boot reaches the marker");
    eprintln!("TCG probe boot to marker: {:?}", t.elapsed());
}

fn skiff_init() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_INIT") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/skiff-init")
}

/// The real skiff-init answers Hello over the control channel, and shutdown
/// leaves no QEMU behind. The state directory is deeper than a UNIX socket
/// path may be, so the control socket goes through the directory-fd route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_skiff_init_and_shuts_down() {
    let init = skiff_init();
    assert!(
        init.is_file(),
        "{} is missing: run scripts/build-init.sh first (this test needs the real guest init)",
        init.display()
    );
    let kernel = common::kernel();
    let tmp = tempfile::tempdir().unwrap();
    let initrd = initramfs::build(&tmp.path().join("cache"), &init, &kernel).unwrap();
    let state_dir = tmp.path().join("s".repeat(70)).join("t".repeat(40));
    let cfg = VmConfig {
        qemu: qemu(),
        kernel,
        initramfs: initrd,
        // Not SKIFF_ACCEL: the accelerator test sets that one while running.
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
    assert!(!hello.kernel_release.is_empty());
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
    let err = RunningVm::boot(cfg)
        .await
        .err()
        .expect("boot must time out")
        .to_string();
    assert!(err.contains("did not answer within"), "{err}");
    assert_eq!(
        processes_mentioning(&needle),
        Vec::<u32>::new(),
        "QEMU survived the timeout"
    );
}
