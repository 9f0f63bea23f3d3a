//! Steps for a child process between fork and exec (`Command::pre_exec`).
//! Each makes only async-signal-safe system calls.

use std::io;
use std::os::fd::RawFd;

/// Makes `fd` available to the program as `at`, without close-on-exec.
///
/// Call only in a forked child before exec (`pre_exec`), with `fd` open.
pub fn keep_fd_at(fd: RawFd, at: RawFd) -> io::Result<()> {
    // SAFETY: fcntl and dup2 on descriptor numbers: no memory is touched, and
    // both are async-signal-safe.
    let ok = unsafe {
        if fd == at {
            libc::fcntl(fd, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(fd, at) >= 0
        }
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A close-on-exec copy of `fd` numbered `min` or above (to move fds out of
/// the way of others before they are put at fixed numbers).
///
/// Async-signal-safe: fine in a forked child before exec.
pub fn dup_above(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl on descriptor numbers; no memory is touched.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Returns a pre_exec step: SIGKILL when the spawning *thread* dies
/// (PR_SET_PDEATHSIG), and exit at once if the parent died before the prctl
/// took effect. Spawn from a thread that lives as long as the child.
pub fn die_with_parent() -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let parent = std::process::id() as libc::pid_t;
    move || {
        // SAFETY: plain syscalls with constant arguments; async-signal-safe.
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
        Ok(())
    }
}

/// Starts a new session (no controlling terminal: the terminal's signals and
/// hang-up do not reach the child).
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and is async-signal-safe.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    #[test]
    fn the_child_finds_the_fd_and_its_own_session() {
        let (r, w) = std::io::pipe().unwrap();
        let raw = w.as_raw_fd();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "echo from-fd-5 >&5; ps -o sid= -p $$ >&5"]);
        // SAFETY: the hook makes only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                super::new_session()?;
                super::keep_fd_at(raw, 5)
            });
        }
        let mut child = cmd.spawn().unwrap();
        drop(w);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut &r, &mut out).unwrap();
        child.wait().unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("from-fd-5"));
        let sid: u32 = lines.next().unwrap().trim().parse().unwrap();
        assert_eq!(sid, child.id(), "the child leads a session of its own");
    }
}
