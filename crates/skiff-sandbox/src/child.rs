//! What every QEMU child gets between fork and exec, so that no QEMU outlives
//! the process that owns it.

use std::io;
use std::os::fd::RawFd;

/// The fd number at which a child finds the state directory when the control
/// socket is reached through `/proc/self/fd/<n>/` (see [`crate::control`]).
pub const STATE_DIR_FD: RawFd = 3;

/// The fd number of the first network card's tap or stream socket; the next
/// card's is one more.
pub const FIRST_NIC_FD: RawFd = 4;

/// Where inherited fds are parked between their two dup2s, above anything
/// the targets could be.
const PARK_FD: RawFd = 64;

/// Returns the pre_exec hook: SIGKILL when the spawning thread dies
/// (PR_SET_PDEATHSIG), exit at once if the parent already died before the
/// prctl took effect, and put `keep_fd` (if any) at [`STATE_DIR_FD`] and each
/// of `nic_fds` at [`FIRST_NIC_FD`] onwards, without close-on-exec.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not
/// the process. Callers must spawn from a thread that lives as long as the VM
/// (the main thread or a runtime worker that is never retired), never from
/// `spawn_blocking`, whose threads exit when idle.
pub fn pre_exec_hook(
    keep_fd: Option<RawFd>,
    nic_fds: Vec<RawFd>,
) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let mut die_with_parent = skiff_util::child::die_with_parent();
    // (source, target) pairs, made before the fork: the child allocates nothing.
    let mut moves: Vec<(RawFd, RawFd)> = Vec::with_capacity(1 + nic_fds.len());
    if let Some(fd) = keep_fd {
        moves.push((fd, STATE_DIR_FD));
    }
    for (i, fd) in nic_fds.into_iter().enumerate() {
        moves.push((fd, FIRST_NIC_FD + i as RawFd));
    }
    move || {
        // Only async-signal-safe calls from here on: we are in the forked child.
        die_with_parent()?;
        // Park every source first, so that no target overwrites a source
        // still to be moved.
        for (i, (from, _)) in moves.iter().enumerate() {
            skiff_util::child::keep_fd_at(*from, PARK_FD + i as RawFd)?;
        }
        for (i, (_, to)) in moves.iter().enumerate() {
            skiff_util::child::keep_fd_at(PARK_FD + i as RawFd, *to)?;
        }
        Ok(())
    }
}
