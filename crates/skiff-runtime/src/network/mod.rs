//! Container networks: a bridge per network, a tap per container, addresses
//! from a locked per-network allocation, NAT, published ports, isolation and
//! anti-spoofing through nftables, and a name server on each gateway.

pub mod attach;
pub mod dns;
pub mod firewall;
pub mod link;
pub mod passt;
pub mod ports;
pub mod remove;
pub mod store;
pub mod tap;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use attach::{attach, detach, Attached, Link};
pub use ipnet::Ipv4Net;
pub use ports::{PortMapping, Protocol};
pub use store::{CreateNetwork, NetworkConfig, NetworkFile, Networks, DEFAULT_NETWORK};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found: list networks with `skiff network ls`")]
    NotFound(String),
    #[error("network id prefix {0} matches more than one network")]
    Ambiguous(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("network name {0} is reserved")]
    Reserved(String),
    #[error(
        "invalid network name {0:?}: use letters, digits and _.- (starting with a letter or digit)"
    )]
    BadName(String),
    #[error("invalid subnet {0}")]
    BadSubnet(String),
    #[error("subnet {subnet} overlaps {other}")]
    Overlap {
        subnet: ipnet::Ipv4Net,
        other: String,
    },
    #[error("no free /24 left in 10.90.0.0/16: remove unused networks or pass --subnet")]
    NoFreeSubnet,
    #[error("network {0} has no free address left")]
    Exhausted(String),
    #[error("network {name} is in use by running containers: {containers}; stop them first")]
    InUse { name: String, containers: String },
    #[error("the default network {0} cannot be removed")]
    Default(String),
    #[error("{path} is damaged ({why}): remove that file to start the network afresh")]
    Corrupt { path: PathBuf, why: String },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("tap {name}")]
    Tap {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nftables: {0}")]
    Firewall(String),
    #[error(transparent)]
    Ports(#[from] ports::PortError),
    #[error("passt: {0}")]
    Passt(String),
    #[error("the name server on {addr}")]
    Dns {
        addr: std::net::SocketAddrV4,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How a container is connected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only (`--network none`).
    #[default]
    None,
    /// A skiff network: a bridge on the host (root).
    Bridge { network: String },
    /// User-mode networking through passt (`--network passt`; the default
    /// for non-root users): outbound and published ports, no bridge.
    User,
}

/// A name for /etc/hosts (`--add-host name:ip`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExtraHost {
    pub name: String,
    pub ip: String,
}

/// The network part of a container's config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ContainerNetwork {
    #[serde(default)]
    pub mode: NetworkMode,
    /// `--network-alias`: more names on the network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `-p`/`-P` as asked (host port 0: any free port).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
}

impl ContainerNetwork {
    /// The skiff network joined, if any.
    pub fn network(&self) -> Option<&str> {
        match &self.mode {
            NetworkMode::None | NetworkMode::User => None,
            NetworkMode::Bridge { network } => Some(network),
        }
    }

    /// How `inspect` and `ps` name the mode.
    pub fn mode_name(&self) -> &str {
        match &self.mode {
            NetworkMode::None => "none",
            NetworkMode::User => "passt",
            NetworkMode::Bridge { network } => network,
        }
    }
}

/// A container whose monitor died without leaving its network (kill -9):
/// its lease, rules and (if it was the last) the bridge go. Cheap when there
/// is nothing to do: one read of the network's file.
pub fn repair_lost(paths: &crate::Paths, id: &str, spec: &ContainerNetwork) {
    if lease_of(paths, id, spec).is_none() {
        return;
    }
    // Not "without this container": a new monitor of it may have started
    // since its death was seen; the lock check in reconcile decides.
    if let Err(e) = attach::refresh(paths, spec.network().unwrap_or_default()) {
        tracing::warn!(
            "cleaning up the network of {id}: {}",
            skiff_util::error::chain(&e)
        );
    }
}

/// The container's network and its lease there (None: no network, or it
/// does not run).
pub fn lease_of(
    paths: &crate::Paths,
    id: &str,
    spec: &ContainerNetwork,
) -> Option<(NetworkConfig, store::Lease)> {
    let file = Networks::new(paths).get(spec.network()?).ok()?;
    let lease = file.lease(id)?.clone();
    Some((file.config, lease))
}
