//! Pseudo-terminals for processes with `terminal: true`.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

pub struct Pty {
    /// Non-blocking, for the relay.
    pub master: OwnedFd,
    /// Becomes the process's stdin, stdout and stderr.
    pub slave: OwnedFd,
}

/// openpty(3) without libc: /dev/ptmx, grant, unlock, open the slave by name.
pub fn open(rows: u16, cols: u16) -> io::Result<Pty> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rows > 0 && cols > 0 {
        set_size(&master, rows, cols)?;
    }
    let flags = rustix::fs::fcntl_getfl(&master)?;
    rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    Ok(Pty { master, slave })
}

/// TIOCSWINSZ; the kernel sends SIGWINCH to the terminal's foreground group.
pub fn set_size(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        master,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}
