//! The QEMU binary and the command line of a microvm.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::accel::Accel;
use crate::kernel::KernelInfo;

/// The machine. `x-option-roms=off`: no option ROMs to load or run (the
/// kernel is entered through its PVH note, no firmware detour).
/// `isa-serial=on`: ttyS0 for the console log and the probe.
/// `rtc=on`: with it off the guest boots at 1970 ("Unable to read current
/// time from RTC") and nothing in the protocol sets the clock; TLS inside
/// containers would fail. Its cost was not measurable (TCG to power-off,
/// loaded 2-core host: off 6.0/12.1 s, on 6.6/7.2 s).
/// PIT, PIC and ACPI stay at their defaults: `pit=off,pic=off` gained nothing
/// (5.3/7.3 s against 4.7/7.0 s), and `acpi=off` breaks power-off (the guest
/// reached init but QEMU never exited) and the ACPI discovery of virtio-mmio
/// devices, which the modular virtio_mmio needs.
pub const MACHINE: &str = "microvm,x-option-roms=off,isa-serial=on,rtc=on";

/// Kernel command line used on every boot. `quiet`: printk to a 115200-baud
/// emulated UART is slow. `panic=-1` + `-no-reboot`: a guest panic ends QEMU
/// instead of hanging. `pci=off`: microvm has no PCI bus, so don't probe one.
/// `i8042.*`: no keyboard controller to probe either. `tsc=reliable
/// no_timer_check`: skip the TSC watchdog and the IO-APIC timer check, which
/// cost seconds under TCG (without them: 8.6/10.2 s to power-off against
/// 4.7/7.0 s) and check nothing useful under KVM.
pub const BASE_CMDLINE: &[&str] = &[
    "console=ttyS0",
    "quiet",
    "panic=-1",
    "pci=off",
    "i8042.noaux",
    "i8042.nokbd",
    "tsc=reliable",
    "no_timer_check",
];

/// Under TCG the kernel calibrates the TSC against the emulated PIT with a
/// timed busy loop; on a loaded host the emulation is too slow for it, the
/// calibration fails ("tsc: Unable to calibrate against PIT"), the TSC is
/// marked unstable and the boot hangs with the clock stuck at 0. Measured
/// here: every TCG boot hung under load until the frequency was given. TCG's
/// guest TSC is the host's, so the host's rate is the right value; with it
/// the delay loop is derived too (no `lpj=` needed). KVM calibrates from
/// paravirtual clocks and gets neither.
pub fn tcg_cmdline() -> Vec<String> {
    vec![format!("tsc_early_khz={}", host_tsc_khz())]
}

/// The host's TSC rate in kHz. /proc/cpuinfo's `bogomips` is twice the TSC
/// rate in MHz on x86 (the delay loop runs on the TSC); `cpu MHz` is the
/// fallback (the current clock, close to the TSC rate on constant-TSC CPUs).
pub fn host_tsc_khz() -> u64 {
    static KHZ: OnceLock<u64> = OnceLock::new();
    *KHZ.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| tsc_khz_from_cpuinfo(&t))
            .unwrap_or(2_000_000)
    })
}

fn tsc_khz_from_cpuinfo(text: &str) -> Option<u64> {
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| *v > 100.0)
    };
    let khz = field("bogomips")
        .map(|b| b * 500.0)
        .or_else(|| field("cpu MHz").map(|m| m * 1000.0))?;
    Some(khz.round() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{0} not found; install QEMU (apt-get install qemu-system-x86) or set SKIFF_QEMU to its path")]
    NotFound(String),
    #[error("running {path} --version: {detail}")]
    Version { path: PathBuf, detail: String },
}

/// A `qemu-system-x86_64` executable.
#[derive(Debug)]
pub struct QemuBinary {
    pub path: PathBuf,
    version: OnceLock<String>,
}

