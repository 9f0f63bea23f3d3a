//! skiff: run OCI containers in lightweight virtual machines.

mod commands;
mod output;
mod progress;
mod resolve;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run OCI containers, each in its own lightweight virtual machine.
#[derive(Parser)]
#[command(name = "skiff", version, about, long_about = None, propagate_version = true)]
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
    /// Manage images: pull, push, list, inspect, tag, remove, save, load.
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
    /// with stdio, terminal, signals and exit code carried across.
    Run(commands::run::RunArgs),
    /// This host's VM setup (accelerator, kernel, QEMU) and the guest kernel.
    #[command(subcommand)]
    System(commands::system::SystemCommand),
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
        Command::System(c) => commands::system::run(&ctx, c),
        Command::Image(c) => commands::image::run(&ctx, c),
        Command::Pull(a) => commands::image::run(&ctx, commands::image::ImageCommand::Pull(a)),
        Command::Push(a) => commands::image::run(&ctx, commands::image::ImageCommand::Push(a)),
        Command::Images(a) => commands::image::run(&ctx, commands::image::ImageCommand::Ls(a)),
        Command::Mkfs(a) => commands::mkfs::mkfs(a),
        Command::Login(a) => commands::login::login(&ctx, a),
        Command::Logout(a) => commands::login::logout(&ctx, a),
    }
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
