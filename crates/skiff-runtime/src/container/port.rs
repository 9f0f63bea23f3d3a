//! `port`: the host ports a running container's ports are published on.

use super::Container;
use crate::network::PortMapping;

/// The ports as bound by its monitor; none when it does not run.
pub fn ports(c: &Container) -> Vec<PortMapping> {
    if !c.status().is_active() {
        return Vec::new();
    }
    if c.config.network.mode == crate::network::NetworkMode::User {
        return crate::network::passt::published(c.dir());
    }
    let paths = crate::Paths::of_container_dir(c.dir());
    crate::network::lease_of(&paths, c.id(), &c.config.network)
        .filter(|(_, l)| l.running)
        .map(|(_, l)| l.ports)
        .unwrap_or_default()
}
