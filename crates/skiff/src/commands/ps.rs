//! `skiff ps`: containers as a table or JSON, docker's filters.

use clap::Args;
use serde_json::{json, Value};
use skiff_runtime::container::state::{ContainerStatus, HealthStatus};
use skiff_runtime::container::{Container, Containers};

use super::image::ListFormat;
use super::Context;
use crate::output::{human_duration, secs_since, table};

#[derive(Args)]
#[command(after_help = "Examples:
  skiff ps                          # running containers
  skiff ps -a --filter status=exited
  skiff ps -q --filter label=app=web
  skiff ps --format json | jq '.[].Names'")]
pub struct PsArgs {
    /// All containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// name=…, id=…, status=created|running|restarting|exited, label=KEY[=VALUE];
    /// one key given twice matches either value.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

pub fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<()> {
    let filters = Filters::parse(&a.filter)?;
    let all = Containers::new(&ctx.paths()).list()?;
    let shown: Vec<&Container> = all
        .iter()
        .filter(|c| (a.all || c.status().is_active() || filters.has_status()) && filters.matches(c))
        .collect();
    if a.quiet {
        for c in shown {
            println!("{}", if a.no_trunc { c.id() } else { c.short_id() });
        }
        return Ok(());
    }
    match a.format {
        ListFormat::Json => {
            let v: Vec<Value> = shown.iter().map(|c| json_of(c)).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ListFormat::Table => {
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|c| {
                    vec![
                        if a.no_trunc { c.id() } else { c.short_id() }.to_owned(),
                        c.config.image.clone(),
                        command(c, a.no_trunc),
                        format!(
                            "{} ago",
                            human_duration(secs_since(Some(&c.config.created)))
                        ),
                        status(c),
                        ports(c),
                        c.name().to_owned(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "CONTAINER ID",
                        "IMAGE",
                        "COMMAND",
                        "CREATED",
                        "STATUS",
                        "PORTS",
                        "NAMES"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(())
}

fn command(c: &Container, full: bool) -> String {
    let cmd = c.config.process.args.join(" ");
    if full || cmd.chars().count() <= 20 {
        format!("\"{cmd}\"")
    } else {
        format!("\"{}…\"", cmd.chars().take(19).collect::<String>())
    }
}

/// docker's STATUS column.
pub fn status(c: &Container) -> String {
    let st = &c.state;
    let health = st.health.as_ref().map(|h| match h.status {
        HealthStatus::Starting => " (health: starting)",
        HealthStatus::Healthy => " (healthy)",
        HealthStatus::Unhealthy => " (unhealthy)",
    });
    match st.status {
        ContainerStatus::Created => "Created".into(),
        ContainerStatus::Starting => "Starting".into(),
        ContainerStatus::Running => format!(
            "Up {}{}",
            human_duration(secs_since(st.started_at.as_deref())),
            health.unwrap_or("")
        ),
        ContainerStatus::Stopping => "Stopping".into(),
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code.unwrap_or(0),
            human_duration(secs_since(st.finished_at.as_deref()))
        ),
        ContainerStatus::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code.unwrap_or(0),
            human_duration(secs_since(st.finished_at.as_deref()))
        ),
    }
}

fn json_of(c: &Container) -> Value {
    json!({
        "Id": c.id(),
        "Names": c.name(),
        "Image": c.config.image,
        "ImageID": c.config.image_id,
        "Command": c.config.process.args.join(" "),
        "Created": c.config.created,
        "State": c.status().as_str(),
        "Status": status(c),
        "ExitCode": c.state.exit_code,
        "Health": c.state.health.as_ref().map(|h| h.status.as_str()),
        "RestartCount": c.state.restart_count,
        "Labels": c.config.labels,
        "Error": c.state.error,
        "Ports": ports(c),
        "Networks": c.config.network.mode_name(),
    })
}

/// docker's PORTS column: `0.0.0.0:8080->80/tcp, …`.
fn ports(c: &Container) -> String {
    skiff_runtime::container::ports(c)
        .iter()
        .map(|m| {
            format!(
                "{}:{}->{}/{}",
                m.host_ip, m.host_port, m.container_port, m.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--filter`s: a container must match every key, and one value of each.
struct Filters(Vec<(String, Vec<String>)>);

impl Filters {
    fn parse(raw: &[String]) -> anyhow::Result<Self> {
        let mut by_key: Vec<(String, Vec<String>)> = Vec::new();
        for f in raw {
            let Some((k, v)) = f.split_once('=') else {
                anyhow::bail!("bad filter {f:?}: use KEY=VALUE (name, id, status, label)");
            };
            if !["name", "id", "status", "label"].contains(&k) {
                anyhow::bail!("unknown filter {k:?}: use name, id, status or label");
            }
            match by_key.iter_mut().find(|(key, _)| key == k) {
                Some((_, vs)) => vs.push(v.to_owned()),
                None => by_key.push((k.to_owned(), vec![v.to_owned()])),
            }
        }
        Ok(Self(by_key))
    }

    fn has_status(&self) -> bool {
        self.0.iter().any(|(k, _)| k == "status")
    }

    fn matches(&self, c: &Container) -> bool {
        self.0.iter().all(|(k, vs)| {
            vs.iter().any(|v| match k.as_str() {
                "name" => c.name().contains(v.as_str()),
                "id" => c.id().starts_with(v.as_str()),
                "status" => c.status().as_str() == v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => c.config.labels.get(lk).is_some_and(|x| x == lv),
                    None => c.config.labels.contains_key(v.as_str()),
                },
                _ => false,
            })
        })
    }
}
