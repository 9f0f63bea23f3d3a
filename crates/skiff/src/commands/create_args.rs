//! The flags `run` and `create` share, and making a container from them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use skiff_runtime::container::config::RestartPolicy;
use skiff_runtime::container::security_config::SecurityOptions;
use skiff_runtime::container::{
    self, Container, Containers, CreateOptions, HealthOptions, NetworkOptions,
};
use skiff_runtime::image_config::Overrides;

use super::Context;
use crate::resolve;

#[derive(Clone, Copy, ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store.
    Missing,
    /// Pull every time (cheap when nothing changed).
    Always,
    /// Never pull; fail if the image is not in the store.
    Never,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    skiff_runtime::logs::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Args)]
// docker's -h is the host name; help stays on --help.
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Name of the container (default: a generated one).
    #[arg(long)]
    pub name: Option<String>,
    /// Keep standard input open (and, in the foreground, send yours to it).
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal (with -i: an interactive session; Ctrl-C goes to the process).
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE), or pass the caller's (KEY).
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name, uid, name:group or uid:gid.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Replace the image's entrypoint (its CMD is dropped too, as in docker).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Host name inside the container (default: the first 12 digits of its ID).
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Network to join: a name or ID from `skiff network ls`, none (loopback
    /// only) or passt (user mode). Default: the skiff network for root, passt
    /// for other users.
    #[arg(long, alias = "net", value_name = "NETWORK", env = "SKIFF_NETWORK")]
    pub network: Option<String>,
    /// Another name for the container on its (user-defined) network.
    #[arg(long = "network-alias", alias = "net-alias", value_name = "NAME")]
    pub network_aliases: Vec<String>,
    /// Publish a container port on the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp],
    /// ranges as 8000-8001:80-81. No host port: a free one (see `skiff port`).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:]HOST:CONTAINER[/PROTO]"
    )]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs, each on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Name server for the container (default: the network's, which knows
    /// the other containers' names and asks the host's for the rest).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// resolv.conf option (e.g. ndots:2).
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
    pub dns_options: Vec<String>,
    /// Mount the root filesystem read-only (writes fail with EROFS; --tmpfs
    /// mounts stay writable).
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS], e.g. /tmp:size=64m,mode=1777
    /// (default options noexec,nosuid,nodev, as docker).
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// A mount: type=bind,src=HOST_DIR,dst=PATH[,readonly],
    /// type=volume,src=NAME,dst=PATH[,readonly][,volume-nocopy] or
    /// type=tmpfs,dst=PATH[,tmpfs-size=64m][,tmpfs-mode=1777][,readonly].
    #[arg(long, value_name = "type=bind|volume|tmpfs,…")]
    pub mount: Vec<String>,
    /// Share a host directory, HOST_DIR:DIR[:ro] (HOST_DIR absolute or
    /// ./relative; writes show on the host at once, virtio-fs; :ro is enforced
    /// on the host side), or mount a named volume, NAME:DIR[:ro|:nocopy]
    /// (made if missing; an empty one receives the image's files at DIR).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DIR[:OPTS]")]
    pub volumes: Vec<String>,
    /// Give the container every capability, no seccomp filter and its VM's
    /// whole /dev (the VM still keeps it off the host's kernel).
    #[arg(long)]
    pub privileged: bool,
    /// Add a Linux capability to docker's default set (e.g. NET_ADMIN, or
    /// ALL); processes of a non-root --user get the added ones too.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (e.g. CHOWN, or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json (docker's
    /// format; the default is docker's default profile).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// The most processes and threads the container may have (-1: no limit).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// A resource limit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048; -1 is unlimited).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (default 64M).
    #[arg(long = "shm-size", value_name = "SIZE", value_parser = super::mkfs::parse_size)]
    pub shm_size: Option<u64>,
    /// A kernel setting for the container: KEY=VALUE (e.g.
    /// net.core.somaxconn=1024). The kernel is the container's VM's own, so
    /// any setting it has may be given.
    #[arg(long, value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// Add a line to /etc/hosts.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// Virtual CPUs of the VM.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// Memory of the VM (e.g. 512M, 2G).
    #[arg(short, long, default_value = "512M", value_parser = super::mkfs::parse_size)]
    pub memory: u64,
    /// A label (KEY=VALUE) for `ps --filter label=…`.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Start it again when it exits: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: RestartPolicy,
    /// Remove the container (its writable layer and log) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Signal that `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Write the container's ID to this file.
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// Healthcheck command, run with /bin/sh -c in the container.
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between healthchecks (e.g. 30s, 1m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_interval: Option<Duration>,
    /// Longest a healthcheck may run.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: Option<Duration>,
    /// Failures in a row that make the container unhealthy.
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time to start up in, during which failures do not count.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_start_period: Option<Duration>,
    /// No healthcheck, not even the image's HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Log options: max-size=10m, max-file=3 (json-file, rotated).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    /// Platform to pull for a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// When to pull the image.
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// No pull or filesystem progress.
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to run.
    pub image: String,
    /// Command and arguments (default: the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Makes the container (pulling its image first if the policy says so).
/// `foreground`: a `run` that stays attached, whose input ends the
/// container's stdin when it ends.
pub fn create(ctx: &Context, a: &CreateArgs, foreground: bool) -> anyhow::Result<Container> {
    let store = ctx.store()?;
    let local = resolve::find(&store.read_index()?, &ctx.registries()?, &a.image);
    let record = match (a.pull, local) {
        (PullPolicy::Never, Ok(f)) | (PullPolicy::Missing, Ok(f)) => f.record,
        (PullPolicy::Never, Err(e)) => return Err(e.context("--pull never")),
        (PullPolicy::Missing, Err(_)) | (PullPolicy::Always, _) => {
            if !a.quiet && matches!(a.pull, PullPolicy::Missing) {
                eprintln!("Unable to find image '{}' locally", a.image);
            }
            super::image::pull_record(ctx, &a.image, a.platform.as_deref(), 4, a.quiet)?
        }
    };
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(a.env.iter().cloned());
    let labels = super::labels(&a.labels);
    let opts = CreateOptions {
        name: a.name.clone(),
        image: a.image.clone(),
        overrides: Overrides {
            entrypoint: a.entrypoint.clone(),
            args: a.args.clone(),
            env,
            workdir: a.workdir.clone(),
            user: a.user.clone(),
        },
        hostname: a.hostname.clone(),
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: a.interactive && foreground,
        cpus: a.cpus,
        memory_mib: u32::try_from(a.memory >> 20).unwrap_or(u32::MAX),
        labels,
        restart: a.restart,
        auto_remove: a.rm,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        health: HealthOptions {
            cmd: a.health_cmd.clone(),
            interval: a.health_interval,
            timeout: a.health_timeout,
            start_period: a.health_start_period,
            retries: a.health_retries,
            disable: a.no_healthcheck,
        },
        log_opts: a.log_opts.clone(),
        readonly_root: a.read_only,
        tmpfs: a.tmpfs.clone(),
        mounts: a.mount.clone(),
        volumes: a.volumes.clone(),
        security: SecurityOptions {
            privileged: a.privileged,
            cap_add: a.cap_add.clone(),
            cap_drop: a.cap_drop.clone(),
            security_opts: a.security_opt.clone(),
            pids_limit: a.pids_limit,
            ulimits: a.ulimit.clone(),
            shm_size: a.shm_size,
            sysctls: a.sysctl.clone(),
        },
        network: NetworkOptions {
            network: a.network.clone(),
            aliases: a.network_aliases.clone(),
            publish: a.publish.clone(),
            publish_all: a.publish_all,
            dns: a.dns.clone(),
            dns_search: a.dns_search.clone(),
            dns_options: a.dns_options.clone(),
            add_hosts: a.add_hosts.clone(),
        },
        changes_to: None,
    };
    if let Some(p) = &a.cidfile {
        if p.exists() {
            anyhow::bail!("the container ID file {} exists already", p.display());
        }
    }
    let containers = Containers::new(&ctx.paths());
    // The bar appears only if the base filesystem is built now.
    let mut bar: Option<indicatif::ProgressBar> = None;
    let c = container::create(&containers, &store, &record, &opts, &mut |done, total| {
        bar.get_or_insert_with(|| crate::progress::bytes_bar(a.quiet, total, "Writing ext4"))
            .set_position(done);
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let c = c?;
    if let Some(p) = &a.cidfile {
        std::fs::write(p, c.id()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(c)
}

fn read_env_file(p: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading env file {}", p.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
