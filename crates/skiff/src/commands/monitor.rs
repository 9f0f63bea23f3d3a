//! `skiff __monitor DIR`: the container's monitor (hidden; `start` runs it).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use clap::Args;
use skiff_runtime::container::READY_FD;
use skiff_runtime::monitor::{self, launcher::VmLauncher, MonitorOptions};

use super::Context;

#[derive(Args)]
pub struct MonitorArgs {
    /// The container's directory.
    pub dir: PathBuf,
    /// Create the process, then wait for the owner's attach to start it.
    #[arg(long)]
    pub wait_for_owner: bool,
}

pub fn monitor(ctx: &Context, a: MonitorArgs, debug: bool) -> anyhow::Result<()> {
    let launcher = VmLauncher::new(&ctx.paths(), debug);
    monitor::run(
        &a.dir,
        &launcher,
        ready_pipe(),
        MonitorOptions {
            wait_for_owner: a.wait_for_owner,
        },
    )?;
    Ok(())
}

/// The write end of the starter's pipe at [`READY_FD`], if that fd is a pipe
/// (run by hand, there is none).
fn ready_pipe() -> Option<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(format!("/proc/self/fd/{READY_FD}")).ok()?;
    if !meta.file_type().is_fifo() {
        return None;
    }
    // SAFETY: READY_FD is open (/proc shows it), is the pipe the starter put
    // there for us, and nothing else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(READY_FD) };
    // The monitor's children (QEMU, passt, nft) must not hold the starter's
    // pipe open.
    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
    Some(fd)
}
