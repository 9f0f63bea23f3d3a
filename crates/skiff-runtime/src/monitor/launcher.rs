//! How the monitor gets a sandbox for the container: the seam between the
//! container's life (the monitor) and what runs it (a QEMU micro-VM today; the
//! namespace backend and in-memory test sandboxes behind the same trait).

use skiff_proto::DISK_BY_SERIAL;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::Pin;

use skiff_sandbox::Sandbox;

use crate::agent::{Agent, GuestInterface, GuestMount, GuestNetwork, RootSetup};
use crate::container::config::ContainerConfig;
use crate::network::Link;
use crate::vmbase::{self, VmBase};
use crate::Paths;
use skiff_sandbox::qemu::NicBackend;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("preparing the VM: {0}")]
    Prepare(#[from] vmbase::VmBaseError),
    #[error("starting the VM: {0}")]
    Boot(#[from] skiff_sandbox::VmError),
    #[error("{0}")]
    Setup(#[from] crate::agent::AgentError),
    #[error("{0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("{0}")]
    Share(#[from] crate::share::ShareError),
    #[error("{0}")]
    Volume(#[from] crate::volume::VolumeError),
    #[error("the container's security settings")]
    Security(#[from] crate::container::security_config::BadSecurity),
    #[error("making the disk for a build step's changes")]
    ChangesDisk(#[source] crate::rootfs::RootfsError),
}

/// A build step's upper-directory disk, in the container's directory.
const CHANGES_DISK: &str = "changes.ext4";
/// Its virtio-blk serial.
const CHANGES_SERIAL: &str = "skiff-changes";

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Sandbox>, LaunchError>> + 'a>>;

/// Starts a sandbox with the container's root set up in it, ready for its
/// processes.
pub trait Launcher {
    fn launch<'a>(&'a self, config: &'a ContainerConfig, dir: &'a Path) -> LaunchFuture<'a>;
}

/// A QEMU micro-VM with the container's overlay as its root disk.
pub struct VmLauncher {
    paths: Paths,
    debug: bool,
    /// Kernel, initramfs, QEMU and accelerator: found once per monitor.
    base: std::cell::OnceCell<VmBase>,
}

impl VmLauncher {
    pub fn new(paths: &Paths, debug: bool) -> Self {
        Self {
            paths: paths.clone(),
            debug,
            base: std::cell::OnceCell::new(),
        }
    }

    fn base(&self) -> Result<&VmBase, LaunchError> {
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let b = vmbase::prepare(&self.paths)?;
        tracing::debug!(
            "accelerator: {} ({})",
            b.accel.accel.as_str(),
            b.accel.reason
        );
        Ok(self.base.get_or_init(|| b))
    }
}

impl Launcher for VmLauncher {
    fn launch<'a>(&'a self, config: &'a ContainerConfig, dir: &'a Path) -> LaunchFuture<'a> {
        Box::pin(async move {
            let base = self.base()?;
            // Each volume is held for this container while its VM lives;
            // first, so that a volume in use fails before anything is made.
            let claims = config
                .volumes
                .iter()
                .map(|v| crate::volume::claim(&self.paths, &v.name, &config.id))
                .collect::<Result<Vec<_>, _>>()?;
            let attached =
                crate::network::attach(&self.paths, dir, &config.id, &config.name, &config.network)
                    .await?;
            let nics = attached
                .iter()
                .map(|a| skiff_sandbox::qemu::Nic {
                    backend: match &a.link {
                        Link::Tap(fd) => NicBackend::TapFd(fd.as_raw_fd()),
                        Link::Passt { socket, .. } => NicBackend::StreamFd(socket.as_raw_fd()),
                    },
                    mac: a.mac.clone(),
                })
                .collect();
            // One virtiofsd per host directory, before the VM (QEMU connects
            // to them as it starts).
            let mut shares = Vec::new();
            for (i, b) in config.binds.iter().enumerate() {
                shares.push(crate::share::start(dir, i, b)?);
            }
            let share_fds = shares
                .iter()
                .map(|s| skiff_sandbox::qemu::Share {
                    fd: s.qemu_end.as_raw_fd(),
                    tag: s.tag.clone(),
                })
                .collect();
            let mut vm_config = base.config(
                dir,
                config.cpus,
                config.memory_mib,
                self.debug,
                vmbase::VmDevices {
                    nics,
                    shares: share_fds,
                    overlay: config.changes_to.is_some(),
                },
            )?;
            // A build step's overlay upper directory: an empty ext4 as big
            // as a volume (sparse, so it costs what the step writes).
            let changes_device = if config.changes_to.is_some() {
                let disk = dir.join(CHANGES_DISK);
                crate::rootfs::write_empty(&disk, crate::volume::DEFAULT_SIZE, "changes")
                    .map_err(LaunchError::ChangesDisk)?;
                vm_config.disks.push(skiff_sandbox::qemu::Disk {
                    path: disk,
                    format: skiff_sandbox::qemu::DiskFormat::Raw,
                    readonly: false,
                    serial: Some(CHANGES_SERIAL.into()),
                });
                Some(format!("{DISK_BY_SERIAL}{CHANGES_SERIAL}"))
            } else {
                None
            };
            for ((i, v), claim) in config.volumes.iter().enumerate().zip(&claims) {
                vm_config.disks.push(skiff_sandbox::qemu::Disk {
                    path: claim.volume.disk(),
                    format: skiff_sandbox::qemu::DiskFormat::Raw,
                    readonly: v.readonly,
                    serial: Some(volume_serial(i)),
                });
            }
            let mut mounts: Vec<GuestMount> = config
                .tmpfs
                .iter()
                .map(|t| GuestMount {
                    source: "tmpfs".into(),
                    target: t.target.clone(),
                    fstype: "tmpfs".into(),
                    options: t.options.clone(),
                    copy_up: false,
                })
                .collect();
            for (b, s) in config.binds.iter().zip(&shares) {
                mounts.push(GuestMount {
                    source: s.tag.clone(),
                    target: b.target.clone(),
                    fstype: "virtiofs".into(),
                    options: if b.readonly {
                        vec!["ro".into()]
                    } else {
                        Vec::new()
                    },
                    copy_up: false,
                });
            }
            for (i, v) in config.volumes.iter().enumerate() {
                mounts.push(GuestMount {
                    source: format!("{DISK_BY_SERIAL}{}", volume_serial(i)),
                    target: v.target.clone(),
                    fstype: "ext4".into(),
                    // A read-only disk cannot replay a journal: none is read.
                    options: if v.readonly {
                        vec!["ro".into(), "noload".into()]
                    } else {
                        Vec::new()
                    },
                    // docker copies the image's files into an empty volume;
                    // a read-only one cannot receive them.
                    copy_up: !v.readonly && !v.nocopy,
                });
            }
            // Before the boot: a profile that no longer compiles costs no VM.
            let security = config.security.guest()?;
            let vm = skiff_sandbox::RunningVm::boot(vm_config).await?;
            let agent = Agent::new(vm.agent());
            let net = &config.network;
            agent
                .configure_network(&GuestNetwork {
                    eth0: attached.as_ref().map(|a| GuestInterface {
                        mac: a.mac.clone(),
                        cidr: format!("{}/{}", a.ip, a.prefix),
                        mtu: a.mtu,
                        // An internal network has no way out: no default route.
                        gateway: (!a.internal).then(|| a.gateway.to_string()),
                    }),
                })
                .await?;
            let mut hosts = Vec::new();
            if let Some(a) = &attached {
                hosts.push((a.ip.to_string(), vec![config.hostname.clone()]));
            }
            for h in &net.extra_hosts {
                hosts.push((h.ip.clone(), vec![h.name.clone()]));
            }
            let (nameservers, search) = match &attached {
                Some(a) => (a.nameservers.clone(), a.search.clone()),
                None => (net.dns.clone(), net.dns_search.clone()),
            };
            agent
                .setup_root(&RootSetup {
                    // Found by serial: with volumes attached, vdX names
                    // follow the kernel's probe order, not ours.
                    device: format!("{DISK_BY_SERIAL}{}", crate::vmbase::ROOT_SERIAL),
                    fstype: "ext4".into(),
                    readonly: config.readonly_root,
                    hostname: config.hostname.clone(),
                    hosts,
                    nameservers,
                    search,
                    dns_options: net.dns_options.clone(),
                    mounts,
                    security,
                    changes_device,
                })
                .await?;
            Ok(Box::new(Networked {
                vm,
                _network: attached,
                _shares: shares,
                _volumes: claims,
            }) as Box<dyn Sandbox>)
        })
    }
}

/// A VM and what its network holds on the host (tap, port publisher, name
/// server), which goes when the VM does.
struct Networked {
    vm: skiff_sandbox::RunningVm,
    _network: Option<crate::network::Attached>,
    /// virtiofsd of each host directory.
    _shares: Vec<crate::share::Shared>,
    /// The volumes it mounts, held until the VM is gone.
    _volumes: Vec<crate::volume::Claim>,
}

/// The virtio-blk serial of the container's `i`th volume.
fn volume_serial(i: usize) -> String {
    format!("skiff-vol-{i}")
}

impl Sandbox for Networked {
    fn agent(&self) -> skiff_sandbox::AgentClient<skiff_sandbox::Channel> {
        self.vm.agent()
    }
    fn shutdown(
        self: Box<Self>,
        grace: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), skiff_sandbox::SandboxError>> + Send>>
    {
        Box::new(self.vm).shutdown(grace)
    }
    fn kill(&mut self) {
        self.vm.kill()
    }
    fn host_pid(&self) -> Option<u32> {
        Some(self.vm.pid())
    }
    fn boot_timings(&self) -> skiff_sandbox::BootTimings {
        self.vm.timings()
    }
}
