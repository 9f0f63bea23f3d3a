//! A network's nftables rules, written whole from the network's running
//! containers and applied in one `nft -j -f -` transaction (nftables' JSON
//! interface): no rule is ever patched in place, so a change that fails leaves
//! the previous set, and the next change repairs whatever a kill -9 left.
//!
//! Two tables per network, both named `skiff-<bridge>`:
//! - `ip`: masquerade out of the subnet (none when internal), DNAT of
//!   published ports for traffic from other hosts, and a forward filter: into
//!   the bridge only published ports and replies, nothing to other skiff
//!   networks (`sk-*` bridges), nothing in or out at all when internal.
//! - `bridge`: anti-spoofing on each tap: frames must be IPv4 or ARP and
//!   carry the container's own MAC and IPv4 address.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::ports::{PortMapping, Protocol};
use super::store::NetworkConfig;
use super::NetworkError;

/// One running container as the rules see it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tap: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub ports: Vec<PortMapping>,
}

fn table_name(net: &NetworkConfig) -> String {
    format!("skiff-{}", net.bridge)
}

fn table(family: &str, name: &str) -> Value {
    json!({"family": family, "name": name})
}

fn chain(family: &str, table: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": family, "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

fn rule(family: &str, table: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": family, "table": table, "chain": chain, "expr": expr}}})
}

fn is(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

/// The commands that make the network's tables match `endpoints`; no
/// endpoints: the tables go.
pub fn ruleset(net: &NetworkConfig, endpoints: &[Endpoint]) -> Value {
    let t = table_name(net);
    let br = net.bridge.as_str();
    let mut cmds = Vec::new();
    for family in ["ip", "bridge"] {
        // "add" makes the delete safe when the table is not there.
        cmds.push(json!({"add": {"table": table(family, &t)}}));
        cmds.push(json!({"delete": {"table": table(family, &t)}}));
    }
    if endpoints.is_empty() {
        return json!({"nftables": cmds});
    }
    let subnet = json!({"prefix": {"addr": net.subnet.network().to_string(), "len": net.subnet.prefix_len()}});
    cmds.push(json!({"add": {"table": table("ip", &t)}}));
    cmds.push(chain("ip", &t, "postrouting", "nat", "postrouting", 100));
    cmds.push(chain("ip", &t, "prerouting", "nat", "prerouting", -100));
    cmds.push(chain("ip", &t, "forward", "filter", "forward", 0));
    if !net.internal {
        cmds.push(rule(
            "ip",
            &t,
            "postrouting",
            vec![
                is("==", payload("ip", "saddr"), subnet.clone()),
                is("!=", meta("oifname"), json!(br)),
                json!({"masquerade": null}),
            ],
        ));
        for ep in endpoints {
            for p in &ep.ports {
                // From the bridge itself (a container to a published port
                // of its own network) the monitor's publisher answers: a DNAT
                // here would send the reply past the client's NAT.
                let mut expr = vec![is("!=", meta("iifname"), json!(br))];
                match p.host_ip {
                    std::net::IpAddr::V4(ip) if !ip.is_unspecified() => {
                        expr.push(is("==", payload("ip", "daddr"), json!(ip.to_string())));
                    }
                    std::net::IpAddr::V4(_) => expr.push(is(
                        "==",
                        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                        json!("local"),
                    )),
                    // IPv6 host addresses are served by the monitor alone.
                    std::net::IpAddr::V6(_) => continue,
                }
                let proto = match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                expr.push(is("==", payload(proto, "dport"), json!(p.host_port)));
                expr.push(json!({"dnat": {"addr": ep.ip.to_string(), "port": p.container_port}}));
                cmds.push(rule("ip", &t, "prerouting", expr));
            }
        }
    }
    let fwd = |expr: Vec<Value>| rule("ip", &t, "forward", expr);
    let into_bridge = || {
        vec![
            is("==", meta("oifname"), json!(br)),
            is("!=", meta("iifname"), json!(br)),
        ]
    };
    let with = |mut head: Vec<Value>, tail: Vec<Value>| {
        head.extend(tail);
        head
    };
    if net.internal {
        // Nothing in or out, published or not.
        cmds.push(fwd(vec![
            is("==", meta("iifname"), json!(br)),
            is("!=", meta("oifname"), json!(br)),
            json!({"drop": null}),
        ]));
        cmds.push(fwd(with(into_bridge(), vec![json!({"drop": null})])));
    } else {
        // Published ports, from anywhere (other networks' containers too,
        // through the host's addresses).
        cmds.push(fwd(vec![
            is("in", json!({"ct": {"key": "status"}}), json!("dnat")),
            json!({"accept": null}),
        ]));
        // Into the bridge: replies to the containers' own connections, and
        // nothing else (no other host or network routes in to them).
        cmds.push(fwd(with(
            into_bridge(),
            vec![
                is(
                    "in",
                    json!({"ct": {"key": "state"}}),
                    json!(["established", "related"]),
                ),
                json!({"accept": null}),
            ],
        )));
        cmds.push(fwd(with(into_bridge(), vec![json!({"drop": null})])));
        cmds.push(fwd(vec![
            is("==", meta("iifname"), json!(br)),
            is("==", meta("oifname"), json!("sk-*")),
            is("!=", meta("oifname"), json!(br)),
            json!({"drop": null}),
        ]));
    }

    cmds.push(json!({"add": {"table": table("bridge", &t)}}));
    cmds.push(chain(
        "bridge",
        &t,
        "prerouting",
        "filter",
        "prerouting",
        -200,
    ));
    for ep in endpoints {
        let from_tap = || is("==", meta("iifname"), json!(ep.tap));
        let drop = || json!({"drop": null});
        let r = |m: Value| rule("bridge", &t, "prerouting", vec![from_tap(), m, drop()]);
        cmds.push(r(is("!=", payload("ether", "saddr"), json!(ep.mac))));
        cmds.push(r(is(
            "!=",
            payload("ip", "saddr"),
            json!(ep.ip.to_string()),
        )));
        cmds.push(r(is(
            "!=",
            payload("arp", "saddr ip"),
            json!(ep.ip.to_string()),
        )));
        cmds.push(r(is("!=", payload("arp", "saddr ether"), json!(ep.mac))));
        // IPv4 and ARP only (no IPv6, VLAN tags or other types to slip by).
        cmds.push(r(is(
            "!=",
            payload("ether", "type"),
            json!({"set": ["ip", "arp"]}),
        )));
    }
    json!({"nftables": cmds})
}

/// Applies a ruleset in one transaction.
pub fn apply(ruleset: &Value) -> Result<(), NetworkError> {
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NetworkError::Firewall("nft not found: install nftables".into())
            } else {
                NetworkError::Firewall(format!("running nft: {e}"))
            }
        })?;
    let body = serde_json::to_vec(ruleset).map_err(|e| NetworkError::Firewall(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&body)
            .map_err(|e| NetworkError::Firewall(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError::Firewall(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("nft failed")
        .trim()
        .to_owned();
    Err(NetworkError::Firewall(line))
}

/// Turns on IPv4 forwarding in this network namespace (left on, as docker
/// and podman do: other software may rely on it by then).
pub fn enable_forwarding() -> Result<(), NetworkError> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).is_ok_and(|s| s.trim() == "1") {
        return Ok(());
    }
    std::fs::write(p, "1").map_err(|e| NetworkError::Firewall(format!("enabling {p}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(internal: bool) -> NetworkConfig {
        NetworkConfig {
            name: "appnet".into(),
            id: "0123456789abcdef".into(),
            subnet: "10.90.3.0/24".parse().unwrap(),
            gateway: "10.90.3.1".parse().unwrap(),
            bridge: "sk-01234567".into(),
            internal,
            dns: true,
            labels: Default::default(),
            created: String::new(),
        }
    }

    fn ep() -> Endpoint {
        Endpoint {
            tap: "st-0123456789ab".into(),
            ip: "10.90.3.2".parse().unwrap(),
            mac: "02:5f:0a:5a:03:02".into(),
            ports: vec![PortMapping {
                host_ip: "0.0.0.0".parse().unwrap(),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            }],
        }
    }

    /// `nft --check` parses the JSON without touching the kernel's rules
    /// (it needs nftables installed and CAP_NET_ADMIN, as the suite has).
    fn nft_accepts(v: &Value) {
        let mut child = Command::new("nft")
            .args(["--check", "-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (install nftables: scripts/setup.sh)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(v).unwrap())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft refused {v:#}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn nft_accepts_every_shape_of_ruleset() {
        for internal in [false, true] {
            nft_accepts(&ruleset(&net(internal), &[ep()]));
            nft_accepts(&ruleset(&net(internal), &[]));
        }
    }

    #[test]
    fn internal_networks_get_no_masquerade_and_no_dnat() {
        let s = ruleset(&net(true), &[ep()]).to_string();
        assert!(!s.contains("masquerade") && !s.contains("dnat\":{"), "{s}");
        let s = ruleset(&net(false), &[ep()]).to_string();
        assert!(
            s.contains("masquerade") && s.contains("\"dnat\":{\"addr\":\"10.90.3.2\",\"port\":80}"),
            "{s}"
        );
    }
}
