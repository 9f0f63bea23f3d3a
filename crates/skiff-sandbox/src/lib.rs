//! Where a container runs.
//!
//! The `vm` backend boots a QEMU microvm (`-M microvm`) with the guest kernel
//! ([`kernel`]) and an initramfs holding skiff-init and the modules it loads
//! ([`initramfs`]), on KVM when it works and TCG otherwise ([`accel`]), and
//! talks to skiff-init over the control channel ([`skiff_proto`]). Whatever
//! the backend, the runtime sees a [`Sandbox`]: an Agent client and a way to
//! stop it.

pub mod accel;
mod child;
mod control;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod vm;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use accel::{Accel, AccelChoice};
pub use kernel::{KernelInfo, KernelSource};
pub use qemu::{Disk, DiskFormat, QemuBinary, VmConfig};
pub use skiff_proto::v1::agent_client::AgentClient;
pub use tonic::transport::Channel;
pub use vm::{BootTimings, RunningVm, VmError};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Vm(#[from] VmError),
}

/// A running sandbox with skiff-init answering in it. Dropping it kills
/// whatever runs it.
pub trait Sandbox: Send {
    /// A client of skiff-init (cheap to clone).
    fn agent(&self) -> AgentClient<Channel>;
    /// Stops everything inside (`grace` between SIGTERM and SIGKILL) and ends
    /// the sandbox; it is gone when the future completes, even on error.
    fn shutdown(
        self: Box<Self>,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), SandboxError>> + Send>>;
    /// Ends the sandbox now, without asking.
    fn kill(&mut self);
    /// The host process that runs it (QEMU), for its memory use.
    fn host_pid(&self) -> Option<u32> {
        None
    }
    /// Where the start-up time went.
    fn boot_timings(&self) -> BootTimings {
        BootTimings::default()
    }
}

impl Sandbox for RunningVm {
    fn agent(&self) -> AgentClient<Channel> {
        RunningVm::agent(self)
    }
    fn shutdown(
        self: Box<Self>,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), SandboxError>> + Send>> {
        Box::pin(async move { Ok(RunningVm::shutdown(*self, grace).await?) })
    }
    fn kill(&mut self) {
        RunningVm::kill(self)
    }
    fn host_pid(&self) -> Option<u32> {
        Some(self.pid())
    }
    fn boot_timings(&self) -> BootTimings {
        self.timings()
    }
}
