//! `skiff container …` and its short forms (`ps`, `start`, `stop`, `logs`,
//! `exec`, …): the lifecycle of containers, each a call into skiff-runtime.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use skiff_runtime::container::{
    self, Container, Containers, CopySource, CopyTarget, ExecOptions, StartOptions,
};
use skiff_runtime::logs::{ReadOptions, Stream};

use super::create_args::CreateArgs;
use super::image::ListFormat;
use super::session::{attach_and_pump, pump, PumpEnd, PumpOptions};
use super::{monitor_command, runtime, Context};
use crate::terminal;

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Run a command in a new container (same as `skiff run`).
    Run(super::run::RunArgs),
    /// Make a container without starting it; prints its ID.
    Create(CreateArgs),
    /// Start stopped containers (-a: attached, as `run` in the foreground).
    Start(StartArgs),
    /// List containers.
    #[command(visible_aliases = ["ls", "list"])]
    Ps(super::ps::PsArgs),
    /// Print a container's output (-f: follow it until it stops).
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Attach to a running container's output and input (detach: ctrl-p ctrl-q).
    Attach(AttachArgs),
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Send a signal (SIGKILL by default) to containers.
    Kill(KillArgs),
    /// Stop and start containers again.
    Restart(StopArgs),
    /// Wait for containers to stop; print their exit codes.
    Wait(NamesArgs),
    /// Remove containers (-f: running ones too).
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all stopped containers.
    Prune,
    /// Show containers as JSON, docker-shaped (`--format '{{.State.Status}}'` for one field).
    Inspect(InspectArgs),
    /// The processes running in a container.
    Top(NamesArgs1),
    /// CPU and memory use of running containers.
    Stats(StatsArgs),
    /// Copy files between a container and the host: `c:/path dest` or `src c:/path`.
    Cp(CpArgs),
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach to its output (and stop it when this command is interrupted three times).
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin too.
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow the log until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub tail: Option<usize>,
    /// Only lines since a time: a duration ago (10m), RFC 3339, or Unix seconds.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines before a time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

#[derive(Args)]
#[command(after_help = "Examples:
  skiff exec web cat /etc/hostname
  skiff exec -it web sh
  skiff exec -e A=1 -u nobody -w /tmp web sh -c 'id; pwd; echo $A'")]
pub struct ExecArgs {
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Start it and return at once.
    #[arg(short, long)]
    pub detach: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not send stdin.
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, 10).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u32>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs1 {
    pub container: String,
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill it first if it runs.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// `json` (the default), or a field as `{{.State.Status}}`.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct StatsArgs {
    /// One reading, then exit.
    #[arg(long)]
    pub no_stream: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Containers (default: every running one).
    pub containers: Vec<String>,
}

#[derive(Args)]
#[command(after_help = "Examples:
  skiff cp web:/etc/hosts .
  skiff cp ./site web:/www/
  skiff cp web:/var/log - | tar -t")]
pub struct CpArgs {
    /// Keep owners (into the container; out of it, files belong to you).
    #[arg(short, long)]
    pub archive: bool,
    /// Follow a symlink at the source.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    pub src: String,
    pub dest: String,
}

