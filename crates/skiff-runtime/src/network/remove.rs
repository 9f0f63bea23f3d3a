//! `network rm` and `network prune`: a network goes with its bridge and
//! rules, never while a container runs on it.

use super::store::{Locked, Networks, DEFAULT_NETWORK};
use super::{firewall, link, NetworkError};
use crate::Paths;

/// Takes the network's bridge and rules down and deletes it. Leases of
/// stopped containers go with it (their next start fails: network not found).
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
            skiff_util::lock::is_held(&lock).unwrap_or(false)
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
    firewall::apply(&firewall::ruleset(net, &[]))?;
    link::delete(&net.bridge)?;
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

/// `network prune`: every user-defined network that no container uses.
pub fn prune(paths: &Paths) -> Result<Vec<String>, NetworkError> {
    let networks = Networks::new(paths);
    let mut removed = Vec::new();
    for n in networks.list()? {
        let name = n.config.name;
        if name == DEFAULT_NETWORK {
            continue;
        }
        let locked = networks.lock(&name)?;
        let used = locked
            .file
            .leases
            .iter()
            .any(|l| paths.containers().join(&l.container_id).is_dir());
        if used {
            continue;
        }
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
