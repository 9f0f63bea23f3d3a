//! Memory a container frees goes back to the host: the VM's balloon reports
//! free pages and QEMU discards them, with plain guest RAM and with the
//! shared memfd RAM that a host directory (virtio-fs) needs.

mod common;

use std::time::{Duration, Instant};

use common::vm::qemu_processes_with;

/// QEMU's resident set (KiB) for the container `id`.
fn qemu_rss_kib(id: &str) -> u64 {
    let pids = qemu_processes_with(id);
    assert_eq!(pids.len(), 1, "one QEMU for {id}: {pids:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Fills 300 MiB of a tmpfs, frees it, and waits for QEMU's RSS to come
/// back near its figure before the fill.
fn fill_and_free(s: &common::Skiff, image: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--tmpfs", "/big:size=400m"];
    args.extend(extra);
    args.extend([image, "sleep", "1000"]);
    let id = s.ok(&args).stdout.trim().to_owned();
    // Boot-time allocations settle (and are reported) first.
    std::thread::sleep(Duration::from_secs(3));
    let idle = qemu_rss_kib(&id);
    s.ok(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/big/f",
        "bs=1M",
        "count=300",
    ]);
    let full = qemu_rss_kib(&id);
    assert!(
        full > idle + 250 * 1024,
        "the fill shows: {idle} -> {full} KiB"
    );
    s.ok(&["exec", &id, "rm", "/big/f"]);
    let freed_at = Instant::now();
    let mut now = full;
    while freed_at.elapsed() < Duration::from_secs(30) {
        now = qemu_rss_kib(&id);
        if now < idle + 50 * 1024 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        now < idle + 50 * 1024,
        "freed memory back on the host ({extra:?}): idle {idle}, full {full}, now {now} KiB"
    );
    eprintln!(
        "{extra:?}: idle {idle} KiB, full {full} KiB, back to {now} KiB in {:?}",
        freed_at.elapsed()
    );
    s.ok(&["rm", "-f", &id]);
}

#[test]
fn freed_memory_returns_to_the_host() {
    let (_reg, s, image) = common::vm::pulled("users");
    fill_and_free(&s, &image, &[]);
    let share = common::tempdir();
    let vol = format!("{}:/share", share.path().display());
    fill_and_free(&s, &image, &["-v", &vol]);
}