/// Runs a container command; its exit code.
pub fn run(ctx: &Context, cmd: ContainerCommand, debug: bool) -> anyhow::Result<ExitCode> {
    let containers = Containers::new(&ctx.paths());
    let rt = runtime()?;
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cmd {
        ContainerCommand::Run(a) => Ok(super::run::run(ctx, a, debug)),
        ContainerCommand::Create(a) => {
            let c = super::create_args::create(ctx, &a, false)?;
            println!("{}", c.id());
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Start(a) => start(ctx, &containers, &rt, a, debug),
        ContainerCommand::Ps(a) => ok(super::ps::ps(ctx, a)),
        ContainerCommand::Logs(a) => ok(logs(&containers, a)),
        ContainerCommand::Exec(a) => exec(&containers, &rt, a),
        ContainerCommand::Attach(a) => attach(&containers, &rt, a),
        ContainerCommand::Stop(a) => ok(each(&containers, &a.containers, |c| {
            rt.block_on(container::stop(c, a.time)).map(|_| ())
        })),
        ContainerCommand::Kill(a) => {
            let signal = skiff_runtime::signal::parse(&a.signal)?;
            ok(each(&containers, &a.containers, |c| {
                rt.block_on(container::kill(c, signal))
            }))
        }
        ContainerCommand::Restart(a) => {
            let monitor = monitor_command(ctx, debug);
            ok(each(&containers, &a.containers, |c| {
                rt.block_on(container::restart(&containers, c, a.time, &monitor))
                    .map(|_| ())
            }))
        }
        ContainerCommand::Wait(a) => ok(each_quiet(&containers, &a.containers, |c| {
            let code = rt.block_on(container::wait(c))?;
            println!("{code}");
            Ok(())
        })),
        ContainerCommand::Rm(a) => ok(each(&containers, &a.containers, |c| {
            rt.block_on(container::remove(&containers, c, a.force))
        })),
        ContainerCommand::Prune => {
            let removed = container::prune(&containers)?;
            println!("Deleted Containers:");
            for (id, _) in &removed {
                println!("{id}");
            }
            let bytes: u64 = removed.iter().map(|(_, b)| b).sum();
            println!(
                "\nTotal reclaimed space: {}",
                crate::output::human_size(bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Inspect(a) => ok(inspect(&containers, a)),
        ContainerCommand::Top(a) => {
            let c = containers.find(&a.container)?;
            let top = rt.block_on(container::top(&c))?;
            let titles: Vec<&str> = top.titles.iter().map(String::as_str).collect();
            print!("{}", crate::output::table(&titles, &top.processes));
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Stats(a) => ok(stats(&containers, &rt, a)),
        ContainerCommand::Cp(a) => ok(cp(&containers, &rt, a)),
    }
}

/// Runs `f` for each named container, printing each name as docker does; an
/// error for one is reported and the rest go on; any failure fails the command.
fn each(
    containers: &Containers,
    names: &[String],
    mut f: impl FnMut(&Container) -> Result<(), container::ContainerError>,
) -> anyhow::Result<()> {
    each_inner(containers, names, true, &mut f)
}

fn each_quiet(
    containers: &Containers,
    names: &[String],
    mut f: impl FnMut(&Container) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    each_named(containers, names, &mut |_, c| f(c))
}

/// Each container by the name given for it; errors reported one per line
/// when there are several.
fn each_named(
    containers: &Containers,
    names: &[String],
    f: &mut dyn FnMut(&str, &Container) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = None;
    for n in names {
        let r = containers
            .find(n)
            .map_err(anyhow::Error::from)
            .and_then(|c| f(n, &c));
        if let Err(e) = r {
            if names.len() > 1 {
                eprintln!("Error: {}", crate::output::one_line(&e));
            }
            failed = Some(e);
        }
    }
    match failed {
        Some(e) if names.len() == 1 => Err(e),
        Some(_) => Err(anyhow::anyhow!("some containers failed")),
        None => Ok(()),
    }
}

/// As docker does, each container is echoed as it was named.
fn each_inner(
    containers: &Containers,
    names: &[String],
    print: bool,
    f: &mut dyn FnMut(&Container) -> Result<(), container::ContainerError>,
) -> anyhow::Result<()> {
    each_named(containers, names, &mut |given, c| {
        f(c)?;
        if print {
            println!("{given}");
        }
        Ok(())
    })
}

fn start(
    ctx: &Context,
    containers: &Containers,
    rt: &tokio::runtime::Runtime,
    a: StartArgs,
    debug: bool,
) -> anyhow::Result<ExitCode> {
    let monitor = monitor_command(ctx, debug);
    if !a.attach {
        // Starting a running container does nothing, as in docker.
        each(containers, &a.containers, |c| {
            match container::start(
                containers,
                c,
                StartOptions::default(),
                &monitor,
                &mut |_| {},
            ) {
                Ok(_) | Err(container::ContainerError::AlreadyRunning(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.containers.len() != 1 {
        anyhow::bail!("start --attach takes one container");
    }
    let c = containers.find(&a.containers[0])?;
    let _enter = rt.enter();
    if c.status().is_active() {
        // Already running: attach to it, as docker's start -a does.
        let stdin = a.interactive && c.config.process.open_stdin;
        let end = attach_and_pump(rt, &c, stdin, false)?;
        return end_code(end, || {});
    }
    let mut started = container::start(
        containers,
        &c,
        StartOptions { attach: true },
        &monitor,
        &mut |_| {},
    )?;
    let stdin = a.interactive && c.config.process.open_stdin;
    let end = attach_and_pump(rt, &c, stdin, true);
    started.attached();
    end_code(end?, || started.wait_monitor())
}

fn end_code(end: PumpEnd, wait: impl FnOnce()) -> anyhow::Result<ExitCode> {
    match end {
        PumpEnd::Exited { code, .. } => {
            wait();
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        PumpEnd::Detached => Ok(ExitCode::SUCCESS),
        PumpEnd::Aborted => {
            wait();
            eprintln!("Error: stopped the container's VM after three interrupts");
            Ok(ExitCode::from(130))
        }
        PumpEnd::Closed => anyhow::bail!("the container ended without an exit status"),
    }
}

fn logs(containers: &Containers, a: LogsArgs) -> anyhow::Result<()> {
    let c = containers.find(&a.container)?;
    let now = SystemTime::now();
    let time = |s: &Option<String>| -> anyhow::Result<Option<SystemTime>> {
        s.as_deref()
            .map(|s| skiff_runtime::logs::parse_time(s, now))
            .transpose()
            .map_err(Into::into)
    };
    let opts = ReadOptions {
        tail: a.tail,
        since: time(&a.since)?,
        until: time(&a.until)?,
        follow: a.follow,
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    container::logs(&c, &opts, &mut |r| {
        let w: &mut dyn Write = match r.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if a.timestamps {
            write!(w, "{} ", skiff_runtime::time::rfc3339(r.time))?;
        }
        w.write_all(&r.line)?;
        if a.follow {
            w.flush()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn exec(
    containers: &Containers,
    rt: &tokio::runtime::Runtime,
    a: ExecArgs,
) -> anyhow::Result<ExitCode> {
    let c = containers.find(&a.container)?;
    let _enter = rt.enter();
    let (session, _pid) = rt.block_on(container::exec(
        &c,
        &ExecOptions {
            args: a.command,
            env: a.env,
            workdir: a.workdir,
            user: a.user,
            tty: a.tty,
            stdin: a.interactive,
            tty_size: a.tty.then(terminal::host_size).flatten(),
            detach: a.detach,
        },
    ))?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let end = rt.block_on(pump(
        session,
        PumpOptions {
            tty: a.tty,
            stdin: a.interactive,
            owner: false,
        },
    ))?;
    end_code(end, || {})
}

fn attach(
    containers: &Containers,
    rt: &tokio::runtime::Runtime,
    a: AttachArgs,
) -> anyhow::Result<ExitCode> {
    let c = containers.find(&a.container)?;
    let _enter = rt.enter();
    let stdin = !a.no_stdin && c.config.process.open_stdin;
    let end = attach_and_pump(rt, &c, stdin, false)?;
    end_code(end, || {})
}

fn inspect(containers: &Containers, a: InspectArgs) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for n in &a.containers {
        all.push(container::inspect(&containers.find(n)?));
    }
    match a.format.as_deref() {
        None | Some("json") => println!("{}", serde_json::to_string_pretty(&all)?),
        Some(template) => {
            for v in &all {
                println!("{}", super::template::render(template, v)?);
            }
        }
    }
    Ok(())
}

fn stats(
    containers: &Containers,
    rt: &tokio::runtime::Runtime,
    a: StatsArgs,
) -> anyhow::Result<()> {
    let chosen: Vec<Container> = if a.containers.is_empty() {
        containers
            .list()?
            .into_iter()
            .filter(|c| c.status().can_exec())
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| containers.find(n))
            .collect::<Result<_, _>>()?
    };
    let interval = Duration::from_millis(if a.no_stream { 500 } else { 1000 });
    let mut prev: Vec<Option<container::Sample>> = vec![None; chosen.len()];
    loop {
        let mut rows = Vec::new();
        let mut json = Vec::new();
        for (i, c) in chosen.iter().enumerate() {
            // A container that stops while watched drops out of the table
            // (one named alone with --no-stream is an error).
            let reading = (|| {
                let first = match prev[i] {
                    Some(s) => s,
                    None => {
                        let s = rt.block_on(container::sample(c))?;
                        std::thread::sleep(interval);
                        s
                    }
                };
                Ok::<_, container::ContainerError>((first, rt.block_on(container::sample(c))?))
            })();
            let (first, now) = match reading {
                Ok(r) => r,
                Err(e) if a.no_stream => return Err(e.into()),
                Err(_) => continue,
            };
            let s = container::Stats::between(&first, &now);
            prev[i] = Some(now);
            let h = crate::output::human_size;
            rows.push(vec![
                c.short_id().to_owned(),
                c.name().to_owned(),
                format!("{:.2}%", s.cpu_percent),
                format!("{} / {}", h(s.memory_used), h(s.memory_limit)),
                format!(
                    "{:.2}%",
                    s.memory_used as f64 * 100.0 / s.memory_limit.max(1) as f64
                ),
                s.pids.to_string(),
                h(s.sandbox_rss),
            ]);
            json.push(serde_json::json!({
                "ID": c.id(), "Name": c.name(), "CPUPerc": s.cpu_percent,
                "MemUsage": s.memory_used, "MemLimit": s.memory_limit, "PIDs": s.pids,
                "SandboxRSS": s.sandbox_rss,
            }));
        }
        match a.format {
            ListFormat::Json => println!("{}", serde_json::to_string_pretty(&json)?),
            ListFormat::Table => {
                if !a.no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    print!("\x1b[2J\x1b[H");
                }
                print!(
                    "{}",
                    crate::output::table(
                        &[
                            "CONTAINER ID",
                            "NAME",
                            "CPU %",
                            "MEM USAGE / LIMIT",
                            "MEM %",
                            "PIDS",
                            "VM RSS"
                        ],
                        &rows
                    )
                );
            }
        }
        if a.no_stream {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// `container:path` → (container, path); a host path otherwise.
fn split_remote(s: &str) -> Option<(&str, &str)> {
    // A path with a slash before the colon is a host path (./a:b).
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

fn cp(containers: &Containers, rt: &tokio::runtime::Runtime, a: CpArgs) -> anyhow::Result<()> {
    let _enter = rt.enter();
    match (split_remote(&a.src), split_remote(&a.dest)) {
        (Some((name, path)), None) => {
            let c = containers.find(name)?;
            let target = if a.dest == "-" {
                CopyTarget::Tar(Box::new(std::io::stdout()))
            } else {
                CopyTarget::Path(PathBuf::from(&a.dest))
            };
            rt.block_on(container::copy_from(&c, path, target, a.follow_link))
                .with_context(|| format!("copying {}", a.src))?;
        }
        (None, Some((name, path))) => {
            let c = containers.find(name)?;
            let src = if a.src == "-" {
                CopySource::Tar(Box::new(std::io::stdin()))
            } else {
                CopySource::Path(PathBuf::from(&a.src))
            };
            rt.block_on(container::copy_to(&c, src, path, a.archive))
                .with_context(|| format!("copying to {}", a.dest))?;
        }
        (Some(_), Some(_)) => {
            anyhow::bail!("copying between two containers is not supported: copy to the host first")
        }
        (None, None) => anyhow::bail!("one of the paths must be CONTAINER:PATH"),
    }
    Ok(())
}
