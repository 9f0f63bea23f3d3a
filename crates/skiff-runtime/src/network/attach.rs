//! A container's place on its network for one run of its sandbox: lease,
//! bridge, tap, rules, published ports and the name server, taken by the
//! monitor before the VM boots and given back when it ends. Every change
//! rebuilds the network's rules from its leases, so whatever a killed monitor
//! left is repaired by the next one.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::firewall::{self, Endpoint};
use super::ports::{self, PortMapping};
use super::store::{Locked, NetworkFile, Networks};
use super::{dns, link, tap, ContainerNetwork, NetworkError};
use crate::Paths;

/// The port the name server answers on.
const DNS_PORT: u16 = 53;

/// What the guest is told and what the host holds for it while it runs.
/// Dropping it stops the port publisher and the name server, and closes the
/// monitor's copy of the tap.
pub struct Attached {
    pub network: String,
    /// What the VM's card is plugged into.
    pub link: Link,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub internal: bool,
    /// The guest's resolv.conf.
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    /// The published ports as bound.
    pub ports: Vec<PortMapping>,
    pub(super) _services: tokio::task::JoinSet<()>,
}

/// The host end of the container's network card.
pub enum Link {
    /// A tap on the network's bridge (root).
    Tap(OwnedFd),
    /// Our end of passt's socket pair, for QEMU (user mode); passt goes
    /// when this is dropped.
    Passt {
        socket: OwnedFd,
        _passt: super::passt::Passt,
    },
}

fn monitor_lock(paths: &Paths, id: &str) -> PathBuf {
    paths
        .containers()
        .join(id)
        .join(crate::container::MONITOR_LOCK)
}

/// Brings the network's leases, rules and bridge in line with its running
/// containers: those whose monitor holds its lock, `exclude` aside. Every
/// other lease goes (a container that stopped, was killed with -9 or
/// removed), so an address is held exactly while its container runs, as
/// with docker. A changed file is saved before the kernel is touched, so a
/// kill in between leaves a lease the next change can repair from.
fn reconcile(
    paths: &Paths,
    locked: &mut Locked,
    exclude: Option<&str>,
) -> Result<(), NetworkError> {
    let before = locked.file.leases.len();
    locked.file.leases.retain(|l| {
        // A lock that cannot be checked counts as held: never take a
        // running container off its network by mistake.
        Some(l.container_id.as_str()) != exclude
            && skiff_util::lock::is_held(&monitor_lock(paths, &l.container_id)).unwrap_or(true)
    });
    if locked.file.leases.len() != before {
        locked.save()?;
    }
    let endpoints: Vec<Endpoint> = locked
        .file
        .leases
        .iter()
        .filter(|l| l.running)
        .map(|l| Endpoint {
            tap: tap::name_for(&l.container_id),
            ip: l.ip,
            mac: l.mac.clone(),
            ports: l.ports.clone(),
        })
        .collect();
    let net = &locked.file.config;
    if endpoints.is_empty() {
        // Both, even when the first fails.
        let rules = firewall::apply(&firewall::ruleset(net, &[]));
        link::delete(&net.bridge)?;
        rules
    } else {
        link::ensure_bridge(&net.bridge, net.gateway, net.subnet.prefix_len())?;
        firewall::apply(&firewall::ruleset(net, &endpoints))
    }
}