impl Clone for QemuBinary {
    fn clone(&self) -> Self {
        let version = OnceLock::new();
        if let Some(v) = self.version.get() {
            let _ = version.set(v.clone());
        }
        Self {
            path: self.path.clone(),
            version,
        }
    }
}

impl QemuBinary {
    /// `SKIFF_QEMU`, else `qemu-system-x86_64` on PATH.
    pub fn find() -> Result<Self, QemuError> {
        if let Some(p) = std::env::var_os("SKIFF_QEMU").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if !is_executable(&p) {
                return Err(QemuError::NotFound(format!("SKIFF_QEMU={}", p.display())));
            }
            return Ok(Self::at(p));
        }
        let name = "qemu-system-x86_64";
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
            .map(Self::at)
            .ok_or_else(|| QemuError::NotFound(name.into()))
    }

    pub fn at(path: PathBuf) -> Self {
        Self {
            path,
            version: OnceLock::new(),
        }
    }

    /// The version QEMU reports, e.g. `7.2.22`; asked once, then remembered.
    pub fn version(&self) -> Result<String, QemuError> {
        if let Some(v) = self.version.get() {
            return Ok(v.clone());
        }
        let err = |detail: String| QemuError::Version {
            path: self.path.clone(),
            detail,
        };
        let out = std::process::Command::new(&self.path)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let v = parse_version(&text)
            .ok_or_else(|| err(format!("unexpected output {:?}", text.trim())))?;
        let _ = self.version.set(v.clone());
        Ok(v)
    }
}

fn parse_version(text: &str) -> Option<String> {
    let rest = text.lines().next()?.split("version ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

fn is_executable(p: &Path) -> bool {
    rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }
}

/// A virtio-blk disk. The guest sees them as /dev/vda, /dev/vdb, ... in order.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub readonly: bool,
    /// The virtio-blk serial (at most 20 bytes): the guest finds the disk
    /// as /dev/disk/by-id/virtio-<serial> whatever its vdX name.
    pub serial: Option<String>,
}

/// What a network card is plugged into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBackend {
    /// An open tap device (the caller keeps it open until the VM booted).
    TapFd(RawFd),
    /// A connected stream socket to a user-mode network (passt) carrying
    /// QEMU's length-prefixed frames.
    StreamFd(RawFd),
}

/// A virtio-net card (eth0, eth1, ... in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub backend: NicBackend,
    pub mac: String,
}

/// A host directory shared with the guest through virtio-fs: the fd of a
/// socket connected to its virtiofsd, and the tag the guest mounts it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub fd: RawFd,
    pub tag: String,
}

/// Everything needed to boot one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub qemu: QemuBinary,
    pub kernel: KernelInfo,
    pub initramfs: PathBuf,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<Disk>,
    /// Where control.sock, console.log and qemu.log go. Created if missing.
    pub state_dir: PathBuf,
    /// Appended to the kernel command line.
    pub extra_cmdline: Vec<String>,
    /// skiff-init logs to the console (console.log).
    pub debug: bool,
    /// From QEMU's start to the agent's Hello answer.
    pub boot_timeout: Duration,
    pub nics: Vec<Nic>,
    /// Host directories (virtio-fs): guest RAM then lives on a shared memfd,
    /// as vhost-user needs.
    pub shares: Vec<Share>,
}

impl VmConfig {
    /// The fds QEMU inherits, from [`crate::child::FIRST_NIC_FD`] on: the
    /// cards', in card order, then the shares'.
    pub fn tap_fds(&self) -> Vec<RawFd> {
        self.nics
            .iter()
            .map(|n| match n.backend {
                NicBackend::TapFd(fd) | NicBackend::StreamFd(fd) => fd,
            })
            .chain(self.shares.iter().map(|s| s.fd))
            .collect()
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone)]
pub enum Console {
    /// Appended to a file (console.log).
    File(PathBuf),
    /// QEMU's stdout (the accelerator probe reads it).
    Stdout,
}

