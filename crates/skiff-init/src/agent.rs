//! The Agent service: what the host asks of the guest.
//!
//! Everything here also runs as an ordinary process on a host (mode
//! [`Mode::Host`]), which is how it is tested; only the steps that would
//! change the machine itself (switching root, powering off) are PID-1 only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::process::Signal;
use skiff_proto::v1::agent_server::Agent;
use skiff_proto::v1::{
    ArchiveChunk, ContainerSetup, CreateProcessResponse, Empty, ExitStatus, GuestStats,
    HelloRequest, HelloResponse, MountRequest, NetworkConfig, PathRequest, PathStat, ProcessList,
    ProcessRef, ProcessSpec, ResizeRequest, ShutdownRequest, SignalRequest, StartProcessResponse,
    StdinChunk,
};
use skiff_proto::PROTOCOL_VERSION;
use tonic::{Request, Response, Status, Streaming};

use crate::clock::boottime_us;
use crate::guest::namespaces::{Container, NamespaceError};
use crate::process::Process;
use crate::reaper::{ReapMode, Reaper};
use crate::stdio::OutputStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a guest: reaps everything, may switch root and power off.
    Guest,
    /// An ordinary process (tests): reaps only its own children, never
    /// touches the machine.
    Host,
}

#[derive(Clone)]
pub struct AgentService {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Mode,
    init_started_us: u64,
    ready_us: AtomicU64,
    reaper: Arc<Reaper>,
    processes: Mutex<HashMap<String, Arc<Process>>>,
    main: Mutex<Option<Arc<Process>>>,
    setup_done: AtomicBool,
    /// The container's namespaces and confinement, from SetupContainer.
    container: Mutex<Option<Arc<Container>>>,
    /// A build step's overlay layers, from SetupContainer.
    changes: Mutex<Option<Arc<crate::guest::container_root::ChangesDirs>>>,
    shutting_down: AtomicBool,
}

