//! `network rm` and `network prune`: a network goes with its bridge and
//! rules, never while a container runs on it.

use super::store::{Locked, Networks, DEFAULT_NETWORK};
use super::{firewall, link, NetworkError};
use crate::Paths;

/// Takes the network's bridge and rules down and deletes it. A stopped
/// container that named it fails its next start (network not found), as
/// with docker.
fn remove_locked(
    paths: &Paths,
    networks: &Networks,
    mut locked: Locked,
) -> Result<(), NetworkError> {
    let running: Vec<String> = locked
        .file
        .leases
        .iter()
        .filter(|l| {
            let lock = paths
                .containers()
                .join(&l.container_id)
                .join(crate::container::MONITOR_LOCK);
            skiff_util::lock::is_held(&lock).unwrap_or(true)
        })
        .map(|l| {
            l.names
                .first()
                .cloned()
                .unwrap_or_else(|| l.container_id.clone())
        })
        .collect();
    if !running.is_empty() {
        return Err(NetworkError::InUse {
            name: locked.file.config.name.clone(),
            containers: running.join(", "),
        });
    }
    locked.file.leases.clear();
    let net = &locked.file.config;
    // Without root there is nothing of ours in the kernel to take down (a
    // user's networks never get a bridge).
    if rustix::process::geteuid().is_root() {
        let rules = firewall::apply(&firewall::ruleset(net, &[]));
        link::delete(&net.bridge)?;
        rules?;
    }
    networks.remove_files(locked)
}

/// `network rm NAME`; the name as stored.
pub fn remove(paths: &Paths, name_or_id: &str) -> Result<String, NetworkError> {
    let networks = Networks::new(paths);
    let name = networks.find(name_or_id)?.config.name;
    if name == DEFAULT_NETWORK {
        return Err(NetworkError::Default(name));
    }
    remove_locked(paths, &networks, networks.lock(&name)?)?;
    Ok(name)
}

/// The networks that containers (running or not) name in their configs.
fn named_by_containers(paths: &Paths) -> std::collections::BTreeSet<String> {
    let Ok(rd) = std::fs::read_dir(paths.containers()) else {
        return Default::default();
    };
    rd.flatten()
        .filter_map(|e| {
            let bytes = std::fs::read(e.path().join("config.json")).ok()?;
            let c: crate::container::config::ContainerConfig =
                serde_json::from_slice(&bytes).ok()?;
            c.network.network().map(str::to_owned)
        })
        .collect()
}

/// `network prune`: every user-defined network that no container, running
/// or stopped, names.
pub fn prune(paths: &Paths) -> Result<Vec<String>, NetworkError> {
    let networks = Networks::new(paths);
    let used = named_by_containers(paths);
    let mut removed = Vec::new();
    for n in networks.list()? {
        let name = n.config.name;
        if name == DEFAULT_NETWORK || used.contains(&name) {
            continue;
        }
        let locked = networks.lock(&name)?;
        remove_locked(paths, &networks, locked)?;
        removed.push(name);
    }
    Ok(removed)
}

/// `system reset`: every network, the default one included, with nothing
/// left on the host. Containers must be gone already.
pub fn remove_all(paths: &Paths) -> Result<Vec<String>, NetworkError> {
    let networks = Networks::new(paths);
    let mut removed = Vec::new();
    for n in networks.list()? {
        let name = n.config.name;
        remove_locked(paths, &networks, networks.lock(&name)?)?;
        removed.push(name);
    }
    Ok(removed)
}
