//! `skiff run`: a container in its own micro-VM.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use skiff_proto::v1;
use skiff_runtime::container::{self, ContainerConfig, ContainerDir, ContainerState};
use skiff_runtime::image_config::{self, ImageProcess, Overrides};
use skiff_runtime::run::{Control, HostIo, RunError, MAIN_PROCESS};
use skiff_runtime::{rootfs, vmbase, Paths};
use tokio::sync::mpsc;

use super::{runtime, Context};
use crate::resolve;
use crate::terminal;

/// Exit status for errors of skiff itself, as docker uses.
const EXIT_SKIFF_ERROR: u8 = 125;

#[derive(Clone, Copy, ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store.
    Missing,
    /// Pull every time (cheap when nothing changed).
    Always,
    /// Never pull; fail if the image is not in the store.
    Never,
}

#[derive(Args)]
#[command(after_help = "Examples:
  skiff run --rm 127.0.0.1:5000/test/busybox echo hello
  echo data | skiff run --rm -i IMAGE sh -c 'cat; exit 3'
  skiff run --rm -it IMAGE sh
  skiff run --rm -e A=1 -w /tmp -u nobody --entrypoint /bin/sh IMAGE -c 'id; pwd; echo $A'

The container's exit code becomes skiff's; 125 means skiff itself failed,
126 the command could not be run, 127 it was not found.")]
pub struct RunArgs {
    /// Remove the container's files (its writable layer) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep standard input open and send it to the process.
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
    /// Name of the container (default: a generated one).
    #[arg(long)]
    pub name: Option<String>,
    /// Host name inside the container (default: the first 12 digits of its ID).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Virtual CPUs of the VM.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// Memory of the VM (e.g. 512M, 2G).
    #[arg(short, long, default_value = "512M", value_parser = super::mkfs::parse_size)]
    pub memory: u64,
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

pub fn run(ctx: &Context, a: RunArgs, debug: bool) -> ExitCode {
    match run_inner(ctx, a, debug) {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<RunError>() {
                Some(RunError::Exec { code, message }) => {
                    eprintln!("Error: {message}");
                    return ExitCode::from(*code as u8);
                }
                // As a shell reports a command ended by SIGINT.
                Some(RunError::Interrupted | RunError::Aborted) => {
                    eprintln!("Error: {e}");
                    return ExitCode::from(130);
                }
                _ => {}
            }
            eprintln!("Error: {}", crate::output::one_line(&e));
            ExitCode::from(EXIT_SKIFF_ERROR)
        }
    }
}

fn run_inner(ctx: &Context, a: RunArgs, debug: bool) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let store = ctx.store()?;
    let paths = Paths::new(store.root());

    // The image: from the store, pulled if missing (or always).
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

    let image_cfg = ImageProcess::parse_runnable(&store.read_small_blob(&record.config)?)
        .with_context(|| format!("running {}", a.image))?;

    // Its base filesystem, built once and cached.
    // The bar appears only if the filesystem is built now.
    let mut bar: Option<indicatif::ProgressBar> = None;
    let built = rootfs::cached(&store, &record, &Default::default(), &mut |done, total| {
        bar.get_or_insert_with(|| crate::progress::bytes_bar(a.quiet, total, "Writing ext4"))
            .set_position(done);
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (base, built) =
        built.with_context(|| format!("building the base filesystem of {}", a.image))?;
    if built.is_some() {
        tracing::debug!("built {} in {:?}", base.display(), t0.elapsed());
    }

    // The process: image config merged with the command line.
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(a.env.iter().cloned());
    let overrides = Overrides {
        entrypoint: a.entrypoint.clone(),
        args: a.args.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
    };
    let process = image_config::merge(&image_cfg, &overrides, &|k| std::env::var(k).ok())
        .with_context(|| format!("the command to run in {}", a.image))?;

    // The container: state dir + overlay over the base.
    let id = container::new_id();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| container::default_name(&id));
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_owned());
    let memory_mib = u32::try_from(a.memory >> 20).unwrap_or(u32::MAX).max(64);
    let cfg = ContainerConfig {
        id: id.clone(),
        name,
        image: record.name.clone().unwrap_or_else(|| a.image.clone()),
        image_digest: record.digest.to_string(),
        args: process.args.clone(),
        env: process.env.clone(),
        cwd: process.cwd.clone(),
        user: process.user.clone(),
        hostname: hostname.clone(),
        tty: a.tty,
        cpus: a.cpus,
        memory_mib,
        created: container::now(),
    };
    let dir = ContainerDir::create(&paths.containers(), &cfg)?;
    // The owner's pid: a later `skiff ps` can tell a crashed owner by it.
    let _ = dir.set_state(&ContainerState {
        status: "running".into(),
        pid: Some(std::process::id()),
        exit_code: None,
        updated: container::now(),
    });
    // From here on the directory is removed on every way out with --rm.
    let result = run_container(
        &paths, &dir, &base, &a, process, hostname, memory_mib, debug, t0,
    );
    let exited = result.as_ref().ok().copied();
    if a.rm {
        let _ = dir.remove();
    } else {
        let _ = dir.set_state(&ContainerState {
            status: "exited".into(),
            pid: None,
            exit_code: exited,
            updated: container::now(),
        });
    }
    result.map(|code| ExitCode::from(code.clamp(0, 255) as u8))
}

