//! Choosing between KVM and TCG.
//!
//! An openable /dev/kvm is not proof that KVM can run a Linux guest (nested
//! virtualization and odd CPUs fail in QEMU or in the guest), so the choice
//! comes from a probe: boot the real kernel and initramfs under KVM with
//! `skiff.probe=1`; skiff-init prints the marker on ttyS0 and powers off. The
//! answer is cached per host boot, QEMU binary and kernel release.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::kernel::KernelInfo;
use crate::qemu::{self, Console, QemuBinary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    /// Why, in words a user can act on.
    pub reason: String,
    /// How long the probe boot took, when one ran now (not cached).
    pub probe_ms: Option<u64>,
}

const CACHE_FILE: &str = "accel.json";
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Enough for the kernel and skiff-init; the probe does nothing else.
const PROBE_MEMORY_MIB: u32 = 256;

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct CacheKey {
    boot_id: String,
    /// Path, size and mtime of the QEMU binary: an upgrade changes them, and
    /// reading them costs no process (`qemu --version` takes tens of ms).
    qemu_binary: String,
    kernel_release: String,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    key: CacheKey,
    accel: Accel,
    reason: String,
}

fn binary_identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{}:{}:{}.{}",
        path.display(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// What [`choose`] consults besides its arguments: the environment and two
/// host files. [`Settings::from_env`] is the real host; tests point the paths
/// elsewhere to reach every branch on any machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SKIFF_ACCEL`: use this accelerator without probing.
    pub forced: Option<Accel>,
    /// `/dev/kvm`: no probe unless it opens read-write.
    pub kvm_device: PathBuf,
    /// `/proc/sys/kernel/random/boot_id`: a cached answer holds for one host
    /// boot (no cache is read or written when it cannot be read).
    pub boot_id_file: PathBuf,
    /// How long the probe boot may take: `SKIFF_KVM_PROBE_TIMEOUT_MS`, else 3 s.
    pub probe_timeout: Duration,
}

impl Settings {
    /// `SKIFF_ACCEL`, `SKIFF_KVM_PROBE_TIMEOUT_MS` and the real host paths.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::var("SKIFF_ACCEL").ok().as_deref(),
            std::env::var("SKIFF_KVM_PROBE_TIMEOUT_MS").ok().as_deref(),
        )
    }

    fn from_vars(accel: Option<&str>, probe_timeout_ms: Option<&str>) -> Self {
        let forced = match accel.filter(|v| !v.is_empty()) {
            None => None,
            Some("kvm") => Some(Accel::Kvm),
            Some("tcg") => Some(Accel::Tcg),
            Some(other) => {
                tracing::warn!("ignoring SKIFF_ACCEL={other:?} (want kvm or tcg)");
                None
            }
        };
        Self {
            forced,
            kvm_device: PathBuf::from("/dev/kvm"),
            boot_id_file: PathBuf::from("/proc/sys/kernel/random/boot_id"),
            probe_timeout: probe_timeout_ms
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_PROBE_TIMEOUT),
        }
    }
}

/// Picks the accelerator for this host ([`Settings::from_env`]). Never
/// fails: whatever goes wrong means TCG, and the reason says what.
pub fn choose(
    cache_dir: &Path,
    qemu: &QemuBinary,
    kernel: &KernelInfo,
    initramfs: &Path,
) -> AccelChoice {
    choose_with(&Settings::from_env(), cache_dir, qemu, kernel, initramfs)
}

/// [`choose`] with explicit settings.
pub fn choose_with(
    settings: &Settings,
    cache_dir: &Path,
    qemu: &QemuBinary,
    kernel: &KernelInfo,
    initramfs: &Path,
) -> AccelChoice {
    if let Some(forced) = settings.forced {
        return choice(
            forced,
            format!("forced by SKIFF_ACCEL={}", forced.as_str()),
            None,
        );
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&settings.kvm_device)
    {
        return choice(
            Accel::Tcg,
            format!(
                "{} cannot be opened read-write ({e}); using TCG emulation, which is much slower",
                settings.kvm_device.display()
            ),
            None,
        );
    }
    let key = match (
        std::fs::read_to_string(&settings.boot_id_file),
        binary_identity(&qemu.path),
    ) {
        (Ok(boot_id), Some(qemu_binary)) => Some(CacheKey {
            boot_id: boot_id.trim().to_owned(),
            qemu_binary,
            kernel_release: kernel.release.clone(),
        }),
        _ => None,
    };
    let cache = cache_dir.join(CACHE_FILE);
    if let Some(key) = &key {
        if let Some(entry) = std::fs::read(&cache)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheEntry>(&b).ok())
        {
            if entry.key == *key {
                return choice(
                    entry.accel,
                    format!("{} (cached probe result)", entry.reason),
                    None,
                );
            }
        }
    }
    let started = Instant::now();
    let (accel, reason) =
        match probe_boot(qemu, Accel::Kvm, kernel, initramfs, settings.probe_timeout) {
            Ok(()) => (Accel::Kvm, "KVM probe boot succeeded".to_owned()),
            Err(why) => (
                Accel::Tcg,
                format!(
                    "KVM does not work here ({why}); using TCG emulation, which is much slower"
                ),
            ),
        };
    let probe_ms = started.elapsed().as_millis() as u64;
    if let Some(key) = key {
        save(
            cache_dir,
            &CacheEntry {
                key,
                accel,
                reason: reason.clone(),
            },
        );
    }
    choice(accel, reason, Some(probe_ms))
}

