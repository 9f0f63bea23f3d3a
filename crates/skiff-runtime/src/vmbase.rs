//! What every VM of this host shares: the kernel, the initramfs with
//! skiff-init, the QEMU binary and the accelerator (KVM when it really works).

use std::path::PathBuf;
use std::time::Duration;

use skiff_sandbox::accel::{Accel, AccelChoice};
use skiff_sandbox::kernel::KernelInfo;
use skiff_sandbox::qemu::{Disk, DiskFormat, QemuBinary, VmConfig};

use crate::container::ContainerDir;
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
    pub initramfs: PathBuf,
    pub qemu: QemuBinary,
    pub accel: AccelChoice,
}

/// Finds or builds everything a VM needs; the accelerator probe runs at most
/// once per host boot (cached).
pub fn prepare(paths: &Paths) -> Result<VmBase, VmBaseError> {
    let init = crate::run::find_init().ok_or(VmBaseError::NoInit)?;
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
    })
}

impl VmBase {
    /// The VM of one container: its overlay as the root disk, its state dir
    /// for the control socket and logs.
    pub fn config(&self, dir: &ContainerDir, cpus: u32, memory_mib: u32, debug: bool) -> VmConfig {
        let boot_timeout = std::env::var("SKIFF_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(match self.accel.accel {
                Accel::Kvm => Duration::from_secs(20),
                Accel::Tcg => Duration::from_secs(60),
            });
        VmConfig {
            qemu: self.qemu.clone(),
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            accel: self.accel.accel,
            cpus,
            memory_mib,
            disks: vec![Disk {
                path: dir.overlay(),
                format: DiskFormat::Qcow2,
                readonly: false,
            }],
            state_dir: dir.path.clone(),
            extra_cmdline: Vec::new(),
            debug,
            boot_timeout,
        }
    }
}
