//! skiff: run OCI containers in lightweight virtual machines.

mod commands;
mod output;
mod progress;
mod resolve;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::container::ContainerCommand;

/// `skiff --version`: what was built, from which commit, for which target,
/// with which allocator.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("SKIFF_COMMIT"),
    "\ntarget: ",
    env!("SKIFF_TARGET"),
    "\nallocator: system"
);

/// Run OCI containers, each in its own lightweight virtual machine.
#[derive(Parser)]
#[command(name = "skiff", version, long_version = LONG_VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Store directory (images, containers, kernel).
    #[arg(long, global = true, env = "SKIFF_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    /// Print debug logs (also: SKIFF_LOG=debug).
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Containerfile (Dockerfile).
    ///
    /// Multi-stage builds, build args, heredocs and the layer cache as with
    /// docker build; RUN steps run in micro-VMs. The image lands in the store,
    /// ready to run, push or save.
    Build(commands::build::BuildArgs),
    /// The build cache: `skiff builder prune` forgets every cached step.
    #[command(subcommand)]
    Builder(commands::build::BuilderCommand),
    /// Manage images: pull, push, list, inspect, tag, remove, save, load, check.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Pull an image (same as `skiff image pull`).
    Pull(commands::image::PullArgs),
    /// Push an image (same as `skiff image push`).
    Push(commands::image::PushArgs),
    /// List images (same as `skiff image ls`).
    Images(commands::image::LsArgs),
    /// Write layer tarballs (tar, tar.gz, tar.zst) into an ext4 image, in order.
    ///
    /// Whiteouts and opaque directories of later layers delete what earlier
    /// ones wrote; ownership, modes, times, xattrs and devices are kept without
    /// root. The result passes `e2fsck -fn` and mounts read-write.
    Mkfs(commands::mkfs::MkfsArgs),
    /// Run a command in a new container, in its own micro-VM.
    ///
    /// Pulls the image if it is not stored, builds its base filesystem once,
    /// boots a VM (KVM when it works, else emulation) and runs the command
    /// with stdio, terminal, signals and exit code carried across; with -d,
    /// in the background, watched by a monitor process of its own.
    Run(commands::run::RunArgs),
    /// Manage containers: create, start, ps, logs, exec, stop, rm, …
    #[command(subcommand)]
    Container(commands::container::ContainerCommand),
    /// Make a container without starting it (same as `skiff container create`).
    Create(commands::create_args::CreateArgs),
    /// Start containers (same as `skiff container start`).
    Start(commands::container::StartArgs),
    /// List containers (same as `skiff container ps`).
    Ps(commands::ps::PsArgs),
    /// Print a container's output (same as `skiff container logs`).
    Logs(commands::container::LogsArgs),
    /// Run a command in a running container (same as `skiff container exec`).
    Exec(commands::container::ExecArgs),
    /// Attach to a running container (same as `skiff container attach`).
    Attach(commands::container::AttachArgs),
    /// Stop containers (same as `skiff container stop`).
    Stop(commands::container::StopArgs),
    /// Signal containers (same as `skiff container kill`).
    Kill(commands::container::KillArgs),
    /// Restart containers (same as `skiff container restart`).
    Restart(commands::container::StopArgs),
    /// Wait for containers to stop (same as `skiff container wait`).
    Wait(commands::container::NamesArgs),
    /// Remove containers (same as `skiff container rm`).
    Rm(commands::container::RmArgs),
    /// Show a container (or, if none has the name, an image) as JSON.
    Inspect(commands::container::InspectArgs),
    /// A container's processes (same as `skiff container top`).
    Top(commands::container::NamesArgs1),
    /// CPU and memory use (same as `skiff container stats`).
    Stats(commands::container::StatsArgs),
    /// Copy files between a container and the host (same as `skiff container cp`).
    Cp(commands::container::CpArgs),
    /// Manage networks: create, ls, inspect, rm, prune.
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Where a container's ports are published on the host.
    Port(commands::network::PortArgs),
    /// Manage named volumes: create, ls, inspect, rm, prune.
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// A container's monitor (started by `skiff start`; not for direct use).
    #[command(name = "__monitor", hide = true)]
    Monitor(commands::monitor::MonitorArgs),
    /// This host's VM setup (accelerator, kernel, QEMU) and the guest kernel.
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(commands::completion::CompletionArgs),
    /// Write man pages for every command into a directory (for releases).
    #[command(name = "__man", hide = true)]
    Man(commands::completion::ManArgs),
    /// Log in to a registry; credentials go to auth.json.
    Login(commands::login::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(commands::login::LogoutArgs),
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.debug |= std::env::var("SKIFF_LOG").is_ok_and(|v| v.contains("debug"));
    init_logging(cli.debug);
    match run(cli) {
        Ok(code) => code,
        // A closed pipe (`skiff image inspect x | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: the context chain joined with ": ".
            eprintln!("Error: {}", output::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = commands::Context::new(cli.root)?;
    match cli.command {
        // Exit codes of its own: the container's, or 125/126/127.
        Command::Run(a) => return Ok(commands::run::run(&ctx, a, cli.debug)),
        Command::Image(commands::image::ImageCommand::Check(a)) => {
            return commands::check::run(&ctx, a)
        }
        Command::Build(a) => return commands::build::build(&ctx, a, cli.debug),
        Command::Builder(c) => commands::build::builder(&ctx, c),
        Command::Container(c) => return container(&ctx, c, cli.debug),
        Command::Create(a) => return container(&ctx, ContainerCommand::Create(a), cli.debug),
        Command::Start(a) => return container(&ctx, ContainerCommand::Start(a), cli.debug),
        Command::Ps(a) => return container(&ctx, ContainerCommand::Ps(a), cli.debug),
        Command::Logs(a) => return container(&ctx, ContainerCommand::Logs(a), cli.debug),
        Command::Exec(a) => return container(&ctx, ContainerCommand::Exec(a), cli.debug),
        Command::Attach(a) => return container(&ctx, ContainerCommand::Attach(a), cli.debug),
        Command::Stop(a) => return container(&ctx, ContainerCommand::Stop(a), cli.debug),
        Command::Kill(a) => return container(&ctx, ContainerCommand::Kill(a), cli.debug),
        Command::Restart(a) => return container(&ctx, ContainerCommand::Restart(a), cli.debug),
        Command::Wait(a) => return container(&ctx, ContainerCommand::Wait(a), cli.debug),
        Command::Rm(a) => return container(&ctx, ContainerCommand::Rm(a), cli.debug),
        Command::Inspect(a) => return inspect(&ctx, a, cli.debug),
        Command::Top(a) => return container(&ctx, ContainerCommand::Top(a), cli.debug),
        Command::Stats(a) => return container(&ctx, ContainerCommand::Stats(a), cli.debug),
        Command::Cp(a) => return container(&ctx, ContainerCommand::Cp(a), cli.debug),
        Command::Network(c) => commands::network::network(&ctx, c),
        Command::Port(a) => commands::network::port(&ctx, a),
        Command::Volume(c) => commands::volume::volume(&ctx, c),
        Command::Monitor(a) => commands::monitor::monitor(&ctx, a, cli.debug),
        Command::System(c) => commands::system::run(&ctx, c, cli.debug),
        Command::Image(c) => commands::image::run(&ctx, c),
        Command::Pull(a) => commands::image::run(&ctx, commands::image::ImageCommand::Pull(a)),
        Command::Push(a) => commands::image::run(&ctx, commands::image::ImageCommand::Push(a)),
        Command::Images(a) => commands::image::run(&ctx, commands::image::ImageCommand::Ls(a)),
        Command::Mkfs(a) => commands::mkfs::mkfs(a),
        Command::Completion(a) => commands::completion::completion(a),
        Command::Man(a) => commands::completion::man(a),
        Command::Login(a) => commands::login::login(&ctx, a),
        Command::Logout(a) => commands::login::logout(&ctx, a),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Container commands fail as docker's do: 125 for `run`, `create` and
/// `exec` (skiff's own errors; 126/127 for a command that cannot run), 1 for
/// the others.
fn container(
    ctx: &commands::Context,
    c: ContainerCommand,
    debug: bool,
) -> anyhow::Result<ExitCode> {
    let own_codes = matches!(
        c,
        ContainerCommand::Create(_) | ContainerCommand::Exec(_) | ContainerCommand::Run(_)
    );
    match commands::container::run(ctx, c, debug) {
        Ok(code) => Ok(code),
        Err(e) if own_codes => {
            eprintln!("Error: {}", output::one_line(&e));
            Ok(ExitCode::from(
                commands::exit_code_of(&e).unwrap_or(commands::run::EXIT_SKIFF_ERROR),
            ))
        }
        Err(e) => Err(e),
    }
}

/// A container of that name, else an image.
fn inspect(
    ctx: &commands::Context,
    a: commands::container::InspectArgs,
    debug: bool,
) -> anyhow::Result<ExitCode> {
    let containers = skiff_runtime::container::Containers::new(&ctx.paths());
    if a.containers.iter().all(|n| containers.find(n).is_ok()) || a.containers.len() > 1 {
        return container(ctx, ContainerCommand::Inspect(a), debug);
    }
    let name = a.containers[0].clone();
    commands::image::run(
        ctx,
        commands::image::ImageCommand::Inspect(commands::image::InspectArgs { reference: name }),
    )
    .map(|()| ExitCode::SUCCESS)
}

fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = if debug {
        EnvFilter::new("debug,hyper=info,hyper_util=info,reqwest=info,rustls=info,h2=info,tower=info,tonic=info")
    } else {
        EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| EnvFilter::new("warn"))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
