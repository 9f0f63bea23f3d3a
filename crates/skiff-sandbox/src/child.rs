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

/// At most this many fds are handed on (the state directory and the cards).
const MAX_MOVES: usize = 16;

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
    let mut moves = [(-1 as RawFd, -1 as RawFd); MAX_MOVES];
    let mut n = 0;
    for (from, to) in keep_fd
        .map(|fd| (fd, STATE_DIR_FD))
        .into_iter()
        .chain(
            nic_fds
                .into_iter()
                .enumerate()
                .map(|(i, fd)| (fd, FIRST_NIC_FD + i as RawFd)),
        )
        .take(MAX_MOVES)
    {
        moves[n] = (from, to);
        n += 1;
    }
    // Parked copies go above every source and target, so that no target
    // overwrites a source still to be moved; they close at exec.
    let park_at = moves[..n].iter().map(|&(a, b)| a.max(b)).max().unwrap_or(0) + 1;
    move || {
        // Only async-signal-safe calls from here on: we are in the forked child.
        die_with_parent()?;
        let mut parked = [-1 as RawFd; MAX_MOVES];
        for i in 0..n {
            parked[i] = skiff_util::child::dup_above(moves[i].0, park_at)?;
        }
        for i in 0..n {
            skiff_util::child::keep_fd_at(parked[i], moves[i].1)?;
        }
        Ok(())
    }
}
