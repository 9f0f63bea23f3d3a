//! The one adapter between skiff-runtime and the guest protocol: skiff-init's
//! gRPC service (`skiff_proto::v1`) spoken in the runtime's own types. Nothing
//! else in the runtime touches generated messages.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use skiff_proto::v1::agent_client::AgentClient;
use skiff_proto::v1::{self, output_chunk};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What the guest answered, or why it did not.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The process could not be started; `code` is what a shell reports
    /// (127: not found, 126: not executable), as docker does.
    #[error("{message}")]
    Exec { code: i32, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what}: {message}")]
    Failed { what: &'static str, message: String },
}

impl AgentError {
    fn from_status(what: &'static str) -> impl FnOnce(tonic::Status) -> AgentError {
        move |s| match s.code() {
            tonic::Code::NotFound => AgentError::NotFound(s.message().to_owned()),
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                AgentError::InvalidArgument(s.message().to_owned())
            }
            _ => AgentError::Failed {
                what,
                message: s.message().to_owned(),
            },
        }
    }
}

type Result<T> = std::result::Result<T, AgentError>;

/// How the container's root is set up in the guest.
#[derive(Debug, Clone, Default)]
pub struct RootSetup {
    /// The block device holding the root filesystem, e.g. `/dev/vda`.
    pub device: String,
    pub fstype: String,
    pub readonly: bool,
    pub hostname: String,
    /// /etc/hosts after the localhost lines: (address, names).
    pub hosts: Vec<(String, Vec<String>)>,
    /// /etc/resolv.conf; the image's file stays when all are empty.
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub dns_options: Vec<String>,
    /// Mounts in the container, made before the root goes read-only.
    pub mounts: Vec<GuestMount>,
    pub security: GuestSecurity,
    /// A build step: the device whose overlay upper directory records what
    /// the container changes (see [`Agent::read_changes`]).
    pub changes_device: Option<String>,
}

/// How skiff-init confines every process of the container.
#[derive(Debug, Clone, Default)]
pub struct GuestSecurity {
    pub privileged: bool,
    /// Bit n: capability n; what root processes keep.
    pub capabilities: u64,
    /// Ambient for processes of other users.
    pub user_capabilities: u64,
    pub no_new_privileges: bool,
    /// struct sock_filter instructions, native endian; empty: no filter.
    pub seccomp_filter: Vec<u8>,
    /// 0: no limit.
    pub pids_limit: u32,
    /// (RLIMIT_* number, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Bytes of /dev/shm; 0: 64 MiB.
    pub shm_size: u64,
    pub sysctls: Vec<(String, String)>,
}

/// A filesystem to mount in the container.
#[derive(Debug, Clone)]
pub struct GuestMount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
    /// An empty filesystem first receives what the container has at target.
    pub copy_up: bool,
}

/// The guest's network: loopback, and eth0 when the container has a network.
#[derive(Debug, Clone, Default)]
pub struct GuestNetwork {
    /// eth0 by its MAC, with `address/prefix`, MTU and the default route.
    pub eth0: Option<GuestInterface>,
}

#[derive(Debug, Clone)]
pub struct GuestInterface {
    pub mac: String,
    pub cidr: String,
    pub mtu: u32,
    pub gateway: Option<String>,
}

/// A process to run in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Unique among the guest's processes.
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub tty: bool,
    /// Keep stdin open (otherwise the process reads /dev/null).
    pub stdin: bool,
    pub tty_size: Option<(u16, u16)>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStatus {
    /// As a shell reports it: the status, or 128 + signal.
    pub code: i32,
    /// The signal that ended it, 0 if it exited.
    pub signal: i32,
}

/// Which of a process's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Input for a process: data, or the end of it.
#[derive(Debug)]
pub enum Input {
    Data(Bytes),
    Eof,
}

/// A process's output as it comes; `None` after its last byte.
pub struct Output {
    inner: tonic::Streaming<v1::OutputChunk>,
}

