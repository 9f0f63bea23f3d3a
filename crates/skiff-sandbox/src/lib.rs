//! Where a container runs. The `vm` backend boots a QEMU microvm with the
//! guest kernel and an initramfs holding skiff-init, and talks to skiff-init
//! over the control channel (skiff-proto).

pub mod kernel;
