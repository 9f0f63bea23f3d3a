//! What every QEMU child gets between fork and exec, so that no QEMU outlives
//! the process that owns it.

use std::io;
use std::os::fd::RawFd;

/// The fd number at which a child finds the state directory when the control
/// socket is reached through `/proc/self/fd/<n>/` (see [`crate::control`]).
pub const STATE_DIR_FD: RawFd = 3;

/// Returns the pre_exec hook: SIGKILL when the spawning thread dies
/// (PR_SET_PDEATHSIG), exit at once if the parent already died before the
/// prctl took effect, and put `keep_fd` (if any) at [`STATE_DIR_FD`] without
/// close-on-exec.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not
/// the process. Callers must spawn from a thread that lives as long as the VM
/// (the main thread or a runtime worker that is never retired), never from
/// `spawn_blocking`, whose threads exit when idle.
pub fn pre_exec_hook(
    keep_fd: Option<RawFd>,
) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let parent = std::process::id() as libc::pid_t;
    move || {
        // Only async-signal-safe calls from here on: we are in the forked child.
        // SAFETY: plain syscalls with constant arguments.
        unsafe {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        if let Some(fd) = keep_fd {
            skiff_util::child::keep_fd_at(fd, STATE_DIR_FD)?;
        }
        Ok(())
    }
}