/// The kernel command line for `accel` (+ `extra`).
pub fn kernel_cmdline(accel: Accel, debug: bool, extra: &[String]) -> String {
    let mut parts: Vec<&str> = BASE_CMDLINE.to_vec();
    let tcg = if accel == Accel::Tcg {
        tcg_cmdline()
    } else {
        Vec::new()
    };
    parts.extend(tcg.iter().map(String::as_str));
    if debug {
        parts.push(skiff_proto::CMDLINE_DEBUG);
    }
    parts.extend(extra.iter().map(String::as_str));
    parts.join(" ")
}

/// Escapes a value for QEMU's `key=value,...` option syntax (`,` → `,,`).
pub fn opt_value(v: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(v.len());
    for &b in v.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn opt(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(opt_value(path.as_os_str()));
    s.push(suffix);
    s
}

/// The arguments shared by a VM and the probe: machine, accelerator, CPU,
/// memory, kernel, initramfs, command line, serial console.
pub fn base_args(
    accel: Accel,
    cpus: u32,
    memory_mib: u32,
    kernel: &KernelInfo,
    initramfs: &Path,
    cmdline: &str,
    console: &Console,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-M");
    push(MACHINE);
    match accel {
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host");
        }
        Accel::Tcg => {
            push("-accel");
            // One host thread per vCPU; with one vCPU the default is as fast.
            push(if cpus > 1 { "tcg,thread=multi" } else { "tcg" });
            push("-cpu");
            push("max");
        }
    }
    for s in [
        "-m".to_string(),
        memory_mib.to_string(),
        "-smp".into(),
        cpus.max(1).to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
    ] {
        a.push(s.into());
    }
    a.push("-kernel".into());
    a.push(kernel.vmlinux.clone().into());
    a.push("-initrd".into());
    a.push(initramfs.into());
    a.push("-append".into());
    a.push(cmdline.into());
    a.push("-chardev".into());
    a.push(match console {
        Console::File(p) => opt("file,id=con,path=", p, ""),
        Console::Stdout => "stdio,id=con,signal=off".into(),
    });
    a.push("-serial".into());
    a.push("chardev:con".into());
    a
}