/// Repairs a network after a monitor vanished: leases, rules and bridge as
/// its running containers need them.
pub fn refresh(paths: &Paths, network: &str) -> Result<(), NetworkError> {
    let mut locked = match Networks::new(paths).lock(network) {
        Ok(l) => l,
        Err(NetworkError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    reconcile(paths, &mut locked, None)
}

/// Connects container `id` (named `name`) to its network for one run; None
/// for `--network none`.
pub async fn attach(
    paths: &Paths,
    dir: &Path,
    id: &str,
    name: &str,
    spec: &ContainerNetwork,
) -> Result<Option<Attached>, NetworkError> {
    if spec.mode == super::NetworkMode::User {
        return super::passt::attach(dir, spec).await.map(Some);
    }
    let Some(network) = spec.network() else {
        return Ok(None);
    };
    let networks = Networks::new(paths);
    // Bound first: a port in use fails before anything else is made.
    let bound = ports::bind_all(&spec.ports)?;
    let mapped = bound.mappings();
    let mut locked = networks.lock(network)?;
    let mut names = vec![name.to_owned()];
    names.extend(spec.aliases.iter().cloned());
    let lease = locked.file.lease_for(id, names)?;
    if let Some(l) = locked.file.leases.iter_mut().find(|l| l.container_id == id) {
        l.running = true;
        l.ports = mapped.clone();
    }
    // Recorded before anything is made: whatever a kill leaves from here
    // on, the next change finds the lease and repairs.
    locked.save()?;
    let net = locked.file.config.clone();
    let tap_name = tap::name_for(id);
    let made = (|| {
        firewall::enable_forwarding()?;
        link::ensure_bridge(&net.bridge, net.gateway, net.subnet.prefix_len())?;
        let fd = tap::open(&tap_name)?;
        link::attach(&tap_name, &net.bridge)?;
        reconcile(paths, &mut locked, None)?;
        Ok::<_, NetworkError>(fd)
    })();
    let fd = match made {
        Ok(fd) => fd,
        Err(e) => {
            // The tap (if any) went with its fd; the rules are put back as
            // they were without us.
            let _ = reconcile(paths, &mut locked, Some(id));
            return Err(e);
        }
    };
    drop(locked);

    let mut services = tokio::task::JoinSet::new();
    let target = lease.ip;
    services.spawn(async move { bound.serve(target).await });
    let dns_addr = SocketAddrV4::new(net.gateway, DNS_PORT);
    match dns::bind(dns_addr) {
        Ok(socket) => {
            // An internal network asks no one outside, not even for names.
            let upstreams = if net.internal {
                Vec::new()
            } else {
                std::fs::read_to_string("/etc/resolv.conf")
                    .map(|t| dns::upstreams_from_resolv_conf(&t))
                    .unwrap_or_default()
            };
            let names: Arc<dyn dns::Names> =
                Arc::new(FileNames::new(&networks, &net.name, net.dns));
            services.spawn(dns::serve(socket, names, upstreams));
        }
        // Another server holds port 53 on every address (bound without
        // SO_REUSEPORT): the container runs, but without names.
        Err(source) => tracing::warn!(
            "{}",
            skiff_util::error::chain(&NetworkError::Dns {
                addr: dns_addr,
                source
            })
        ),
    }
    let nameservers = if spec.dns.is_empty() {
        vec![net.gateway.to_string()]
    } else {
        spec.dns.clone()
    };
    Ok(Some(Attached {
        network: net.name.clone(),
        link: Link::Tap(fd),
        mac: lease.mac,
        ip: lease.ip,
        prefix: net.subnet.prefix_len(),
        gateway: net.gateway,
        mtu: link::MTU,
        internal: net.internal,
        nameservers,
        search: spec.dns_search.clone(),
        options: spec.dns_options.clone(),
        ports: mapped,
        _services: services,
    }))
}

/// The container's run is over: its address, rules and (with the network's
/// last running container) the bridge go.
pub fn detach(paths: &Paths, id: &str, spec: &ContainerNetwork) -> Result<(), NetworkError> {
    let Some(network) = spec.network() else {
        return Ok(());
    };
    let mut locked = match Networks::new(paths).lock(network) {
        Ok(l) => l,
        Err(NetworkError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    reconcile(paths, &mut locked, Some(id))
}

/// Inode, mtime and size of a file.
type FileKey = (u64, std::time::SystemTime, u64);

/// Names from the network's file, read again when it changes.
struct FileNames {
    path: PathBuf,
    enabled: bool,
    /// The file as last read, by inode, mtime and size: every save is a
    /// rename, so a new inode means a new file.
    cache: Mutex<Option<(FileKey, NetworkFile)>>,
}

impl FileNames {
    fn new(networks: &Networks, name: &str, enabled: bool) -> Self {
        Self {
            path: networks.file_path(name),
            enabled,
            cache: Mutex::new(None),
        }
    }

    fn current(&self, path: &Path) -> Option<NetworkFile> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.ino(), meta.modified().ok()?, meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, f)) = cache.as_ref() {
            if *k == key {
                return Some(f.clone());
            }
        }
        let f: NetworkFile = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        *cache = Some((key, f.clone()));
        Some(f)
    }
}

impl dns::Names for FileNames {
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        if !self.enabled {
            return None;
        }
        let file = self.current(&self.path)?;
        let ips = file.resolve(name);
        (!ips.is_empty()).then_some(ips)
    }
}