#[allow(clippy::too_many_arguments)]
fn run_container(
    paths: &Paths,
    dir: &ContainerDir,
    base: &Path,
    a: &RunArgs,
    process: image_config::Process,
    hostname: String,
    memory_mib: u32,
    debug: bool,
    t0: Instant,
) -> anyhow::Result<i32> {
    let t = Instant::now();
    skiff_runtime::overlay::create(base, &dir.overlay())?;
    let vm = vmbase::prepare(paths).context("preparing the VM")?;
    tracing::debug!(
        "overlay, kernel, initramfs and accelerator ready in {:?} ({:?} since the command began)",
        t.elapsed(),
        t0.elapsed()
    );
    tracing::debug!(
        "accelerator: {} ({})",
        vm.accel.accel.as_str(),
        vm.accel.reason
    );
    let vm_config = vm.config(dir, a.cpus, memory_mib, debug);

    let stdin_tty = std::io::stdin().is_terminal();
    let tty_size = a.tty.then(terminal::host_size).flatten();
    let spec = v1::ProcessSpec {
        id: MAIN_PROCESS.into(),
        args: process.args,
        env: process.env,
        cwd: process.cwd,
        user: process.user,
        terminal: a.tty,
        stdin: a.interactive,
        tty_size: tty_size.map(|(rows, cols)| v1::TtySize {
            rows: rows.into(),
            cols: cols.into(),
        }),
    };
    let setup = v1::ContainerSetup {
        rootfs_device: "/dev/vda".into(),
        rootfs_fstype: "ext4".into(),
        readonly: false,
        hostname,
        ..Default::default()
    };

    let rt = runtime()?;
    let (ctl_tx, ctl_rx) = mpsc::channel(16);
    // Raw mode only for an interactive terminal session; restored by Drop.
    let _raw = if a.tty && a.interactive && stdin_tty {
        Some(
            terminal::RawMode::enable(rustix::stdio::stdin())
                .context("setting the terminal to raw mode")?,
        )
    } else {
        None
    };
    let stdin = a.interactive.then(spawn_stdin_reader);
    let host_io = HostIo {
        stdin,
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
    };
    let outcome = rt.block_on(async {
        // Registered before the VM starts, so no signal finds the default action.
        let signals = tokio::spawn(forward_signals(ctl_tx, register_signals()));
        let r = skiff_runtime::run::run(
            skiff_runtime::run::ContainerVm {
                vm_config,
                setup,
                process: spec,
                discard: a.rm,
            },
            host_io,
            ctl_rx,
        )
        .await;
        signals.abort();
        r
    });
    // The stdin reader thread may sit in read(2); don't wait for it.
    rt.shutdown_background();
    let outcome = outcome?;
    if debug {
        let t = &outcome.timings;
        eprintln!(
            "skiff: timings: total {:?}; vm boot {:?} (qemu connected {:?}, kernel→init {:?}, init→ready {:?}); setup+create {:?}; command→process start {:?}; process ran {:?}; exit→vm gone {:?}",
            t0.elapsed(), t.boot_total, t.vm_connected, t.kernel_to_init, t.init_to_ready, t.setup, t.to_process_start, t.process_ran, t.exit_to_vm_gone
        );
    }
    Ok(outcome.exit_code)
}

/// Host stdin in chunks, from a plain thread: a blocking read that may never
/// return must not hold up the runtime's shutdown.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    });
    rx
}

fn register_signals() -> Vec<(i32, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{signal, SignalKind};
    [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
        SignalKind::window_change(),
    ]
    .into_iter()
    .filter_map(|k| signal(k).ok().map(|s| (k.as_raw_value(), s)))
    .collect()
}

/// The host's signals go to the container's process (docker's sig-proxy).
/// Three SIGINTs within two seconds give up on the container.
async fn forward_signals(
    tx: mpsc::Sender<Control>,
    signals: Vec<(i32, tokio::signal::unix::Signal)>,
) {
    let (sig_tx, mut sig_rx) = mpsc::channel::<i32>(16);
    for (raw, mut s) in signals {
        let t = sig_tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if t.send(raw).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut interrupts: Vec<Instant> = Vec::new();
    while let Some(sig) = sig_rx.recv().await {
        let ctl = if sig == rustix::process::Signal::WINCH.as_raw() {
            match terminal::host_size() {
                Some((rows, cols)) => Control::Resize { rows, cols },
                None => continue,
            }
        } else if sig == rustix::process::Signal::INT.as_raw() {
            interrupts.retain(|t| t.elapsed() < Duration::from_secs(2));
            interrupts.push(Instant::now());
            if interrupts.len() >= 3 {
                Control::Abort
            } else {
                Control::Signal(sig)
            }
        } else {
            Control::Signal(sig)
        };
        if tx.send(ctl).await.is_err() {
            return;
        }
    }
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
