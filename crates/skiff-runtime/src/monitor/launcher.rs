//! How the monitor gets a sandbox for the container: the seam between the
//! container's life (the monitor) and what runs it (a QEMU micro-VM today; the
//! namespace backend and in-memory test sandboxes behind the same trait).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use skiff_sandbox::Sandbox;

use crate::agent::{Agent, RootSetup};
use crate::container::config::ContainerConfig;
use crate::vmbase::{self, VmBase};
use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("preparing the VM: {0}")]
    Prepare(#[from] vmbase::VmBaseError),
    #[error("starting the VM: {0}")]
    Boot(#[from] skiff_sandbox::VmError),
    #[error("{0}")]
    Setup(#[from] crate::agent::AgentError),
}

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Sandbox>, LaunchError>> + 'a>>;

/// Starts a sandbox with the container's root set up in it, ready for its
/// processes.
pub trait Launcher {
    fn launch<'a>(&'a self, config: &'a ContainerConfig, dir: &'a Path) -> LaunchFuture<'a>;
}

/// A QEMU micro-VM with the container's overlay as its root disk.
pub struct VmLauncher {
    paths: Paths,
    debug: bool,
    /// Kernel, initramfs, QEMU and accelerator: found once per monitor.
    base: std::cell::OnceCell<VmBase>,
}

impl VmLauncher {
    pub fn new(paths: &Paths, debug: bool) -> Self {
        Self {
            paths: paths.clone(),
            debug,
            base: std::cell::OnceCell::new(),
        }
    }

    fn base(&self) -> Result<&VmBase, LaunchError> {
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let b = vmbase::prepare(&self.paths)?;
        tracing::debug!(
            "accelerator: {} ({})",
            b.accel.accel.as_str(),
            b.accel.reason
        );
        Ok(self.base.get_or_init(|| b))
    }
}

impl Launcher for VmLauncher {
    fn launch<'a>(&'a self, config: &'a ContainerConfig, dir: &'a Path) -> LaunchFuture<'a> {
        Box::pin(async move {
            let base = self.base()?;
            let vm_config = base.config(dir, config.cpus, config.memory_mib, self.debug);
            let vm = skiff_sandbox::RunningVm::boot(vm_config).await?;
            let agent = Agent::new(vm.agent());
            agent
                .setup_root(&RootSetup {
                    // The overlay is the VM's first (and only) disk.
                    device: "/dev/vda".into(),
                    fstype: "ext4".into(),
                    readonly: false,
                    hostname: config.hostname.clone(),
                })
                .await?;
            Ok(Box::new(vm) as Box<dyn Sandbox>)
        })
    }
}
