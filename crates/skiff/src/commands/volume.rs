//! `skiff volume`: create, list, inspect and remove named volumes.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use skiff_runtime::volume::{self, Volume};

use super::image::ListFormat;
use super::Context;
use crate::output::{human_size, table};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Make a volume: an ext4 filesystem of its own (a sparse image file:
    /// it takes on the host what is written to it). `run -v NAME:/path`
    /// makes one too when NAME does not exist.
    #[command(after_help = "Examples:
  skiff volume create pgdata
  skiff volume create --size 8G --label app=db cache
  skiff run --rm -v pgdata:/var/lib/db IMG ...

A volume is mounted by one running container at a time. On first use, an
empty volume receives what the image has at its mount point (docker's rule;
-v NAME:/path:nocopy or --mount ...,volume-nocopy says no).")]
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON.
    Inspect(NamesArgs),
    /// Remove volumes (not while a container names them).
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove every volume no container names.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// How much the filesystem holds (e.g. 8G; default 64G, sparse).
    #[arg(long, value_parser = super::mkfs::parse_size)]
    pub size: Option<u64>,
    /// Driver option; only size=SIZE (as --size).
    #[arg(short = 'o', long = "opt", value_name = "size=SIZE")]
    pub opts: Vec<String>,
    /// Only the local driver exists; accepted for docker's scripts.
    #[arg(short, long, default_value = "local", value_parser = ["local"])]
    pub driver: String,
    /// A label (KEY=VALUE).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Default: a random name.
    pub name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Accepted for docker's scripts; a volume a container names is still kept.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not ask (skiff never asks; accepted for docker's scripts).
    #[arg(short, long)]
    pub force: bool,
    /// Every unused volume (skiff's volumes are all named, so always).
    #[arg(short, long)]
    pub all: bool,
}

pub fn volume(ctx: &Context, cmd: VolumeCommand) -> anyhow::Result<()> {
    let paths = ctx.paths();
    match cmd {
        VolumeCommand::Create(a) => {
            let mut size = a.size;
            for o in &a.opts {
                match o.split_once('=') {
                    Some(("size", v)) => {
                        size = Some(
                            super::mkfs::parse_size(v)
                                .map_err(|e| anyhow::anyhow!("invalid volume option {o:?}: {e}"))?,
                        )
                    }
                    _ => anyhow::bail!("invalid volume option {o:?}: only size=SIZE is known"),
                }
            }
            let labels = super::labels(&a.labels);
            let name = a
                .name
                .clone()
                .unwrap_or_else(skiff_util::id::random_hex::<32>);
            let (v, _) =
                volume::ensure(&paths, &name, size.unwrap_or(volume::DEFAULT_SIZE), &labels)
                    .with_context(|| format!("creating volume {name}"))?;
            println!("{}", v.name);
        }
        VolumeCommand::Ls(a) => {
            let all = volume::list(&paths)?;
            if a.quiet {
                for v in &all {
                    println!("{}", v.name);
                }
                return Ok(());
            }
            match a.format {
                ListFormat::Json => {
                    let v: Vec<Value> = all.iter().map(json_of).collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                ListFormat::Table => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|v| {
                            vec![
                                "local".into(),
                                v.name.clone(),
                                human_size(v.size),
                                human_size(v.disk_usage()),
                                v.user()
                                    .map(|c| c.get(..12).unwrap_or(&c).to_owned())
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(
                            &["DRIVER", "VOLUME NAME", "SIZE", "ON DISK", "MOUNTED BY"],
                            &rows
                        )
                    );
                }
            }
        }
        VolumeCommand::Inspect(a) => {
            let mut out = Vec::new();
            for name in &a.names {
                out.push(json_of(&volume::load(&paths, name)?));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCommand::Rm(a) => {
            crate::output::remove_each("volume", &a.names, |name| volume::remove(&paths, name))?;
        }
        VolumeCommand::Prune(_) => {
            let removed = volume::prune(&paths)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for (name, _) in &removed {
                    println!("{name}");
                }
            }
            let bytes: u64 = removed.iter().map(|(_, b)| b).sum();
            println!("\nTotal reclaimed space: {}", human_size(bytes));
        }
    }
    Ok(())
}

/// docker's shape, with the image file as the Mountpoint.
fn json_of(v: &Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.disk(),
        "CreatedAt": v.created,
        "Labels": v.labels,
        "Scope": "local",
        "Options": {"size": v.size.to_string(), "type": "ext4"},
        "UsageData": {"Size": v.disk_usage()},
        "MountedBy": v.user(),
    })
}
