//! The host <-> guest control protocol of skiff.
//!
//! skiff-init (PID 1 in the guest) serves the [`v1::agent_server::Agent`]
//! service on a virtio-serial port; the host owns the other end as a UNIX
//! socket. One HTTP/2 connection (gRPC, tonic) multiplexes every call and every
//! stdio stream. Because a virtio-serial port has no notion of a connection, a
//! short line handshake ([`session`]) runs first so that each side knows the
//! bytes that follow belong to this session and not to an earlier owner.

pub mod session;
mod transport;

pub use transport::{connect, serve};

/// Generated messages, client and server of `skiff.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("skiff.v1");
}

/// Bumped when a host must refuse an agent of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The virtio-serial port name the guest looks for
/// (/sys/class/virtio-ports/*/name).
pub const CONTROL_PORT_NAME: &str = "skiff.control";

/// Kernel command line flag that makes skiff-init log to the console.
pub const CMDLINE_DEBUG: &str = "skiff.debug=1";

/// Kernel command line flag for the accelerator probe: skiff-init prints
/// [`PROBE_OK_MARKER`] on the console and powers off at once.
pub const CMDLINE_PROBE: &str = "skiff.probe=1";

/// What skiff-init prints (on a line of its own) when booted with
/// [`CMDLINE_PROBE`].
pub const PROBE_OK_MARKER: &str = "SKIFF-PROBE-OK";

/// Where the initramfs keeps kernel modules, and the file listing them in
/// load order (one path per line, relative to the directory).
pub const INITRAMFS_MODULES_DIR: &str = "/lib/modules/skiff";
pub const INITRAMFS_MODULES_ORDER: &str = "/lib/modules/skiff/order";

/// How the host names a disk to skiff-init: this prefix and the disk's
/// virtio-blk serial (udev's path; the guest has no udev, skiff-init finds
/// the serial in /sys/block).
pub const DISK_BY_SERIAL: &str = "/dev/disk/by-id/virtio-";