impl Output {
    pub async fn next(&mut self) -> Result<Option<(OutputStream, Bytes)>> {
        match self.inner.message().await {
            Ok(Some(c)) => {
                let stream = if c.stream == output_chunk::Stream::Stderr as i32 {
                    OutputStream::Stderr
                } else {
                    OutputStream::Stdout
                };
                Ok(Some((stream, Bytes::from(c.data))))
            }
            Ok(None) => Ok(None),
            Err(s) => Err(AgentError::from_status("reading the process's output")(s)),
        }
    }
}

/// One of the container's processes, as `top` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub user: String,
    pub state: String,
    pub cpu_time: Duration,
    pub rss_bytes: u64,
    /// Guest uptime when it started.
    pub started: Duration,
    pub args: Vec<String>,
    pub tty: String,
}

/// The guest's CPU and memory use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStats {
    /// Guest uptime when sampled.
    pub now: Duration,
    /// CPU time busy since boot, all CPUs together.
    pub cpu_busy: Duration,
    pub cpus: u32,
    pub memory_total: u64,
    pub memory_available: u64,
    pub processes: u32,
}

/// What is at a path in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

fn security(s: &GuestSecurity) -> v1::Security {
    v1::Security {
        privileged: s.privileged,
        capabilities: s.capabilities,
        user_capabilities: s.user_capabilities,
        no_new_privileges: s.no_new_privileges,
        seccomp_filter: s.seccomp_filter.clone(),
        pids_limit: s.pids_limit,
        rlimits: s
            .rlimits
            .iter()
            .map(|&(resource, soft, hard)| v1::Rlimit {
                resource,
                soft,
                hard,
            })
            .collect(),
        shm_size: s.shm_size,
        sysctls: s
            .sysctls
            .iter()
            .map(|(key, value)| v1::Sysctl {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// A client of skiff-init (cheap to clone).
#[derive(Clone)]
pub struct Agent {
    client: AgentClient<Channel>,
}

impl Agent {
    pub fn new(client: AgentClient<Channel>) -> Self {
        Self { client }
    }

    pub async fn setup_root(&self, s: &RootSetup) -> Result<()> {
        self.client
            .clone()
            .setup_container(v1::ContainerSetup {
                rootfs_device: s.device.clone(),
                rootfs_fstype: s.fstype.clone(),
                readonly: s.readonly,
                hostname: s.hostname.clone(),
                hosts: s
                    .hosts
                    .iter()
                    .map(|(ip, names)| v1::HostEntry {
                        ip: ip.clone(),
                        names: names.clone(),
                    })
                    .collect(),
                nameservers: s.nameservers.clone(),
                search: s.search.clone(),
                dns_options: s.dns_options.clone(),
                mounts: s
                    .mounts
                    .iter()
                    .map(|m| v1::MountRequest {
                        source: m.source.clone(),
                        target: m.target.clone(),
                        fstype: m.fstype.clone(),
                        options: m.options.clone(),
                        mkdir: true,
                        copy_up: m.copy_up,
                    })
                    .collect(),
                security: Some(security(&s.security)),
                changes_device: s.changes_device.clone().unwrap_or_default(),
            })
            .await
            .map_err(AgentError::from_status(
                "setting up the container's root filesystem",
            ))?;
        Ok(())
    }

    /// Brings loopback up, and eth0 with its address and default route.
    pub async fn configure_network(&self, n: &GuestNetwork) -> Result<()> {
        let mut interfaces = vec![v1::Interface {
            name: "lo".into(),
            ..Default::default()
        }];
        let mut routes = Vec::new();
        if let Some(e) = &n.eth0 {
            interfaces.push(v1::Interface {
                name: String::new(),
                mac: e.mac.clone(),
                addresses: vec![e.cidr.clone()],
                mtu: e.mtu,
            });
            if let Some(gw) = &e.gateway {
                routes.push(v1::Route {
                    destination: "default".into(),
                    gateway: gw.clone(),
                    device: String::new(),
                });
            }
        }
        self.client
            .clone()
            .configure_network(v1::NetworkConfig { interfaces, routes })
            .await
            .map_err(AgentError::from_status("configuring the network"))?;
        Ok(())
    }

    /// Prepares a process (not started yet).
    pub async fn create_process(&self, p: &ProcessSpec) -> Result<()> {
        let spec = v1::ProcessSpec {
            id: p.id.clone(),
            args: p.args.clone(),
            env: p.env.clone(),
            cwd: p.cwd.clone(),
            user: p.user.clone(),
            terminal: p.tty,
            stdin: p.stdin,
            tty_size: p.tty_size.map(|(rows, cols)| v1::TtySize {
                rows: rows.into(),
                cols: cols.into(),
            }),
        };
        self.client
            .clone()
            .create_process(spec)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => AgentError::Exec {
                    code: 127,
                    message: s.message().to_owned(),
                },
                tonic::Code::PermissionDenied => AgentError::Exec {
                    code: 126,
                    message: s.message().to_owned(),
                },
                _ => AgentError::from_status("creating the process")(s),
            })?;
        Ok(())
    }

    /// Attaches to a created process's stdio: its output, and `input` (for a
    /// process created with stdin) as its stdin. Attach before starting it so
    /// that no output is missed.
    pub async fn stdio(
        &self,
        id: &str,
        mut input: Option<mpsc::Receiver<Input>>,
    ) -> Result<Output> {
        let (tx, rx) = mpsc::channel::<v1::StdinChunk>(8);
        let _ = tx
            .send(v1::StdinChunk {
                id: id.to_owned(),
                data: Vec::new(),
                eof: false,
            })
            .await;
        let output = self
            .client
            .clone()
            .stdio(ReceiverStream::new(rx))
            .await
            .map_err(AgentError::from_status("attaching stdio"))?
            .into_inner();
        // The request stream stays open for as long as the process's stdin
        // may be written, and no longer: an HTTP/2 stream ends only when
        // both sides have closed it, and the connection allows a few hundred
        // at once (every exec and healthcheck is one).
        let Some(mut input) = input.take() else {
            return Ok(Output { inner: output });
        };
        tokio::spawn(async move {
            while let Some(i) = input.recv().await {
                let (data, eof) = match i {
                    Input::Data(d) => (d.to_vec(), false),
                    Input::Eof => (Vec::new(), true),
                };
                let chunk = v1::StdinChunk {
                    id: String::new(),
                    data,
                    eof,
                };
                if tx.send(chunk).await.is_err() || eof {
                    return;
                }
            }
        });
        Ok(Output { inner: output })
    }

    /// Runs a created process; its pid in the guest.
    pub async fn start_process(&self, id: &str) -> Result<u32> {
        let r = self
            .client
            .clone()
            .start_process(v1::ProcessRef { id: id.to_owned() })
            .await
            .map_err(AgentError::from_status("starting the process"))?;
        Ok(r.into_inner().pid)
    }

    /// Completes when the process has exited.
    pub async fn wait(&self, id: &str) -> Result<ExitStatus> {
        let st = self
            .client
            .clone()
            .wait(v1::ProcessRef { id: id.to_owned() })
            .await
            .map_err(AgentError::from_status("waiting for the process"))?
            .into_inner();
        Ok(ExitStatus {
            code: st.exit_code,
            signal: st.signal,
        })
    }

    pub async fn signal(&self, id: &str, signal: i32) -> Result<()> {
        self.client
            .clone()
            .signal(v1::SignalRequest {
                id: id.to_owned(),
                signal,
                group: false,
            })
            .await
            .map_err(AgentError::from_status("signalling the process"))?;
        Ok(())
    }

    pub async fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        self.client
            .clone()
            .resize_tty(v1::ResizeRequest {
                id: id.to_owned(),
                rows: rows.into(),
                cols: cols.into(),
            })
            .await
            .map_err(AgentError::from_status("resizing the terminal"))?;
        Ok(())
    }

    pub async fn list_processes(&self) -> Result<(Vec<ProcessInfo>, Duration)> {
        let r = self
            .client
            .clone()
            .list_processes(v1::Empty {})
            .await
            .map_err(AgentError::from_status("listing the processes"))?
            .into_inner();
        let list = r
            .processes
            .into_iter()
            .map(|p| ProcessInfo {
                pid: p.pid,
                ppid: p.ppid,
                uid: p.uid,
                user: p.user,
                state: p.state,
                cpu_time: Duration::from_micros(p.cpu_time_us),
                rss_bytes: p.rss_bytes,
                started: Duration::from_micros(p.started_us),
                args: p.args,
                tty: p.tty,
            })
            .collect();
        Ok((list, Duration::from_micros(r.now_us)))
    }

    pub async fn stats(&self) -> Result<GuestStats> {
        let s = self
            .client
            .clone()
            .stats(v1::Empty {})
            .await
            .map_err(AgentError::from_status("reading the guest's statistics"))?
            .into_inner();
        Ok(GuestStats {
            now: Duration::from_micros(s.now_us),
            cpu_busy: Duration::from_micros(s.cpu_busy_us),
            cpus: s.cpus,
            memory_total: s.memory_total_bytes,
            memory_available: s.memory_available_bytes,
            processes: s.processes,
        })
    }

    pub async fn stat_path(&self, path: &str) -> Result<PathStat> {
        let s = self
            .client
            .clone()
            .stat_path(v1::PathRequest {
                path: path.to_owned(),
                follow_link: false,
            })
            .await
            .map_err(AgentError::from_status("looking at the path"))?
            .into_inner();
        Ok(PathStat {
            name: s.name,
            size: s.size,
            mode: s.mode,
            mtime: s.mtime,
            link_target: s.link_target,
        })
    }

    /// A tar stream of `path`, chunk by chunk.
    pub async fn read_archive(&self, path: &str, follow_link: bool) -> Result<ArchiveReader> {
        let inner = self
            .client
            .clone()
            .read_archive(v1::PathRequest {
                path: path.to_owned(),
                follow_link,
            })
            .await
            .map_err(AgentError::from_status("reading from the container"))?
            .into_inner();
        Ok(ArchiveReader { inner })
    }

    /// What a build step's container changed, as an OCI layer tar.
    pub async fn read_changes(&self) -> Result<ArchiveReader> {
        let inner = self
            .client
            .clone()
            .read_changes(v1::Empty {})
            .await
            .map_err(AgentError::from_status("reading the container's changes"))?
            .into_inner();
        Ok(ArchiveReader { inner })
    }

    /// Unpacks the tar stream from `data` into the directory `dir`.
    pub async fn write_archive(
        &self,
        dir: &str,
        keep_owner: bool,
        mut data: mpsc::Receiver<Bytes>,
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel::<v1::ArchiveChunk>(4);
        let first = v1::ArchiveChunk {
            path: dir.to_owned(),
            keep_owner,
            data: Vec::new(),
        };
        let _ = tx.send(first).await;
        tokio::spawn(async move {
            while let Some(d) = data.recv().await {
                let chunk = v1::ArchiveChunk {
                    data: d.to_vec(),
                    ..Default::default()
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        self.client
            .clone()
            .write_archive(ReceiverStream::new(rx))
            .await
            .map_err(AgentError::from_status("writing into the container"))?;
        Ok(())
    }

    /// Stops every process (`grace` between SIGTERM and SIGKILL), syncs,
    /// unmounts and powers the guest off.
    pub async fn shutdown(&self, grace: Duration) -> Result<()> {
        self.client
            .clone()
            .shutdown(v1::ShutdownRequest {
                grace_ms: grace.as_millis().min(u32::MAX as u128) as u32,
            })
            .await
            .map_err(AgentError::from_status("shutting down"))?;
        Ok(())
    }
}

/// A tar stream coming out of the container.
pub struct ArchiveReader {
    inner: tonic::Streaming<v1::ArchiveChunk>,
}

impl ArchiveReader {
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        match self.inner.message().await {
            Ok(Some(c)) => Ok(Some(Bytes::from(c.data))),
            Ok(None) => Ok(None),
            Err(s) => Err(AgentError::from_status("reading from the container")(s)),
        }
    }
}