/// The full QEMU command line of `cfg`. QEMU connects, as a client, to
/// `control` (a listening UNIX socket) for the skiff.control port.
pub fn vm_args(cfg: &VmConfig, control: &Path) -> Vec<OsString> {
    let cmdline = kernel_cmdline(cfg.accel, cfg.debug, &cfg.extra_cmdline);
    let console = Console::File(cfg.state_dir.join("console.log"));
    let mut a = base_args(
        cfg.accel,
        cfg.cpus,
        cfg.memory_mib,
        &cfg.kernel,
        &cfg.initramfs,
        &cmdline,
        &console,
    );
    for (i, d) in cfg.disks.iter().enumerate() {
        a.push("-drive".into());
        let ro = if d.readonly { ",readonly=on" } else { "" };
        a.push(opt(
            &format!(
                "if=none,id=disk{i},format={},discard=unmap,file=",
                d.format.as_str()
            ),
            &d.path,
            ro,
        ));
        a.push("-device".into());
        a.push(match &d.serial {
            Some(serial) => format!("virtio-blk-device,drive=disk{i},serial={serial}").into(),
            None => format!("virtio-blk-device,drive=disk{i}").into(),
        });
    }
    for (i, nic) in cfg.nics.iter().enumerate() {
        let fd = crate::child::FIRST_NIC_FD + i as RawFd;
        a.push("-netdev".into());
        a.push(match &nic.backend {
            // QEMU finds the tap's virtio-net header support itself (vnet_hdr
            // may not be given with fd=).
            NicBackend::TapFd(_) => format!("tap,id=net{i},fd={fd}").into(),
            NicBackend::StreamFd(_) => {
                format!("stream,id=net{i},server=off,addr.type=fd,addr.str={fd}").into()
            }
        });
        a.push("-device".into());
        a.push(format!("virtio-net-device,netdev=net{i},mac={}", nic.mac).into());
    }
    if !cfg.shares.is_empty() {
        // vhost-user needs guest RAM in shared memory, and libvhost-user
        // refuses microvm's default legacy virtio-mmio devices.
        a.push("-object".into());
        a.push(
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                cfg.memory_mib
            )
            .into(),
        );
        if let Some(m) = a.iter().position(|x| x == "-M") {
            let machine = format!("{},memory-backend=mem", a[m + 1].to_string_lossy());
            a[m + 1] = machine.into();
        }
        a.push("-global".into());
        a.push("virtio-mmio.force-legacy=false".into());
    }
    for (i, share) in cfg.shares.iter().enumerate() {
        let fd = crate::child::FIRST_NIC_FD + (cfg.nics.len() + i) as RawFd;
        a.push("-chardev".into());
        a.push(format!("socket,id=fs{i},fd={fd}").into());
        a.push("-device".into());
        a.push(format!("vhost-user-fs-device,chardev=fs{i},tag={}", share.tag).into());
    }
    // Memory the guest frees goes back to the host (free page reporting:
    // the guest's virtio_balloon hands freed 2 MiB blocks to QEMU, which
    // discards them), so a VM holds what its container uses, not its peak.
    a.push("-device".into());
    a.push("virtio-balloon-device,free-page-reporting=on".into());
    a.push("-device".into());
    a.push("virtio-serial-device".into());
    a.push("-chardev".into());
    a.push(opt("socket,id=ctl,path=", control, ""));
    a.push("-device".into());
    a.push(
        format!(
            "virtserialport,chardev=ctl,name={}",
            skiff_proto::CONTROL_PORT_NAME
        )
        .into(),
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(accel: Accel, cpus: u32) -> VmConfig {
        VmConfig {
            qemu: QemuBinary::at("/usr/bin/qemu-system-x86_64".into()),
            kernel: KernelInfo {
                release: "6.1".into(),
                vmlinux: "/k/vmlinux".into(),
                modules_dir: "/k/modules".into(),
                modules: vec![],
            },
            initramfs: "/c/initramfs.cpio".into(),
            accel,
            cpus,
            memory_mib: 512,
            disks: vec![
                Disk {
                    path: "/r/base,1.qcow2".into(),
                    format: DiskFormat::Qcow2,
                    readonly: false,
                    serial: None,
                },
                Disk {
                    path: "/r/extra.raw".into(),
                    format: DiskFormat::Raw,
                    readonly: true,
                    serial: Some("skiff-vol-0".into()),
                },
            ],
            state_dir: "/s".into(),
            extra_cmdline: vec!["foo=bar".into()],
            debug: true,
            boot_timeout: Duration::from_secs(30),
            nics: Vec::new(),
            shares: Vec::new(),
        }
    }

    fn strings(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn after<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn network_cards_find_their_fds_in_card_order() {
        let mut c = cfg(Accel::Tcg, 1);
        c.nics = vec![
            Nic {
                backend: NicBackend::TapFd(17),
                mac: "02:5f:0a:5a:00:02".into(),
            },
            Nic {
                backend: NicBackend::StreamFd(9),
                mac: "02:5f:0a:00:02:0f".into(),
            },
        ];
        assert_eq!(c.tap_fds(), [17, 9]);
        let a = strings(&vm_args(&c, Path::new("/s/control.sock")));
        assert_eq!(
            after(&a, "-netdev"),
            [
                "tap,id=net0,fd=4",
                "stream,id=net1,server=off,addr.type=fd,addr.str=5"
            ]
        );
        let devices = after(&a, "-device");
        assert!(devices.contains(&"virtio-net-device,netdev=net0,mac=02:5f:0a:5a:00:02"));
        assert!(devices.contains(&"virtio-net-device,netdev=net1,mac=02:5f:0a:00:02:0f"));
        assert!(cfg(Accel::Tcg, 1).tap_fds().is_empty());
    }

    #[test]
    fn tcg_vm_arguments() {
        let a = strings(&vm_args(&cfg(Accel::Tcg, 2), Path::new("/s/control.sock")));
        // Spelled out, not MACHINE: what QEMU must get (MACHINE's comment
        // says why each option); the boot tests show QEMU accepts it.
        assert_eq!(
            after(&a, "-M"),
            ["microvm,x-option-roms=off,isa-serial=on,rtc=on"]
        );
        assert_eq!(after(&a, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(after(&a, "-cpu"), ["max"]);
        assert_eq!(after(&a, "-m"), ["512"]);
        assert_eq!(after(&a, "-smp"), ["2"]);
        for f in ["-nodefaults", "-no-user-config", "-no-reboot"] {
            assert!(a.iter().any(|x| x == f), "{f}");
        }
        assert_eq!(after(&a, "-display"), ["none"]);
        assert_eq!(after(&a, "-kernel"), ["/k/vmlinux"]);
        assert_eq!(after(&a, "-initrd"), ["/c/initramfs.cpio"]);
        assert_eq!(
            after(&a, "-append"),
            [format!(
                "console=ttyS0 quiet panic=-1 pci=off i8042.noaux i8042.nokbd tsc=reliable no_timer_check tsc_early_khz={} skiff.debug=1 foo=bar",
                host_tsc_khz()
            )]
        );
        assert_eq!(
            after(&a, "-drive"),
            [
                "if=none,id=disk0,format=qcow2,discard=unmap,file=/r/base,,1.qcow2",
                "if=none,id=disk1,format=raw,discard=unmap,file=/r/extra.raw,readonly=on"
            ]
        );
        assert_eq!(
            after(&a, "-device"),
            [
                "virtio-blk-device,drive=disk0",
                "virtio-blk-device,drive=disk1,serial=skiff-vol-0",
                "virtio-balloon-device,free-page-reporting=on",
                "virtio-serial-device",
                "virtserialport,chardev=ctl,name=skiff.control"
            ]
        );
        assert_eq!(
            after(&a, "-chardev"),
            [
                "file,id=con,path=/s/console.log",
                "socket,id=ctl,path=/s/control.sock"
            ]
        );
        assert_eq!(after(&a, "-serial"), ["chardev:con"]);
    }

    #[test]
    fn kvm_vm_arguments() {
        let a = strings(&vm_args(&cfg(Accel::Kvm, 1), Path::new("/s/control.sock")));
        assert_eq!(after(&a, "-accel"), ["kvm"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
        assert!(
            !after(&a, "-append")[0].contains("tsc_early_khz="),
            "the TSC rate only under TCG"
        );
        let a = strings(&vm_args(&cfg(Accel::Tcg, 1), Path::new("/s/control.sock")));
        assert_eq!(after(&a, "-accel"), ["tcg"]);
    }

    #[test]
    fn option_values_escape_commas() {
        assert_eq!(opt_value(OsStr::new("a,b,,c")), OsStr::new("a,,b,,,,c"));
    }

    #[test]
    fn tsc_rate_from_cpuinfo() {
        let t = "processor\t: 0\ncpu MHz\t\t: 2445.404\nbogomips\t: 4890.80\n";
        assert_eq!(tsc_khz_from_cpuinfo(t), Some(2_445_400));
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: 3000.0\n"), Some(3_000_000));
        assert_eq!(tsc_khz_from_cpuinfo("nothing"), None);
    }

    #[test]
    fn version_line() {
        let text = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright";
        assert_eq!(parse_version(text).as_deref(), Some("7.2.22"));
        assert_eq!(parse_version("nonsense"), None);
    }
}
