//! The host terminal for `run -t`: raw mode while the container owns it,
//! restored on every way out that runs destructors (normal exit, errors,
//! panics, forwarded signals), and its size.

use std::os::fd::BorrowedFd;

use rustix::termios::{self, OptionalActions, Termios};

/// Puts the terminal on `fd` in raw mode until dropped.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    pub fn enable(fd: BorrowedFd<'static>) -> std::io::Result<Self> {
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Now, not Flush: keys typed while the VM boots still reach the container.
        termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(Self { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

/// (rows, cols) of skiff's terminal: stdout's, else stdin's.
pub fn host_size() -> Option<(u16, u16)> {
    size(rustix::stdio::stdout()).or_else(|| size(rustix::stdio::stdin()))
}

/// (rows, cols) of the terminal on `fd`, if it is one.
pub fn size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let ws = termios::tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
