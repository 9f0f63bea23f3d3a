//! `skiff system`: what this host runs containers with, and the guest kernel.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use skiff_runtime::Paths;
use skiff_sandbox::kernel::{self, KernelSource};

use super::image::ListFormat as Format;
use super::Context;

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show the accelerator in use (kvm or tcg) and why, the kernel, QEMU, skiff-init and store paths.
    Info(InfoArgs),
    /// Manage the guest kernel.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Start what should run after the host started: containers with
    /// `--restart always`, and `unless-stopped` ones no user stopped.
    ///
    /// skiff has no daemon that comes up at boot; call this from a systemd
    /// unit (see the README) or any boot script.
    Boot,
    /// Remove everything: containers (killed first), networks with their
    /// bridges and rules, images and caches. The guest kernel stays.
    Reset(ResetArgs),
}

#[derive(Args)]
pub struct ResetArgs {
    /// Do not ask first.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum KernelCommand {
    /// Install the guest kernel: Debian's linux-image-cloud-amd64 by default
    /// (apt-get download + dpkg-deb -x; no package is installed on the host).
    Install(KernelInstallArgs),
}

#[derive(Args)]
pub struct KernelInstallArgs {
    /// Use this downloaded linux-image-*.deb instead of apt-get download.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    pub deb: Option<PathBuf>,
    /// Use an unpacked kernel package tree (boot/vmlinuz-*, lib/modules/*).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(ctx: &Context, cmd: SystemCommand, debug: bool) -> anyhow::Result<()> {
    match cmd {
        SystemCommand::Info(a) => info(ctx, a),
        SystemCommand::Kernel(KernelCommand::Install(a)) => install(ctx, a),
        SystemCommand::Boot => boot(ctx, debug),
        SystemCommand::Reset(a) => reset(ctx, a),
    }
}

fn reset(ctx: &Context, a: ResetArgs) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    if !a.force {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("system reset removes every container, network and image: pass --force");
        }
        eprint!(
            "This removes every container, network and image under {}. Continue? [y/N] ",
            ctx.root().display()
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("cancelled");
        }
    }
    let report = super::runtime()?
        .block_on(skiff_runtime::reset::reset(&ctx.paths()))
        .context("resetting the store")?;
    println!(
        "Removed {} containers and {} networks; images and caches deleted",
        report.containers, report.networks
    );
    Ok(())
}

fn boot(ctx: &Context, debug: bool) -> anyhow::Result<()> {
    use skiff_runtime::container::{self, Containers, StartOptions};
    let containers = Containers::new(&ctx.paths());
    let monitor = super::monitor_command(ctx, debug);
    let mut failed = 0;
    for c in container::wanted_at_boot(&containers)? {
        match container::start(
            &containers,
            &c,
            StartOptions::default(),
            &monitor,
            &mut |_| {},
        ) {
            Ok(_) => println!("{}", c.name()),
            Err(e) => {
                failed += 1;
                eprintln!("Error: starting {}: {e}", c.name());
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} containers did not start");
    }
    Ok(())
}

fn install(ctx: &Context, a: KernelInstallArgs) -> anyhow::Result<()> {
    let paths = Paths::new(ctx.root());
    let source = match (a.deb, a.dir) {
        (Some(d), _) => KernelSource::Deb(d),
        (_, Some(d)) => KernelSource::Dir(d),
        _ => KernelSource::Apt,
    };
    std::fs::create_dir_all(paths.kernels())
        .with_context(|| format!("creating {}", paths.kernels().display()))?;
    let spinner = crate::progress::spinner("Installing the guest kernel");
    let k = kernel::install(paths.kernels(), source);
    spinner.finish_and_clear();
    let k = k.context("installing the guest kernel")?;
    eprintln!(
        "Installed kernel {} ({} modules) in {}",
        k.release,
        k.modules.len(),
        paths.kernels().display()
    );
    println!("{}", k.vmlinux.display());
    Ok(())
}

#[derive(Serialize)]
struct Info {
    accelerator: Option<String>,
    accelerator_reason: String,
    kernel: Option<String>,
    kernel_path: Option<String>,
    qemu: Option<String>,
    qemu_version: Option<String>,
    init: Option<String>,
    root: String,
    kernels_dir: String,
    containers_dir: String,
    cache_dir: String,
}

fn info(ctx: &Context, a: InfoArgs) -> anyhow::Result<()> {
    let paths = Paths::new(ctx.root());
    let init = skiff_runtime::vmbase::find_init();
    let kernel = kernel::find(paths.kernels());
    let qemu = skiff_sandbox::qemu::QemuBinary::find();
    let mut info = Info {
        accelerator: None,
        accelerator_reason: String::new(),
        kernel: kernel.as_ref().ok().map(|k| k.release.clone()),
        kernel_path: kernel
            .as_ref()
            .ok()
            .map(|k| k.vmlinux.display().to_string()),
        qemu: qemu.as_ref().ok().map(|q| q.path.display().to_string()),
        qemu_version: qemu.as_ref().ok().and_then(|q| q.version().ok()),
        init: init.as_ref().map(|p| p.display().to_string()),
        root: paths.root().display().to_string(),
        kernels_dir: paths.kernels().display().to_string(),
        containers_dir: paths.containers().display().to_string(),
        cache_dir: paths.cache().display().to_string(),
    };
    match skiff_runtime::vmbase::prepare(&paths) {
        Ok(vm) => {
            info.accelerator = Some(vm.accel.accel.as_str().to_owned());
            info.accelerator_reason = vm.accel.reason.clone();
        }
        Err(e) => info.accelerator_reason = format!("cannot start VMs: {e}"),
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        Format::Table => {
            let or =
                |o: &Option<String>, missing: &str| o.clone().unwrap_or_else(|| missing.to_owned());
            println!(
                "Accelerator:  {} ({})",
                or(&info.accelerator, "none"),
                info.accelerator_reason
            );
            println!(
                "Kernel:       {}",
                match &kernel {
                    Ok(k) => format!("{} ({})", k.release, k.vmlinux.display()),
                    Err(e) => format!("not installed ({e})"),
                }
            );
            println!(
                "QEMU:         {}",
                match (&info.qemu, &info.qemu_version) {
                    (Some(p), Some(v)) => format!("{p} ({v})"),
                    (Some(p), None) => p.clone(),
                    _ => "not found (apt-get install qemu-system-x86)".into(),
                }
            );
            println!(
                "skiff-init:   {}",
                or(
                    &info.init,
                    "not found (scripts/build-init.sh, or set SKIFF_INIT)"
                )
            );
            println!("Store:        {}", info.root);
            println!("Kernels:      {}", info.kernels_dir);
            println!("Containers:   {}", info.containers_dir);
            println!("Cache:        {}", info.cache_dir);
        }
    }
    Ok(())
}
