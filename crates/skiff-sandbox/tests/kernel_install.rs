//! Installs the real Debian cloud kernel (apt-get download, ~30 MB) and
//! checks what skiff-init will be given.

mod common;

use skiff_sandbox::kernel::{self, KernelSource};

#[test]
fn installs_debian_cloud_kernel() {
    let _lock = common::lock_kernels();
    let dir = common::kernels_dir();
    let started = std::time::Instant::now();
    let k = kernel::install(&dir, KernelSource::Apt).expect("kernel install from apt");
    eprintln!("installed {} in {:?}", k.release, started.elapsed());

    let vmlinux = std::fs::read(&k.vmlinux).unwrap();
    kernel::check_vmlinux(&vmlinux, &k.vmlinux)
        .expect("vmlinux is an x86-64 ELF with the PVH note");

    let pos = |m: &str| {
        k.modules
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} not in {:?}", k.modules))
    };
    // 6.1: virtio depends on virtio_ring; both come before the transport.
    assert!(pos("virtio_ring.ko") < pos("virtio.ko"));
    assert!(pos("virtio_ring.ko") < pos("virtio_mmio.ko"));
    assert!(pos("virtio.ko") < pos("virtio_mmio.ko"));
    // Debian's cloud kernel has no 9p at all (CONFIG_NET_9P unset): volumes
    // need virtiofs there, so it comes along too.
    for m in [
        "virtio_blk.ko",
        "virtio_console.ko",
        "virtio_net.ko",
        "virtio-rng.ko",
        "overlay.ko",
        "vmw_vsock_virtio_transport.ko",
        "vsock.ko",
        "fuse.ko",
        "virtiofs.ko",
    ] {
        assert!(k.modules_dir.join(m).is_file(), "{m} missing");
        pos(m);
    }
    let order = std::fs::read_to_string(dir.join(&k.release).join("modules.order")).unwrap();
    assert_eq!(order.lines().collect::<Vec<_>>(), k.modules);

    // A failed install says why and leaves the installed kernel in use.
    let err = kernel::install(&dir, KernelSource::Dir("/nonexistent".into()))
        .expect_err("no kernel in /nonexistent");
    assert_eq!(
        err.to_string(),
        "/nonexistent has no boot/vmlinuz-<release> with a matching lib/modules/<release>; give the root of an unpacked linux-image package"
    );
    assert_eq!(kernel::find(&dir).unwrap(), k);
}
