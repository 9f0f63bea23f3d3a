//! One real boot of skiff-init as PID 1 under QEMU (TCG): modules, control
//! port, switch root, a process, shutdown. Ignored by default (it needs a
//! Debian cloud kernel tree and takes a while); the VM test suite proper
//! lives with the sandbox. Run with
//! `SKIFF_SMOKE_KERNEL_TREE=/path/with/boot+lib cargo test -p skiff-init --test vm_smoke -- --ignored`
//! after scripts/build-init.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_proto::session::host_handshake;
use skiff_proto::v1::{
    ContainerSetup, HelloRequest, Interface, NetworkConfig, ProcessRef, ProcessSpec,
    ShutdownRequest, StdinChunk,
};
use tokio_stream::wrappers::ReceiverStream;

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

#[tokio::test]
#[ignore = "boots a VM; needs SKIFF_SMOKE_KERNEL_TREE"]
async fn boots_serves_and_powers_off() {
    let tree =
        PathBuf::from(std::env::var("SKIFF_SMOKE_KERNEL_TREE").expect("SKIFF_SMOKE_KERNEL_TREE"));
    let kernel = std::fs::read_dir(tree.join("boot"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz")
        })
        .expect("boot/vmlinuz-*");
    let release = kernel
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_owned();
    let mods = tree
        .join("lib/modules")
        .join(&release)
        .join("kernel/drivers");
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/skiff-init");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // initramfs: /init, /dev/console, the virtio modules in order.
    let ird = d.join("initrd");
    std::fs::create_dir_all(ird.join("dev")).unwrap();
    std::fs::create_dir_all(ird.join("lib/modules/skiff")).unwrap();
    std::fs::copy(&init, ird.join("init")).unwrap();
    let order = [
        "virtio/virtio_ring.ko",
        "virtio/virtio.ko",
        "virtio/virtio_mmio.ko",
        "char/virtio_console.ko",
        "block/virtio_blk.ko",
    ];
    let mut list = String::new();
    for m in order {
        let name = Path::new(m).file_name().unwrap();
        std::fs::copy(mods.join(m), ird.join("lib/modules/skiff").join(name)).unwrap();
        list.push_str(&format!("{}\n", name.to_string_lossy()));
    }
    std::fs::write(ird.join("lib/modules/skiff/order"), list).unwrap();
    sh(&format!(
        "cd {} && mknod dev/console c 5 1 && find . | cpio -o -H newc --quiet | gzip > {}/initrd.gz",
        ird.display(),
        d.display()
    ));
    // rootfs: busybox and nothing else (no /proc, /sys, /dev, /etc).
    let root = d.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    for app in ["sh", "cat", "ls", "hostname", "mount", "test"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    sh(&format!(
        "mke2fs -q -t ext4 -d {} {}/root.ext4 64M",
        root.display(),
        d.display()
    ));

    let khz = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("bogomips"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(2_000_000, |b| (b * 500.0) as u64);
    let sock = d.join("control.sock");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-accel", "tcg", "-m", "256"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}/console.log", d.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(d.join("initrd.gz"))
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 pci=off i8042.noaux i8042.nokbd tsc=reliable no_timer_check tsc_early_khz={khz} skiff.debug=1"
        ))
        .arg("-drive")
        .arg(format!("id=root,file={}/root.ext4,format=raw,if=none", d.display()))
        .args(["-device", "virtio-blk-device,drive=root"])
        .args(["-device", "virtio-serial-device"])
        .arg("-chardev")
        .arg(format!("socket,id=ctl,path={},server=on,wait=off", sock.display()))
        .args(["-device", "virtserialport,chardev=ctl,name=skiff.control"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    while !sock.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut io = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let console = || std::fs::read_to_string(d.join("console.log")).unwrap_or_default();
    if let Err(e) = tokio::time::timeout(Duration::from_secs(120), host_handshake(&mut io, "smoke"))
        .await
        .expect("handshake")
    {
        let _ = qemu.kill();
        panic!("handshake: {e}\n--- console\n{}", console());
    }
    let mut c = skiff_proto::connect(io).await.unwrap();
    let hello = c
        .hello(HelloRequest {
            protocol_version: 1,
            session_id: "smoke".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hello.kernel_release, release);
    assert!(hello.init_started_us > 0 && hello.agent_ready_us >= hello.init_started_us);
    let net = NetworkConfig {
        interfaces: vec![Interface {
            name: "lo".into(),
            ..Default::default()
        }],
        routes: vec![],
    };
    c.configure_network(net).await.unwrap();
    c.setup_container(ContainerSetup {
        rootfs_device: "/dev/vda".into(),
        rootfs_fstype: "ext4".into(),
        hostname: "smoke".into(),
        nameservers: vec!["10.0.2.3".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let script = "hostname; cat /etc/hosts /etc/resolv.conf; ls /; test -e /init && echo INIT-VISIBLE; ls /dev/pts >/dev/null && echo PTS; exit 5";
    c.create_process(ProcessSpec {
        id: "main".into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(StdinChunk {
        id: "main".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut out = c.stdio(ReceiverStream::new(rx)).await.unwrap().into_inner();
    c.start_process(ProcessRef { id: "main".into() })
        .await
        .unwrap();
    let mut text = Vec::new();
    while let Some(chunk) = out.message().await.unwrap() {
        text.extend(chunk.data);
    }
    let text = String::from_utf8_lossy(&text);
    let st = c
        .wait(ProcessRef { id: "main".into() })
        .await
        .unwrap()
        .into_inner();
    c.shutdown(ShutdownRequest { grace_ms: 100 }).await.unwrap();
    let exited = tokio::task::spawn_blocking(move || qemu.wait())
        .await
        .unwrap()
        .unwrap();
    let console = std::fs::read_to_string(d.join("console.log")).unwrap_or_default();
    println!("--- process output\n{text}\n--- console\n{console}");
    assert_eq!(st.exit_code, 5);
    assert!(
        text.starts_with("smoke\n127.0.0.1\tlocalhost smoke\n"),
        "{text}"
    );
    assert!(text.contains("nameserver 10.0.2.3"), "{text}");
    assert!(text.contains("proc") && text.contains("PTS"), "{text}");
    assert!(!text.contains("INIT-VISIBLE"), "{text}");
    assert!(exited.success(), "qemu: {exited}");
}