fn choice(accel: Accel, reason: String, probe_ms: Option<u64>) -> AccelChoice {
    AccelChoice {
        accel,
        reason,
        probe_ms,
    }
}

/// Best effort: a cache that cannot be written only costs a probe next time.
fn save(cache_dir: &Path, entry: &CacheEntry) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(cache_dir)?;
        let json = serde_json::to_vec_pretty(entry)?;
        skiff_util::atomic::write(&cache_dir.join(CACHE_FILE), &json, 0o644)
    };
    if let Err(e) = write() {
        tracing::debug!(
            "not caching the accelerator probe in {}: {e}",
            cache_dir.display()
        );
    }
}

/// Boots with `skiff.probe=1` under `accel` and waits up to `timeout` for the
/// probe marker on the serial console. Err carries the reason (QEMU's last
/// stderr line, or the timeout). QEMU is killed and reaped on every path.
pub fn probe_boot(
    qemu: &QemuBinary,
    accel: Accel,
    kernel: &KernelInfo,
    initramfs: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let cmdline = qemu::kernel_cmdline(accel, false, &[skiff_proto::CMDLINE_PROBE.to_owned()]);
    let args = qemu::base_args(
        accel,
        1,
        PROBE_MEMORY_MIB,
        kernel,
        initramfs,
        &cmdline,
        &Console::Stdout,
    );
    let mut cmd = Command::new(&qemu.path);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the hook only makes async-signal-safe calls.
    unsafe { cmd.pre_exec(crate::child::pre_exec_hook(None, Vec::new())) };
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.path.display()))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        // Ok(true): marker seen; Ok(false): console closed (QEMU exited).
        let found = stdout
            .map(|s| {
                BufReader::new(s)
                    .split(b'\n')
                    .map_while(Result::ok)
                    .any(|l| String::from_utf8_lossy(&l).trim() == skiff_proto::PROBE_OK_MARKER)
            })
            .unwrap_or(false);
        let _ = tx.send(found);
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let outcome = rx.recv_timeout(timeout);
    let _ = child.kill();
    let status = child.wait();
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim);
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => Err(match last {
            Some(l) => format!("QEMU exited: {l}"),
            None => format!(
                "QEMU exited without the probe marker ({})",
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string())
            ),
        }),
        Err(_) => Err(format!(
            "the probe boot printed no {} within {} ms{}",
            skiff_proto::PROBE_OK_MARKER,
            timeout.as_millis(),
            last.map(|l| format!("; QEMU said: {l}"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        let host = Settings::from_vars(None, None);
        assert_eq!(
            host,
            Settings {
                forced: None,
                kvm_device: "/dev/kvm".into(),
                boot_id_file: "/proc/sys/kernel/random/boot_id".into(),
                probe_timeout: Duration::from_secs(3),
            }
        );
        assert_eq!(
            Settings::from_vars(Some("kvm"), None).forced,
            Some(Accel::Kvm)
        );
        assert_eq!(
            Settings::from_vars(Some("tcg"), None).forced,
            Some(Accel::Tcg)
        );
        // Empty or unknown: ignored (with a warning), the probe decides.
        assert_eq!(Settings::from_vars(Some(""), None).forced, None);
        assert_eq!(Settings::from_vars(Some("KVM"), None).forced, None);
        assert_eq!(
            Settings::from_vars(None, Some("250")).probe_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(
            Settings::from_vars(None, Some("soon")).probe_timeout,
            Duration::from_secs(3)
        );
    }
}
