//! `skiff run`: create, start, attach: one path for the foreground and `-d`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use skiff_runtime::container::{self, Container, Containers, StartOptions};

use super::create_args::CreateArgs;
use super::session::{attach_and_pump, PumpEnd};
use super::{exit_code_of, monitor_command, runtime, Context};

/// Exit status for errors of skiff itself, as docker uses.
pub const EXIT_SKIFF_ERROR: u8 = 125;

#[derive(Args)]
#[command(after_help = "Examples:
  skiff run --rm 127.0.0.1:5000/test/busybox echo hello
  echo data | skiff run --rm -i IMAGE sh -c 'cat; exit 3'
  skiff run --rm -it IMAGE sh                 # detach with ctrl-p ctrl-q
  skiff run -d --name web IMAGE httpd -f -p 8080
  skiff run -d --restart on-failure:3 IMAGE sh -c 'exit 1'

The container's exit code becomes skiff's; 125 means skiff itself failed,
126 the command could not be run, 127 it was not found, 130 interrupted.")]
pub struct RunArgs {
    /// Start it in the background and print its ID.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, thiserror::Error)]
#[error("interrupted before the container started")]
struct Interrupted;

pub fn run(ctx: &Context, a: RunArgs, debug: bool) -> ExitCode {
    match run_inner(ctx, a, debug) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<Interrupted>().is_some() {
                eprintln!("Error: {e}");
                return ExitCode::from(130);
            }
            let code = exit_code_of(&e).unwrap_or(EXIT_SKIFF_ERROR);
            eprintln!("Error: {}", crate::output::one_line(&e));
            ExitCode::from(code)
        }
    }
}

fn run_inner(ctx: &Context, a: RunArgs, debug: bool) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let rt = runtime()?;
    let _enter = rt.enter();
    // Registered before anything starts, so that no signal finds its default
    // action: an interrupt during the boot gives the container up cleanly.
    let mut early = EarlySignals::register();

    let c = super::create_args::create(ctx, &a.create, !a.detach)?;
    let containers = Containers::new(&ctx.paths());
    let monitor_pid = Arc::new(AtomicU32::new(0));
    let starting = {
        let (containers, c, pid) = (containers.clone(), c.clone(), monitor_pid.clone());
        let monitor = monitor_command(ctx, debug);
        let attach = !a.detach;
        rt.spawn_blocking(move || {
            container::start(
                &containers,
                &c,
                StartOptions { attach },
                &monitor,
                &mut |p| pid.store(p, Ordering::SeqCst),
            )
        })
    };
    let mut interrupted = false;
    let started = rt.block_on(async {
        tokio::pin!(starting);
        loop {
            tokio::select! {
                r = &mut starting => break r,
                () = early.next() => {
                    interrupted = true;
                    let pid = monitor_pid.load(Ordering::SeqCst) as i32;
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                    }
                }
            }
        }
    })?;
    let started = match started {
        Ok(s) if !interrupted => s,
        Ok(_) => {
            give_up(&containers, &c);
            return Err(Interrupted.into());
        }
        Err(e) => {
            give_up(&containers, &c);
            return Err(if interrupted {
                Interrupted.into()
            } else {
                e.into()
            });
        }
    };
    if a.detach {
        println!("{}", c.id());
        return Ok(ExitCode::SUCCESS);
    }
    let mut started = started;
    drop(early);
    let end = attach_and_pump(&rt, &c, a.create.interactive, true);
    started.attached();
    let end = end?;
    // The monitor ends right after the session: reap it.
    if !matches!(end, PumpEnd::Detached) {
        started.wait_monitor();
    }
    // The stdin reader thread may sit in read(2); don't wait for it.
    rt.shutdown_background();
    match end {
        PumpEnd::Exited { code, timings } => {
            if let (true, Some(t)) = (debug, timings) {
                eprintln!(
                    "skiff: timings: total {:?}; vm boot {:?} (qemu connected {:?}, kernel→init {:?}, init→ready {:?}); setup+create {:?}; command→process start {:?}; process ran {:?}; exit→vm gone {:?}",
                    t0.elapsed(), t.boot_total, t.vm_connected, t.kernel_to_init, t.init_to_ready, t.setup, t.to_process_start, t.process_ran, t.exit_to_vm_gone
                );
            }
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        PumpEnd::Detached => Ok(ExitCode::SUCCESS),
        PumpEnd::Aborted => {
            eprintln!("Error: stopped the container's VM after three interrupts");
            Ok(ExitCode::from(130))
        }
        PumpEnd::Closed => anyhow::bail!("the container ended without an exit status"),
    }
}

/// A start that failed or was interrupted: nothing of it runs on, and a
/// `--rm` container goes (its monitor removes it when it got that far;
/// otherwise this does).
fn give_up(containers: &Containers, c: &Container) {
    let Ok(c) = c.refresh() else { return };
    let rt = tokio::runtime::Handle::current();
    if c.config.auto_remove {
        let _ = rt.block_on(container::remove(containers, &c, true));
    } else {
        let _ = rt.block_on(container::stop(&c, Some(0)));
    }
}

/// INT, TERM, HUP and QUIT while the container starts.
struct EarlySignals {
    rx: tokio::sync::mpsc::Receiver<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl EarlySignals {
    fn register() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let tasks = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ]
        .into_iter()
        .filter_map(|k| signal(k).ok())
        .map(|mut s| {
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let _ = tx.send(()).await;
                }
            })
        })
        .collect();
        Self { rx, tasks }
    }

    async fn next(&mut self) {
        if self.rx.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for EarlySignals {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
