//! The networks of a store: `networks/<name>.json` holds a network's settings
//! and its leases (which container has which address), rewritten whole and
//! atomically under `networks/<name>.lock`. Readers (the name servers) take
//! no lock: a rename is all or nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use skiff_util::lock::FileLock;

use super::ports::PortMapping;
use super::NetworkError;
use crate::Paths;

/// The network containers join when they name none.
pub const DEFAULT_NETWORK: &str = "skiff";

/// Subnets handed out when none is asked for: /24s of 10.90.0.0/16, away from
/// docker's 172.17/16 and podman's 10.88/16.
const POOL: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 0);

/// What `network create` decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkConfig {
    pub name: String,
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The host's bridge: `sk-` and the id's first 8 digits.
    pub bridge: String,
    /// No route out: containers reach each other and nothing else.
    pub internal: bool,
    /// Containers' names resolve on this network (user-defined ones, as with
    /// docker; the default network only forwards to the host's resolvers).
    pub dns: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

/// One running container's place on a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub container_id: String,
    /// The container's name and `--network-alias`es, for the name server.
    pub names: Vec<String>,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The published ports, as bound by the running monitor.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Its monitor has it on the network now (names resolve only then).
    #[serde(default)]
    pub running: bool,
}

/// `networks/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkFile {
    pub config: NetworkConfig,
    #[serde(default)]
    pub leases: Vec<Lease>,
}

impl NetworkFile {
    /// What a well-formed file of network `name` is: its own name, a bridge
    /// of ours, containers' ids, MACs and addresses of the subnet.
    fn check(&self, name: &str) -> Result<(), String> {
        let c = &self.config;
        if c.name != name {
            return Err(format!("it names network {:?}", c.name));
        }
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        let bridge_ok = c
            .bridge
            .strip_prefix("sk-")
            .is_some_and(|h| h.len() == 8 && hex(h));
        if !bridge_ok || !hex(&c.id) || !c.subnet.contains(&c.gateway) {
            return Err("bad id, bridge or gateway".into());
        }
        for l in &self.leases {
            let mac_ok = l.mac.len() == 17 && l.mac.split(':').all(|o| o.len() == 2 && hex(o));
            if l.container_id.len() != 64
                || !hex(&l.container_id)
                || !mac_ok
                || !c.subnet.contains(&l.ip)
            {
                return Err(format!("bad lease {:?}", l.container_id));
            }
        }
        Ok(())
    }

    /// The lease of `container_id`, if any.
    pub fn lease(&self, container_id: &str) -> Option<&Lease> {
        self.leases.iter().find(|l| l.container_id == container_id)
    }

    /// The addresses of a container's name or alias (case-insensitive).
    pub fn resolve(&self, name: &str) -> Vec<Ipv4Addr> {
        self.leases
            .iter()
            .filter(|l| l.running)
            .filter(|l| {
                l.names.iter().any(|n| n.eq_ignore_ascii_case(name))
                    || (name.len() >= 12 && l.container_id.starts_with(name))
            })
            .map(|l| l.ip)
            .collect()
    }

    /// Gives `container_id` an address (the one it has, or the lowest free
    /// one) and records its names; the lease as it now stands.
    pub fn lease_for(
        &mut self,
        container_id: &str,
        names: Vec<String>,
    ) -> Result<Lease, NetworkError> {
        if let Some(l) = self
            .leases
            .iter_mut()
            .find(|l| l.container_id == container_id)
        {
            l.names = names;
            return Ok(l.clone());
        }
        let taken: std::collections::HashSet<Ipv4Addr> = self.leases.iter().map(|l| l.ip).collect();
        let ip = self
            .config
            .subnet
            .hosts()
            .find(|ip| *ip != self.config.gateway && !taken.contains(ip))
            .ok_or_else(|| NetworkError::Exhausted(self.config.name.clone()))?;
        let lease = Lease {
            container_id: container_id.to_owned(),
            names,
            ip,
            mac: mac_for(ip),
            ports: Vec::new(),
            running: false,
        };
        self.leases.push(lease.clone());
        Ok(lease)
    }
}

/// A MAC derived from the address, as docker does (02:42:…): locally
/// administered, unique while subnets do not overlap.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:5f:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// What `network create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// The networks under a store root.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

/// A network's file, locked for a read-modify-write.
pub struct Locked {
    path: PathBuf,
    pub file: NetworkFile,
    _lock: FileLock,
}

