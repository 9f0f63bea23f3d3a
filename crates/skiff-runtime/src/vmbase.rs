//! What every VM of this host shares: the kernel, the initramfs with
//! skiff-init, the QEMU binary and the accelerator (KVM when it really works).

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_sandbox::accel::{Accel, AccelChoice};
use skiff_sandbox::kernel::KernelInfo;
use skiff_sandbox::qemu::{Disk, DiskFormat, QemuBinary, VmConfig};

use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum VmBaseError {
    #[error("skiff-init not found: build it with scripts/build-init.sh, install it beside skiff, or set SKIFF_INIT")]
    NoInit,
    #[error("{0}")]
    Kernel(#[from] skiff_sandbox::kernel::KernelError),
    #[error("{0}")]
    Initramfs(#[from] skiff_sandbox::initramfs::InitramfsError),
    #[error("{0}")]
    Qemu(#[from] skiff_sandbox::qemu::QemuError),
}

pub struct VmBase {
    pub init: PathBuf,
    pub kernel: KernelInfo,
    /// The initramfs with the boot modules only.
    pub initramfs: PathBuf,
    pub qemu: QemuBinary,
    pub accel: AccelChoice,
    /// Where initramfs archives are cached.
    pub cache: PathBuf,
}

/// Finds or builds everything a VM needs; the accelerator probe runs at most
/// once per host boot (cached).
pub fn prepare(paths: &Paths) -> Result<VmBase, VmBaseError> {
    let init = find_init().ok_or(VmBaseError::NoInit)?;
    let kernel = skiff_sandbox::kernel::find(paths.kernels())?;
    let cache = paths.cache();
    let initramfs = skiff_sandbox::initramfs::build(&cache, &init, &kernel)?;
    let qemu = QemuBinary::find()?;
    let accel = skiff_sandbox::accel::choose(&cache, &qemu, &kernel, &initramfs);
    Ok(VmBase {
        init,
        kernel,
        initramfs,
        qemu,
        accel,
        cache,
    })
}

/// The virtio-blk serial of a container's root disk.
pub const ROOT_SERIAL: &str = "skiff-root";

/// What a container's VM has besides its root disk.
#[derive(Default)]
pub struct VmDevices {
    pub nics: Vec<skiff_sandbox::qemu::Nic>,
    /// Host directories (virtio-fs).
    pub shares: Vec<skiff_sandbox::qemu::Share>,
    /// A build step's root is an overlayfs in the guest.
    pub overlay: bool,
}

impl VmBase {
    /// The VM of the container in `dir`: its overlay as the root disk, the
    /// directory for the control socket and the VM's logs, its network cards
    /// and shared directories. The initramfs loads the drivers those need
    /// (virtio-net, virtio-fs, overlay), and only those: each module is boot time.
    pub fn config(
        &self,
        dir: &Path,
        cpus: u32,
        memory_mib: u32,
        debug: bool,
        devices: VmDevices,
    ) -> Result<VmConfig, VmBaseError> {
        let VmDevices {
            nics,
            shares,
            overlay,
        } = devices;
        let boot_timeout = std::env::var("SKIFF_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(match self.accel.accel {
                Accel::Kvm => Duration::from_secs(20),
                Accel::Tcg => Duration::from_secs(60),
            });
        let mut modules = skiff_sandbox::initramfs::BOOT_MODULES.to_vec();
        if !nics.is_empty() {
            modules.push("virtio_net");
        }
        if !shares.is_empty() {
            modules.push("virtiofs");
        }
        if overlay {
            modules.push("overlay");
        }
        let initramfs = if modules.len() == skiff_sandbox::initramfs::BOOT_MODULES.len() {
            self.initramfs.clone()
        } else {
            // Cached by content: built once per module set.
            skiff_sandbox::initramfs::build_with(&self.cache, &self.init, &self.kernel, &modules)?
        };
        Ok(VmConfig {
            qemu: self.qemu.clone(),
            kernel: self.kernel.clone(),
            initramfs,
            accel: self.accel.accel,
            cpus,
            memory_mib,
            disks: vec![Disk {
                path: dir.join("overlay.qcow2"),
                format: DiskFormat::Qcow2,
                readonly: false,
                serial: Some(ROOT_SERIAL.into()),
            }],
            state_dir: dir.to_path_buf(),
            extra_cmdline: Vec::new(),
            debug,
            boot_timeout,
            nics,
            shares,
        })
    }
}

/// Where skiff-init is: `SKIFF_INIT`, else the first *static* binary among:
/// beside the skiff binary, the build tree's target/skiff-init (written by
/// scripts/build-init.sh; a dev tree also has a dynamic target/debug/skiff-init,
/// which a guest without libc could not run), the system's lib dirs.
pub fn find_init() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_INIT") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("skiff-init"),
        dir.join("../skiff-init"),
        dir.join("../../skiff-init"),
        PathBuf::from("/usr/local/lib/skiff/skiff-init"),
        PathBuf::from("/usr/lib/skiff/skiff-init"),
    ]
    .into_iter()
    .find(|p| skiff_sandbox::kernel::elf::is_static_executable(p))
}
