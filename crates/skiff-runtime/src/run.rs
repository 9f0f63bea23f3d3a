//! Running a container's process in a VM: boot, set up the root filesystem,
//! create the process, carry stdio / terminal size / signals across, collect
//! the exit code, power off. The caller (the CLI) owns the terminal and the
//! host's signals and talks to this through [`HostIo`] and [`Control`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use skiff_proto::v1::agent_client::AgentClient;
use skiff_proto::v1::{self, output_chunk};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::debug;

use skiff_sandbox::vm::RunningVm;

/// The id of the container's main process inside the VM.
pub const MAIN_PROCESS: &str = "main";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting the VM: {0}")]
    Boot(#[source] skiff_sandbox::VmError),
    #[error("{what}: {}", status.message())]
    Agent {
        what: &'static str,
        status: Box<tonic::Status>,
    },
    /// The process could not be started; `code` is what a shell reports
    /// (127: not found, 126: not executable), as docker does.
    #[error("{message}")]
    Exec { code: i32, message: String },
    #[error("interrupted before the container started")]
    Interrupted,
    /// The caller gave up on the running container ([`Control::Abort`]).
    #[error("stopped the container's VM after three interrupts")]
    Aborted,
    #[error("the VM stopped unexpectedly: {0}")]
    Lost(String),
}

impl RunError {
    fn agent(what: &'static str) -> impl FnOnce(tonic::Status) -> RunError {
        move |status| RunError::Agent {
            what,
            status: Box::new(status),
        }
    }
}

/// Events from the host side while the process runs.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal(i32),
    /// Stop waiting: kill the VM now (e.g. a third Ctrl-C).
    Abort,
}

/// The host ends of the process's stdio. `stdin` is fed by the caller
/// (`None` at EOF); without `-i` there is none and the process reads /dev/null.
pub struct HostIo {
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Phase timings for `--debug`.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    pub vm_connected: Duration,
    pub kernel_to_init: Duration,
    pub init_to_ready: Duration,
    pub boot_total: Duration,
    pub setup: Duration,
    pub to_process_start: Duration,
    pub process_ran: Duration,
    pub exit_to_vm_gone: Duration,
}

#[derive(Debug)]
pub struct Outcome {
    pub exit_code: i32,
    pub signal: i32,
    pub timings: Timings,
}

pub struct ContainerVm {
    pub vm_config: skiff_sandbox::qemu::VmConfig,
    pub setup: v1::ContainerSetup,
    pub process: v1::ProcessSpec,
    /// The writable layer is thrown away after the run (`--rm`): no need for
    /// the guest to sync and unmount, so the VM is killed at once.
    pub discard: bool,
}

/// Boots the VM and runs the container's main process to completion.
pub async fn run(
    c: ContainerVm,
    io: HostIo,
    mut controls: mpsc::Receiver<Control>,
) -> Result<Outcome, RunError> {
    let t0 = Instant::now();
    let mut timings = Timings::default();

    // Boot, unless the user gives up first.
    let vm = tokio::select! {
        vm = RunningVm::boot(c.vm_config) => vm.map_err(RunError::Boot)?,
        () = wait_abort(&mut controls) => return Err(RunError::Interrupted),
    };
    let bt = vm.timings();
    timings.vm_connected = bt.qemu_connected;
    timings.kernel_to_init = bt.kernel_to_init;
    timings.init_to_ready = bt.init_to_ready;
    timings.boot_total = t0.elapsed();
    debug!(
        "vm up in {:?} (qemu connected {:?}, kernel→init {:?}, init→agent ready {:?})",
        timings.boot_total, bt.qemu_connected, bt.kernel_to_init, bt.init_to_ready
    );

    let result = drive(&vm, c.setup, c.process, io, &mut controls, &mut timings, t0).await;
    let t_exit = Instant::now();
    let down = if c.discard {
        let mut vm = vm;
        vm.kill();
        Ok(())
    } else {
        vm.shutdown(Duration::from_millis(500)).await
    };
    timings.exit_to_vm_gone = t_exit.elapsed();
    debug!(
        "vm gone {:?} after the process exited",
        timings.exit_to_vm_gone
    );
    let (exit_code, signal) = result?;
    if let Err(e) = down {
        debug!("shutdown: {e}");
    }
    Ok(Outcome {
        exit_code,
        signal,
        timings,
    })
}

async fn wait_abort(controls: &mut mpsc::Receiver<Control>) {
    loop {
        match controls.recv().await {
            Some(Control::Abort) | Some(Control::Signal(_)) => return,
            Some(Control::Resize { .. }) => continue,
            // The caller dropped its sender: nothing can abort any more.
            None => std::future::pending::<()>().await,
        }
    }
}

