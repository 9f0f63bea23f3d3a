//! `skiff network`: create, list, inspect and remove networks.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use skiff_runtime::network::{self, CreateNetwork, Ipv4Net, NetworkFile, Networks};

use super::image::ListFormat;
use super::Context;
use crate::output::table;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Make a network: its containers get addresses of its subnet, reach each
    /// other by name, and (unless --internal) the outside through NAT.
    #[command(after_help = "Examples:
  skiff network create appnet
  skiff network create --subnet 10.90.7.0/24 --internal backend
  skiff run -d --name db --network appnet --network-alias database IMG")]
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON: subnet, gateway, bridge and containers.
    Inspect(NamesArgs),
    /// Remove networks (not while a container runs on them).
    #[command(visible_alias = "remove")]
    Rm(NamesArgs),
    /// Remove every user-defined network no container uses.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Subnet in CIDR notation (default: a free /24 of 10.90.0.0/16).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<Ipv4Net>,
    /// The gateway (the host's address on it; default: the first one).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// No outbound access: containers reach only each other.
    #[arg(long)]
    pub internal: bool,
    /// Only the bridge driver exists; accepted for docker's scripts.
    #[arg(short, long, default_value = "bridge", value_parser = ["bridge"])]
    pub driver: String,
    /// A label (KEY=VALUE).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    pub name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not ask (skiff never asks; accepted for docker's scripts).
    #[arg(short, long)]
    pub force: bool,
}

pub fn network(ctx: &Context, cmd: NetworkCommand) -> anyhow::Result<()> {
    let paths = ctx.paths();
    let networks = Networks::new(&paths);
    match cmd {
        NetworkCommand::Create(a) => {
            let labels = super::labels(&a.labels);
            let n = networks
                .create(&CreateNetwork {
                    name: a.name.clone(),
                    subnet: a.subnet,
                    gateway: a.gateway,
                    internal: a.internal,
                    labels,
                })
                .with_context(|| format!("creating network {}", a.name))?;
            println!("{}", n.id);
        }
        NetworkCommand::Ls(a) => {
            // The default network is listed from the start, as docker's bridge.
            networks.ensure_default()?;
            let all = networks.list()?;
            if a.quiet {
                for n in &all {
                    println!("{}", n.config.name);
                }
                return Ok(());
            }
            match a.format {
                ListFormat::Json => {
                    let v: Vec<Value> = all.iter().map(|n| json_of(&paths, n)).collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                ListFormat::Table => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|n| {
                            let c = &n.config;
                            vec![
                                if a.no_trunc {
                                    c.id.clone()
                                } else {
                                    c.id.get(..12).unwrap_or(&c.id).to_owned()
                                },
                                c.name.clone(),
                                "bridge".into(),
                                c.subnet.to_string(),
                                if c.internal { "internal" } else { "nat" }.into(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(
                            &["NETWORK ID", "NAME", "DRIVER", "SUBNET", "OUTBOUND"],
                            &rows
                        )
                    );
                }
            }
        }
        NetworkCommand::Inspect(a) => {
            let mut out = Vec::new();
            for name in &a.names {
                out.push(json_of(&paths, &networks.find(name)?));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCommand::Rm(a) => {
            crate::output::remove_each("network", &a.names, |name| {
                network::remove::remove(&paths, name).map(|_| ())
            })?;
        }
        NetworkCommand::Prune(_) => {
            let removed = network::remove::prune(&paths)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
        }
    }
    Ok(())
}

/// docker's shape: Name, Id, Driver, IPAM.Config, Internal, Containers.
fn json_of(paths: &skiff_runtime::Paths, n: &NetworkFile) -> Value {
    let c = &n.config;
    let containers: serde_json::Map<String, Value> = n
        .leases
        .iter()
        .filter(|l| paths.containers().join(&l.container_id).is_dir())
        .map(|l| {
            (
                l.container_id.clone(),
                json!({
                    "Name": l.names.first().cloned().unwrap_or_default(),
                    "IPv4Address": format!("{}/{}", l.ip, c.subnet.prefix_len()),
                    "MacAddress": l.mac,
                    "Running": l.running,
                }),
            )
        })
        .collect();
    json!({
        "Name": c.name,
        "Id": c.id,
        "Created": c.created,
        "Driver": "bridge",
        "IPAM": {"Config": [{"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()}]},
        "Internal": c.internal,
        "DNSEnabled": c.dns,
        "Options": {"skiff.bridge": c.bridge},
        "Labels": c.labels,
        "Containers": containers,
    })
}

#[derive(Args)]
#[command(after_help = "Examples:
  skiff port web            # 80/tcp -> 0.0.0.0:32768
  skiff port web 80/tcp     # 0.0.0.0:32768")]
pub struct PortArgs {
    pub container: String,
    /// Only this container port (PORT or PORT/PROTO).
    #[arg(value_name = "PORT[/PROTO]")]
    pub port: Option<String>,
}

/// `skiff port`: where a running container's ports are published.
pub fn port(ctx: &Context, a: PortArgs) -> anyhow::Result<()> {
    let containers = skiff_runtime::container::Containers::new(&ctx.paths());
    let c = containers.find(&a.container)?;
    let wanted = match &a.port {
        None => None,
        Some(p) => {
            let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let port: u16 = port
                .parse()
                .with_context(|| format!("invalid port {p:?}: use PORT or PORT/tcp|udp"))?;
            let proto: network::Protocol = proto
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid port {p:?}: use PORT or PORT/tcp|udp"))?;
            Some((port, proto))
        }
    };
    let ports = skiff_runtime::container::ports(&c);
    let shown: Vec<_> = ports
        .iter()
        .filter(|m| wanted.is_none_or(|(p, pr)| m.container_port == p && m.protocol == pr))
        .collect();
    if let (Some(p), true) = (&a.port, shown.is_empty()) {
        anyhow::bail!("no public port {p} published for {}", c.name());
    }
    for m in shown {
        let host = match m.host_ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", m.host_port),
            ip => format!("{ip}:{}", m.host_port),
        };
        if wanted.is_some() {
            println!("{host}");
        } else {
            println!("{}/{} -> {host}", m.container_port, m.protocol);
        }
    }
    Ok(())
}