impl Locked {
    /// Writes the file back (atomically); the lock is kept.
    pub fn save(&self) -> Result<(), NetworkError> {
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| NetworkError::Io {
            what: "encoding",
            path: self.path.clone(),
            source: e.into(),
        })?;
        skiff_util::atomic::write(&self.path, &bytes, 0o644)
            .map_err(NetworkError::io("writing", &self.path))
    }
}

impl Networks {
    pub fn new(paths: &Paths) -> Self {
        Self {
            dir: paths.root().join("networks"),
        }
    }

    /// `networks/<name>.json`.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.file(name)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Reads a network without a lock (a consistent snapshot). The file is
    /// checked: its names go into paths, link names and QEMU's options.
    pub fn get(&self, name: &str) -> Result<NetworkFile, NetworkError> {
        valid_name(name)?;
        let path = self.file(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NetworkError::NotFound(name.to_owned()))
            }
            Err(e) => {
                return Err(NetworkError::Io {
                    what: "reading",
                    path,
                    source: e,
                })
            }
        };
        let file: NetworkFile = serde_json::from_slice(&bytes).map_err(|e| NetworkError::Io {
            what: "parsing",
            path: path.clone(),
            source: e.into(),
        })?;
        file.check(name)
            .map_err(|why| NetworkError::Corrupt { path, why })?;
        Ok(file)
    }

    /// The default network, made if it does not exist yet.
    pub fn ensure_default(&self) -> Result<NetworkFile, NetworkError> {
        match self.get(DEFAULT_NETWORK) {
            Err(NetworkError::NotFound(_)) => {
                self.create_default()?;
                self.get(DEFAULT_NETWORK)
            }
            r => r,
        }
    }

    /// Locks a network for a change (the default one is made on first use).
    pub fn lock(&self, name: &str) -> Result<Locked, NetworkError> {
        valid_name(name)?;
        if name == DEFAULT_NETWORK && !self.file(name).exists() {
            self.create_default()?;
        }
        let lock_path = self.dir.join(format!("{name}.lock"));
        std::fs::create_dir_all(&self.dir).map_err(NetworkError::io("creating", &self.dir))?;
        let lock =
            FileLock::exclusive(&lock_path).map_err(NetworkError::io("locking", &lock_path))?;
        // Read under the lock: what another writer saved before we got it.
        let file = self.get(name)?;
        Ok(Locked {
            path: self.file(name),
            file,
            _lock: lock,
        })
    }

    /// Every network, by name (the default one included once it exists).
    pub fn list(&self) -> Result<Vec<NetworkFile>, NetworkError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(NetworkError::io("reading", &self.dir)(e)),
        };
        for e in entries.flatten() {
            let n = e.file_name();
            let Some(name) = n.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match self.get(name) {
                Ok(f) => out.push(f),
                Err(NetworkError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        Ok(out)
    }

    /// Finds a network by name or id prefix.
    pub fn find(&self, name_or_id: &str) -> Result<NetworkFile, NetworkError> {
        if name_or_id == DEFAULT_NETWORK {
            return self.ensure_default();
        }
        match self.get(name_or_id) {
            Err(NetworkError::BadName(_)) => {}
            Err(NetworkError::NotFound(_)) if !name_or_id.is_empty() => {}
            r => return r,
        }
        let mut hits = self
            .list()?
            .into_iter()
            .filter(|n| n.config.id.starts_with(name_or_id));
        match (hits.next(), hits.next()) {
            (Some(n), None) => Ok(n),
            (None, _) => Err(NetworkError::NotFound(name_or_id.to_owned())),
            (Some(_), Some(_)) => Err(NetworkError::Ambiguous(name_or_id.to_owned())),
        }
    }

    fn create_default(&self) -> Result<(), NetworkError> {
        match self.create_locked(&CreateNetwork {
            name: DEFAULT_NETWORK.into(),
            ..Default::default()
        }) {
            Ok(_) | Err(NetworkError::Exists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes a network (its bridge comes with its first running container).
    pub fn create(&self, req: &CreateNetwork) -> Result<NetworkConfig, NetworkError> {
        valid_name(&req.name)?;
        if matches!(req.name.as_str(), "none" | "host" | "bridge") {
            return Err(NetworkError::Reserved(req.name.clone()));
        }
        self.create_locked(req)
    }

    fn create_locked(&self, req: &CreateNetwork) -> Result<NetworkConfig, NetworkError> {
        std::fs::create_dir_all(&self.dir).map_err(NetworkError::io("creating", &self.dir))?;
        // One creator at a time: subnets are checked against each other.
        let all = self.dir.join(".lock");
        let _lock = FileLock::exclusive(&all).map_err(NetworkError::io("locking", &all))?;
        if self.file(&req.name).exists() {
            return Err(NetworkError::Exists(req.name.clone()));
        }
        let existing = self.list()?;
        let host_routes = super::link::host_routes().unwrap_or_default();
        let ours: Vec<Ipv4Net> = existing.iter().map(|n| n.config.subnet).collect();
        let subnet = match req.subnet {
            Some(s) => {
                let s = s.trunc();
                if s.prefix_len() > 30 {
                    return Err(NetworkError::BadSubnet(format!(
                        "{s}: too small, use a prefix of /30 or shorter"
                    )));
                }
                if let Some(o) = existing.iter().find(|n| overlaps(n.config.subnet, s)) {
                    return Err(NetworkError::Overlap {
                        subnet: s,
                        other: format!("network {} ({})", o.config.name, o.config.subnet),
                    });
                }
                if let Some(r) = host_routes.iter().find(|r| {
                    r.net.prefix_len() > 0 && overlaps(r.net, s) && !r.device.starts_with("sk-")
                }) {
                    return Err(NetworkError::Overlap {
                        subnet: s,
                        other: format!("the host's route to {} on {}", r.net, r.device),
                    });
                }
                s
            }
            None => (0..=255u8)
                .filter_map(|i| {
                    let o = POOL.octets();
                    Ipv4Net::new(Ipv4Addr::new(o[0], o[1], i, 0), 24).ok()
                })
                .find(|s| {
                    !ours.iter().any(|o| overlaps(*o, *s))
                        && !host_routes
                            .iter()
                            .any(|r| r.net.prefix_len() > 0 && overlaps(r.net, *s))
                })
                .ok_or(NetworkError::NoFreeSubnet)?,
        };
        let gateway = match req.gateway {
            Some(g) if subnet.contains(&g) && g != subnet.network() && g != subnet.broadcast() => g,
            Some(g) => {
                return Err(NetworkError::BadSubnet(format!(
                    "gateway {g} is not a host address of {subnet}"
                )))
            }
            None => subnet.hosts().next().ok_or(NetworkError::NoFreeSubnet)?,
        };
        let id = skiff_util::id::random_hex::<32>();
        let config = NetworkConfig {
            name: req.name.clone(),
            bridge: format!("sk-{}", &id[..8]),
            id,
            subnet,
            gateway,
            internal: req.internal,
            dns: req.name != DEFAULT_NETWORK,
            labels: req.labels.clone(),
            created: crate::time::now_rfc3339(),
        };
        let locked = Locked {
            path: self.file(&req.name),
            file: NetworkFile {
                config: config.clone(),
                leases: Vec::new(),
            },
            _lock: {
                let path = self.dir.join(format!("{}.lock", req.name));
                FileLock::exclusive(&path).map_err(NetworkError::io("locking", &path))?
            },
        };
        locked.save()?;
        Ok(config)
    }

    /// Deletes a network's file (the caller has checked it is unused and
    /// taken down its bridge and rules). The lock file stays: a waiter on it
    /// must never hold a lock that a later creator of the name does not see.
    pub fn remove_files(&self, locked: Locked) -> Result<(), NetworkError> {
        let path = self.file(&locked.file.config.name);
        std::fs::remove_file(&path).map_err(NetworkError::io("removing", &path))
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// docker's rule for names: a letter or digit, then letters, digits, `_.-`.
pub fn valid_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(NetworkError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container id as create makes them: 64 hex digits.
    fn id(i: usize) -> String {
        format!("{i:064x}")
    }

    fn networks() -> (tempfile::TempDir, Networks) {
        let dir = tempfile::tempdir().unwrap();
        let n = Networks::new(&Paths::new(dir.path()));
        (dir, n)
    }

    fn create(
        n: &Networks,
        name: &str,
        subnet: Option<&str>,
    ) -> Result<NetworkConfig, NetworkError> {
        n.create(&CreateNetwork {
            name: name.into(),
            subnet: subnet.map(|s| s.parse().unwrap()),
            ..Default::default()
        })
    }

    #[test]
    fn concurrent_leases_never_share_an_address() {
        let (_d, n) = networks();
        create(&n, "appnet", Some("10.90.200.0/24")).unwrap();
        let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let n = &n;
                    s.spawn(move || {
                        let mut l = n.lock("appnet").unwrap();
                        let lease = l.file.lease_for(&id(i), vec![format!("n{i}")]).unwrap();
                        l.save().unwrap();
                        lease.ip
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<_> = ips.iter().collect();
        assert_eq!(distinct.len(), 16, "{ips:?}");
        let file = n.get("appnet").unwrap();
        assert_eq!(file.leases.len(), 16, "every lease was saved");
        assert!(ips.iter().all(|ip| *ip != file.config.gateway));
        // A container asking again keeps its address.
        let mut l = n.lock("appnet").unwrap();
        let again = l.file.lease_for(&id(3), vec!["n3".into()]).unwrap();
        assert_eq!(again.ip, ips[3]);
        assert_eq!(l.file.leases.len(), 16);
    }

    #[test]
    fn subnets_do_not_overlap_and_bad_input_is_refused() {
        let (_d, n) = networks();
        let a = create(&n, "a", Some("10.90.100.0/24")).unwrap();
        assert_eq!(a.gateway, Ipv4Addr::new(10, 90, 100, 1));
        assert!(a.bridge.starts_with("sk-") && a.bridge.len() <= 15);
        let e = create(&n, "b", Some("10.90.100.128/25"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "subnet 10.90.100.128/25 overlaps network a (10.90.100.0/24)"
        );
        let e = create(&n, "a", None).unwrap_err().to_string();
        assert_eq!(e, "network a already exists");
        let e = create(&n, "-x", None).unwrap_err().to_string();
        assert!(e.starts_with("invalid network name \"-x\""), "{e}");
        assert!(matches!(
            create(&n, "none", None),
            Err(NetworkError::Reserved(_))
        ));
        let e = create(&n, "tiny", Some("10.90.101.0/31"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too small"), "{e}");
        // Automatic subnets skip taken ones.
        let c = create(&n, "c", None).unwrap();
        let d = create(&n, "d", None).unwrap();
        assert_ne!(c.subnet, d.subnet);
        assert!(!overlaps(c.subnet, a.subnet) && !overlaps(d.subnet, a.subnet));
        // Lookups by id prefix; unknown names say how to list.
        assert_eq!(n.find(&c.id[..6]).unwrap().config.name, "c");
        let e = n.find("nope").unwrap_err().to_string();
        assert_eq!(
            e,
            "network nope not found: list networks with `skiff network ls`"
        );
        // The default network comes by itself.
        assert_eq!(n.ensure_default().unwrap().config.name, "skiff");
        assert!(!n.get(DEFAULT_NETWORK).unwrap().config.dns);
    }

    #[test]
    fn a_damaged_file_is_refused_in_one_line() {
        let (d, n) = networks();
        create(&n, "x", Some("10.90.103.0/24")).unwrap();
        let path = d.path().join("networks/x.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["config"]["bridge"] = "eth0".into();
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let e = n.get("x").unwrap_err().to_string();
        assert!(e.ends_with("x.json is damaged (bad id, bridge or gateway): remove that file to start the network afresh"), "{e}");
        assert!(matches!(n.get("../x"), Err(NetworkError::BadName(_))));
    }

    #[test]
    fn a_full_network_says_so_and_names_resolve_only_while_running() {
        let (_d, n) = networks();
        create(&n, "small", Some("10.90.102.0/30")).unwrap();
        let mut l = n.lock("small").unwrap();
        let lease = l
            .file
            .lease_for(&id(1), vec!["Web".into(), "alias".into()])
            .unwrap();
        assert_eq!(lease.ip, Ipv4Addr::new(10, 90, 102, 2));
        let e = l.file.lease_for(&id(2), vec![]).unwrap_err().to_string();
        assert_eq!(e, "network small has no free address left");
        assert!(l.file.resolve("web").is_empty(), "not running yet");
        l.file.leases[0].running = true;
        assert_eq!(l.file.resolve("web"), vec![lease.ip]);
        assert_eq!(l.file.resolve("ALIAS"), vec![lease.ip]);
        assert!(l.file.resolve("other").is_empty());
        assert_eq!(mac_for(lease.ip), "02:5f:0a:5a:66:02");
    }
}