/// In host mode, a service that goes away takes its processes with it (a
/// guest's PID 1 never goes away: its VM does).
impl Drop for Inner {
    fn drop(&mut self) {
        if self.mode == Mode::Host {
            self.reaper.kill_all(Signal::KILL);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn signal_from(n: i32) -> Result<Signal, Status> {
    Signal::from_named_raw(n).ok_or_else(|| Status::invalid_argument(format!("unknown signal {n}")))
}

/// Runs file system or /proc work off the runtime's thread (the guest's
/// runtime has only one).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("a blocking task failed: {e}")))
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

impl AgentService {
    /// Starts the reaper on the current tokio runtime.
    pub fn new(mode: Mode, init_started_us: u64) -> std::io::Result<Self> {
        let reaper = Reaper::start(match mode {
            Mode::Guest => ReapMode::All,
            Mode::Host => ReapMode::Registered,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                mode,
                init_started_us,
                ready_us: AtomicU64::new(boottime_us()),
                reaper,
                processes: Mutex::new(HashMap::new()),
                main: Mutex::new(None),
                setup_done: AtomicBool::new(false),
                container: Mutex::new(None),
                changes: Mutex::new(None),
                shutting_down: AtomicBool::new(false),
            }),
        })
    }

    /// Records when the control channel became ready (for Hello).
    pub fn set_ready_us(&self, us: u64) {
        self.inner.ready_us.store(us, Ordering::Relaxed);
    }

    /// Passes a signal that PID 1 received on to the container's main
    /// process, as docker's init does.
    pub fn forward_signal(&self, sig: Signal) {
        let main = lock(&self.inner.main).clone();
        if let Some(pid) = main.and_then(|p| p.pid()) {
            if let Err(e) = self.inner.reaper.signal(pid, sig, false) {
                crate::error!("forwarding signal {} to pid {pid}: {e}", sig.as_raw());
            }
        }
    }

    /// Whose processes ListProcesses and Stats report: in a guest, the
    /// container's (all of them); on a host, only what this agent's
    /// process started, never the host's own.
    fn scope(&self) -> crate::procfs::Scope {
        match self.inner.mode {
            Mode::Guest => crate::procfs::Scope::Guest,
            Mode::Host => crate::procfs::Scope::DescendantsOf(std::process::id()),
        }
    }

    fn process(&self, id: &str) -> Result<Arc<Process>, Status> {
        lock(&self.inner.processes)
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no process {id:?}")))
    }

    /// SIGTERM to everything, SIGKILL to what is left after `grace`.
    async fn stop_all(&self, grace: Duration) {
        let reaper = &self.inner.reaper;
        reaper.kill_all(Signal::TERM);
        let deadline = tokio::time::Instant::now() + grace;
        while reaper.any_child() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            reaper.reap();
        }
        if reaper.any_child() {
            reaper.kill_all(Signal::KILL);
            // Give the reaper a moment so Wait callers see the exits.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while reaper.any_child() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn hello(&self, request: Request<HelloRequest>) -> RpcResult<HelloResponse> {
        let req = request.into_inner();
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "host speaks protocol {}, this skiff-init serves {PROTOCOL_VERSION}",
                req.protocol_version
            )));
        }
        crate::debug!("session {} opened", req.session_id);
        Ok(Response::new(HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel_release: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            init_started_us: self.inner.init_started_us,
            agent_ready_us: self.inner.ready_us.load(Ordering::Relaxed),
            now_us: boottime_us(),
        }))
    }

    async fn mount(&self, request: Request<MountRequest>) -> RpcResult<Empty> {
        crate::mounts::mount(&request.into_inner()).map_err(|e| match e {
            crate::mounts::MountError::RelativeTarget(_) | crate::mounts::MountError::BadData => {
                Status::invalid_argument(e.to_string())
            }
            _ => Status::internal(e.to_string()),
        })?;
        Ok(Response::new(Empty {}))
    }

    async fn configure_network(&self, request: Request<NetworkConfig>) -> RpcResult<Empty> {
        crate::netlink::configure(&request.into_inner()).map_err(|e| match e {
            crate::netlink::NetError::Netlink { .. } => Status::internal(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        })?;
        Ok(Response::new(Empty {}))
    }

    async fn setup_container(&self, request: Request<ContainerSetup>) -> RpcResult<Empty> {
        if self.inner.mode != Mode::Guest {
            return Err(Status::failed_precondition(
                "SetupContainer needs skiff-init to be PID 1 of a guest",
            ));
        }
        if self.inner.setup_done.swap(true, Ordering::SeqCst) {
            return Err(Status::failed_precondition(
                "the container is already set up",
            ));
        }
        let setup = request.into_inner();
        let changes = crate::guest::container_root::setup(&setup)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        *lock(&self.inner.changes) = changes.map(Arc::new);
        if let Some(security) = &setup.security {
            let container = Container::new(security).map_err(|e| match e {
                NamespaceError::Confinement(_) => Status::invalid_argument(e.to_string()),
                _ => Status::internal(e.to_string()),
            })?;
            *lock(&self.inner.container) = Some(Arc::new(container));
        }
        Ok(Response::new(Empty {}))
    }

    async fn create_process(
        &self,
        request: Request<ProcessSpec>,
    ) -> RpcResult<CreateProcessResponse> {
        let spec = request.into_inner();
        if spec.id.is_empty() {
            return Err(Status::invalid_argument("process id is empty"));
        }
        if lock(&self.inner.processes).contains_key(&spec.id) {
            return Err(Status::already_exists(format!(
                "process {:?} exists",
                spec.id
            )));
        }
        let main = lock(&self.inner.main).is_none();
        let process = Arc::new(Process::create(&spec, main, Path::new("/"), &hostname())?);
        {
            let mut processes = lock(&self.inner.processes);
            if processes.contains_key(&spec.id) {
                return Err(Status::already_exists(format!(
                    "process {:?} exists",
                    spec.id
                )));
            }
            let mut main_slot = lock(&self.inner.main);
            // Main only if it still is the first (two racing creates).
            if process.main && main_slot.is_none() {
                *main_slot = Some(process.clone());
            }
            processes.insert(spec.id.clone(), process);
        }
        Ok(Response::new(CreateProcessResponse {}))
    }

    async fn start_process(&self, request: Request<ProcessRef>) -> RpcResult<StartProcessResponse> {
        let process = self.process(&request.into_inner().id)?;
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(Status::failed_precondition("shutting down"));
        }
        let container = lock(&self.inner.container).clone();
        let pid = process.start(&self.inner.reaper, container.as_ref())?;
        crate::debug!("started {} as pid {pid}", process.id);
        Ok(Response::new(StartProcessResponse {
            pid: pid as u32,
            started_us: boottime_us(),
        }))
    }

    type StdioStream = OutputStream;

    async fn stdio(&self, request: Request<Streaming<StdinChunk>>) -> RpcResult<Self::StdioStream> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("Stdio stream ended before naming a process")
        })?;
        let process = self.process(&first.id)?;
        let stdio = process.take_stdio().ok_or_else(|| {
            Status::failed_precondition(format!("process {:?} is already attached", first.id))
        })?;
        Ok(Response::new(crate::stdio::relay(stdio, first, inbound)?))
    }

    /// An extra process (exec, healthcheck) is forgotten once its exit has
    /// been collected: a long-lived container execs without end, and each
    /// record would keep its pty. The main process stays.
    async fn wait(&self, request: Request<ProcessRef>) -> RpcResult<ExitStatus> {
        let id = request.into_inner().id;
        let process = self.process(&id)?;
        let mut rx = process.exit.subscribe();
        let status = *rx
            .wait_for(|s| s.is_some())
            .await
            .map_err(|_| Status::internal("exit status channel closed"))?;
        if !process.main {
            lock(&self.inner.processes).remove(&id);
        }
        status
            .map(Response::new)
            .ok_or_else(|| Status::internal("no exit status"))
    }

    /// A process that has already exited is not signalled (its pid may be
    /// another process's by now) and the call succeeds: stopping something
    /// that just stopped is not an error. One never started is
    /// FailedPrecondition.
    async fn signal(&self, request: Request<SignalRequest>) -> RpcResult<Empty> {
        let req = request.into_inner();
        let process = self.process(&req.id)?;
        let sig = signal_from(req.signal)?;
        let Some(pid) = process.pid() else {
            if process.exit_status().is_some() {
                return Ok(Response::new(Empty {}));
            }
            return Err(Status::failed_precondition(format!(
                "process {:?} has not been started",
                req.id
            )));
        };
        self.inner
            .reaper
            .signal(pid, sig, req.group)
            .map_err(|e| Status::internal(format!("kill {pid}: {e}")))?;
        Ok(Response::new(Empty {}))
    }

    async fn resize_tty(&self, request: Request<ResizeRequest>) -> RpcResult<Empty> {
        let req = request.into_inner();
        let process = self.process(&req.id)?;
        let tty = process.tty().ok_or_else(|| {
            Status::failed_precondition(format!("process {:?} has no terminal", req.id))
        })?;
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        crate::pty::set_size(tty.fd(), clamp(req.rows), clamp(req.cols))
            .map_err(|e| Status::internal(format!("resizing the terminal: {e}")))?;
        Ok(Response::new(Empty {}))
    }

    async fn shutdown(&self, request: Request<ShutdownRequest>) -> RpcResult<Empty> {
        let grace = Duration::from_millis(request.into_inner().grace_ms.into());
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.stop_all(grace).await;
        if self.inner.mode == Mode::Guest {
            if let Some(c) = lock(&self.inner.container).as_ref() {
                c.leave();
            }
            crate::guest::container_root::unmount_all();
            // Reply first; the VM goes away right after.
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                crate::guest::power::off("shutdown requested");
            });
        }
        Ok(Response::new(Empty {}))
    }

    async fn list_processes(&self, _request: Request<Empty>) -> RpcResult<ProcessList> {
        let scope = self.scope();
        let list = blocking(move || crate::procfs::list(scope))
            .await?
            .map_err(|e| Status::internal(format!("reading /proc: {e}")))?;
        Ok(Response::new(list))
    }

    async fn stats(&self, _request: Request<Empty>) -> RpcResult<GuestStats> {
        let scope = self.scope();
        let stats = blocking(move || crate::procfs::stats(scope))
            .await?
            .map_err(|e| Status::internal(format!("reading /proc: {e}")))?;
        Ok(Response::new(stats))
    }

    async fn stat_path(&self, request: Request<PathRequest>) -> RpcResult<PathStat> {
        let req = request.into_inner();
        let stat = blocking(move || crate::container_path::stat(&req)).await??;
        Ok(Response::new(stat))
    }

    type ReadArchiveStream = crate::archive::pack::ArchiveStream;

    async fn read_archive(
        &self,
        request: Request<PathRequest>,
    ) -> RpcResult<Self::ReadArchiveStream> {
        let req = request.into_inner();
        let source = blocking(move || crate::archive::pack::open(&req)).await??;
        Ok(Response::new(crate::archive::pack::start(source)))
    }

    async fn write_archive(&self, request: Request<Streaming<ArchiveChunk>>) -> RpcResult<Empty> {
        crate::archive::unpack::unpack(request.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    type ReadChangesStream = crate::archive::pack::ArchiveStream;

    async fn read_changes(&self, _request: Request<Empty>) -> RpcResult<Self::ReadChangesStream> {
        let dirs = lock(&self.inner.changes).clone().ok_or_else(|| {
            Status::failed_precondition("the container was not set up to record its changes")
        })?;
        // The step is over: what it left running (a daemon it started)
        // stops now, as docker ends a RUN's PID namespace, so that nothing
        // writes while the upper directory is read.
        self.stop_all(Duration::ZERO).await;
        rustix::fs::sync();
        Ok(Response::new(crate::archive::changes::start(dirs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number() {
        assert_eq!(signal_from(15).unwrap(), Signal::TERM);
        assert_eq!(signal_from(9).unwrap(), Signal::KILL);
        assert_eq!(
            signal_from(0).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            signal_from(1000).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