async fn drive(
    vm: &RunningVm,
    setup: v1::ContainerSetup,
    process: v1::ProcessSpec,
    io: HostIo,
    controls: &mut mpsc::Receiver<Control>,
    timings: &mut Timings,
    t0: Instant,
) -> Result<(i32, i32), RunError> {
    let mut agent: AgentClient<Channel> = vm.agent();
    let id = process.id.clone();
    let t = Instant::now();
    agent.setup_container(setup).await.map_err(RunError::agent(
        "setting up the container's root filesystem",
    ))?;
    agent
        .create_process(process)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => RunError::Exec {
                code: 127,
                message: s.message().to_owned(),
            },
            tonic::Code::PermissionDenied => RunError::Exec {
                code: 126,
                message: s.message().to_owned(),
            },
            _ => RunError::agent("creating the process")(s),
        })?;
    timings.setup = t.elapsed();

    // Attach stdio before starting so no output is missed.
    let (in_tx, in_rx) = mpsc::channel::<v1::StdinChunk>(8);
    let _ = in_tx
        .send(v1::StdinChunk {
            id: id.clone(),
            data: Vec::new(),
            eof: false,
        })
        .await;
    let mut output = agent
        .stdio(ReceiverStream::new(in_rx))
        .await
        .map_err(RunError::agent("attaching stdio"))?
        .into_inner();
    let stdin_task = match io.stdin {
        Some(mut host_in) => {
            let tx = in_tx.clone();
            Some(tokio::spawn(async move {
                while let Some(data) = host_in.recv().await {
                    let chunk = v1::StdinChunk {
                        id: String::new(),
                        data,
                        eof: false,
                    };
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                let _ = tx
                    .send(v1::StdinChunk {
                        id: String::new(),
                        data: Vec::new(),
                        eof: true,
                    })
                    .await;
            }))
        }
        None => None,
    };

    let started = agent
        .start_process(v1::ProcessRef { id: id.clone() })
        .await
        .map_err(RunError::agent("starting the process"))?
        .into_inner();
    timings.to_process_start = t0.elapsed();
    let t_start = Instant::now();
    debug!(
        "process {} started (pid {} in the guest) {:?} after the command began",
        id, started.pid, timings.to_process_start
    );

    let mut stdout = io.stdout;
    let mut stderr = io.stderr;
    let mut wait_agent = agent.clone();
    let wait_id = id.clone();
    let mut wait = Box::pin(async move { wait_agent.wait(v1::ProcessRef { id: wait_id }).await });
    let mut exit: Option<v1::ExitStatus> = None;
    let mut output_done = false;
    let mut out_ok = true;
    let mut err_ok = true;
    // After the process exited, output still in flight gets this long.
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut controls_open = true;

    while exit.is_none() || !output_done {
        let deadline = async {
            match drain_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut wait, if exit.is_none() => {
                let st = r.map_err(|s| RunError::Lost(s.message().to_owned()))?.into_inner();
                exit = Some(st);
                drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
            }
            chunk = output.message(), if !output_done => match chunk {
                Ok(Some(c)) => {
                    let (w, ok) = if c.stream == output_chunk::Stream::Stderr as i32 {
                        (&mut stderr, &mut err_ok)
                    } else {
                        (&mut stdout, &mut out_ok)
                    };
                    // A closed host pipe (`skiff run ... | head`) drops the rest.
                    if *ok && (w.write_all(&c.data).await.is_err() || w.flush().await.is_err()) {
                        *ok = false;
                    }
                }
                Ok(None) => output_done = true,
                Err(s) => {
                    debug!("stdio stream ended: {s}");
                    output_done = true;
                }
            },
            ctl = controls.recv(), if controls_open => match ctl {
                Some(Control::Resize { rows, cols }) => {
                    let _ = agent.resize_tty(v1::ResizeRequest { id: id.clone(), rows: rows.into(), cols: cols.into() }).await;
                }
                Some(Control::Signal(sig)) => {
                    let _ = agent.signal(v1::SignalRequest { id: id.clone(), signal: sig, group: false }).await;
                }
                Some(Control::Abort) => return Err(RunError::Aborted),
                None => controls_open = false,
            },
            () = deadline => {
                debug!("output still open 5 s after the process exited; not waiting longer");
                break;
            }
        }
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
    timings.process_ran = t_start.elapsed();
    let st = exit.unwrap_or_default();
    Ok((st.exit_code, st.signal))
}

/// Where skiff-init is: `SKIFF_INIT`, else the first *static* binary among:
/// beside the skiff binary, the build tree's target/skiff-init (written by
/// scripts/build-init.sh; a dev tree also has a dynamic target/debug/skiff-init,
/// which a guest without libc could not run), the system's lib dirs.
pub fn find_init() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_INIT") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("skiff-init"),
        dir.join("../skiff-init"),
        dir.join("../../skiff-init"),
        PathBuf::from("/usr/local/lib/skiff/skiff-init"),
        PathBuf::from("/usr/lib/skiff/skiff-init"),
    ]
    .into_iter()
    .find(|p| skiff_sandbox::kernel::elf::is_static_executable(p))
}
