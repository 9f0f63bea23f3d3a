//! skiff-init: PID 1 of every skiff guest, and the server of the control
//! protocol (`skiff_proto`).
//!
//! The service itself ([`agent::AgentService`]) runs in any process, which
//! is how it is tested on a host; [`guest`] holds what only PID 1 does.

#[macro_use]
pub mod log;

pub mod agent;
pub mod archive;
pub mod clock;
pub mod cmdline;
pub mod confinement;
pub mod container_path;
pub mod copy_up;
pub mod environment;
pub mod etc_files;
pub mod executable;
pub mod fd_io;
pub mod guest;
pub mod mount_options;
pub mod mounts;
pub mod netlink;
pub mod process;
pub mod procfs;
pub mod pty;
pub mod reaper;
pub mod session;
pub mod stdio;
pub mod users;
