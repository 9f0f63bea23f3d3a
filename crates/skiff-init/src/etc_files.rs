//! The contents skiff-init writes to the container's /etc/hosts and
//! /etc/resolv.conf (pure, so they are tested on the host).

use skiff_proto::v1::ContainerSetup;

pub fn hosts(setup: &ContainerSetup) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost");
    if !setup.hostname.is_empty() {
        out.push(' ');
        out.push_str(&setup.hostname);
    }
    out.push_str("\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for entry in &setup.hosts {
        if entry.ip.is_empty() || entry.names.is_empty() {
            continue;
        }
        out.push_str(&entry.ip);
        out.push('\t');
        out.push_str(&entry.names.join(" "));
        out.push('\n');
    }
    out
}

/// None when the setup names no DNS settings: the image's own file stays
/// (or there is none).
pub fn resolv_conf(setup: &ContainerSetup) -> Option<String> {
    if setup.nameservers.is_empty() && setup.search.is_empty() && setup.dns_options.is_empty() {
        return None;
    }
    let mut out = String::new();
    for ns in &setup.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !setup.search.is_empty() {
        out.push_str(&format!("search {}\n", setup.search.join(" ")));
    }
    if !setup.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", setup.dns_options.join(" ")));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::v1::HostEntry;

    #[test]
    fn hosts_has_localhost_hostname_and_extras() {
        let setup = ContainerSetup {
            hostname: "web".into(),
            hosts: vec![
                HostEntry {
                    ip: "10.88.0.1".into(),
                    names: vec!["host.skiff.internal".into(), "gw".into()],
                },
                HostEntry {
                    ip: "10.0.0.9".into(),
                    names: vec![],
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            hosts(&setup),
            "127.0.0.1\tlocalhost web\n::1\tlocalhost ip6-localhost ip6-loopback\n10.88.0.1\thost.skiff.internal gw\n"
        );
    }

    #[test]
    fn resolv_only_when_asked() {
        assert_eq!(resolv_conf(&ContainerSetup::default()), None);
        let setup = ContainerSetup {
            nameservers: vec!["10.88.0.1".into(), "1.1.1.1".into()],
            search: vec!["a.example".into(), "b.example".into()],
            dns_options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&setup).unwrap(),
            "nameserver 10.88.0.1\nnameserver 1.1.1.1\nsearch a.example b.example\noptions ndots:2\n"
        );
    }
}
