//! The pipe over which a starting monitor tells the command that started it
//! how far it got: one JSON line per step. The starter keeps its end open
//! while it wants the container; the monitor sees it close.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "ready", rename_all = "snake_case")]
pub enum ReadyMsg {
    /// The monitor holds the container's lock: it is the one.
    Locked {
        monitor_pid: u32,
    },
    /// The process is created; the monitor waits for its owner to attach.
    Waiting,
    Started {
        pid: u32,
    },
    Failed {
        message: String,
        exit_code: i32,
    },
}

/// The monitor's end.
pub struct ReadyWriter {
    file: Option<std::fs::File>,
    /// A write failed: the starter is gone (killed while the VM booted).
    starter_gone: bool,
}

impl ReadyWriter {
    pub fn new(fd: Option<OwnedFd>) -> Self {
        Self {
            file: fd.map(std::fs::File::from),
            starter_gone: false,
        }
    }

    /// Sends `msg`; false if nobody listens any more.
    pub fn send(&mut self, msg: &ReadyMsg) -> bool {
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        let mut line = serde_json::to_vec(msg).unwrap_or_default();
        line.push(b'\n');
        if f.write_all(&line).is_err() {
            self.file = None;
            self.starter_gone = true;
            return false;
        }
        true
    }

    /// Done reporting: the starter sees the end of the pipe.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Resolves when the starter's end closes (it exited, or gave up).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let fd = self
            .file
            .as_ref()
            .and_then(|f| f.as_fd().try_clone_to_owned().ok());
        let gone = self.starter_gone;
        async move {
            let Some(fd) = fd else {
                // A starter whose pipe broke will never attach.
                if gone {
                    return;
                }
                return std::future::pending().await;
            };
            // A pipe's writer sees POLLERR once the reader is gone.
            let _ = tokio::task::spawn_blocking(move || loop {
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::empty(),
                )];
                match rustix::event::poll(&mut fds, None) {
                    Ok(_) if !fds[0].revents().is_empty() => return,
                    Err(rustix::io::Errno::INTR) | Ok(_) => continue,
                    Err(_) => return,
                }
            })
            .await;
        }
    }
}

/// Reads the messages of `r` until the one that ends a start (or the end of
/// the pipe: `None`). `on_locked` runs when the monitor holds its lock.
pub fn read_until_settled(
    r: &mut impl BufRead,
    on_locked: &mut dyn FnMut(u32),
) -> std::io::Result<Option<ReadyMsg>> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        match serde_json::from_str::<ReadyMsg>(line.trim_end()) {
            Ok(ReadyMsg::Locked { monitor_pid }) => on_locked(monitor_pid),
            Ok(m) => return Ok(Some(m)),
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the monitor said {line:?}: {e}"),
                ))
            }
        }
    }
}
