//! Containers: the cached base filesystem of an image, the per-container
//! writable overlay and state directory, the process merged from the image
//! config and the user's overrides, and each container's monitor, which runs
//! it in a sandbox and answers the commands that come later.

/// The one adapter to skiff-init's gRPC service, in the runtime's own types.
pub mod agent;
/// Containers and the operations on them, one file each.
pub mod container;
/// The process to run: image config merged with the command line.
pub mod image_config;
/// Container logs: docker's json-file format, rotated, followed.
pub mod logs;
/// The per-container monitor process and its socket protocol.
pub mod monitor;
/// Networks: bridges, taps, addresses, NAT, published ports, names.
pub mod network;
/// qcow2 overlays over a base image.
pub mod overlay;
/// Where things live under the store root.
pub mod paths;
/// `system reset`: everything in the store goes, nothing stays on the host.
pub mod reset;
/// The cached base ext4 of an image.
pub mod rootfs;
/// Capabilities and seccomp: the confinement policy, decided on the host.
pub mod security;
/// Host directories shared into containers (virtiofsd).
pub mod share;
/// Signal names and numbers.
pub mod signal;
/// RFC 3339 timestamps.
pub mod time;
/// What every VM of this host shares: kernel, initramfs, QEMU, accelerator.
pub mod vmbase;
/// Named volumes: sparse ext4 images attached as disks.
pub mod volume;

pub use paths::Paths;
