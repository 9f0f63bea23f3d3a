//! The monitor and the container operations against an in-memory sandbox:
//! skiff-init's real Agent service in host mode (real fork/exec of host
//! programs) behind the `Launcher` seam, so restart policies, healthchecks,
//! stop and kill, logs, exec and the owner's attach are checked in
//! milliseconds, without a VM. The VM path is checked by crates/skiff/tests.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skiff_proto::session::{guest_handshake, host_handshake};
use skiff_runtime::container::config::{
    ContainerConfig, HealthConfig, ProcessConfig, RestartPolicy,
};
use skiff_runtime::container::state::{ContainerState, ContainerStatus, HealthStatus};
use skiff_runtime::container::{self, AttachOptions, Container, ExecOptions, SessionEvent};
use skiff_runtime::logs::{ReadOptions, Stream};
use skiff_runtime::monitor::launcher::{LaunchFuture, Launcher};
use skiff_runtime::monitor::ready::{read_until_settled, ReadyMsg};
use skiff_runtime::monitor::{self, MonitorOptions};
use skiff_sandbox::{AgentClient, Channel, Sandbox, SandboxError};

/// A sandbox that is skiff-init's service in this process.
struct MemSandbox {
    agent: AgentClient<Channel>,
    serve: tokio::task::JoinHandle<()>,
}

impl Sandbox for MemSandbox {
    fn agent(&self) -> AgentClient<Channel> {
        self.agent.clone()
    }
    fn shutdown(
        self: Box<Self>,
        grace: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SandboxError>> + Send>> {
        Box::pin(async move {
            let _ = self
                .agent
                .clone()
                .shutdown(skiff_proto::v1::ShutdownRequest {
                    grace_ms: grace.as_millis() as u32,
                })
                .await;
            self.serve.abort();
            Ok(())
        })
    }
    fn kill(&mut self) {
        self.serve.abort();
    }
}

#[derive(Default)]
struct MemLauncher {
    boots: Arc<AtomicUsize>,
}

impl Launcher for MemLauncher {
    fn launch<'a>(&'a self, _c: &'a ContainerConfig, _dir: &'a Path) -> LaunchFuture<'a> {
        self.boots.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let agent = skiff_init::agent::AgentService::new(skiff_init::agent::Mode::Host, 1)
                .expect("agent");
            let (mut host, mut guest) = tokio::io::duplex(1 << 20);
            let serve = tokio::spawn(async move {
                if guest_handshake(&mut guest, "nonce").await.is_ok() {
                    let _ = skiff_proto::serve(guest, agent).await;
                }
            });
            host_handshake(&mut host, "test").await.expect("handshake");
            let agent = skiff_proto::connect(host).await.expect("connect");
            Ok(Box::new(MemSandbox { agent, serve }) as Box<dyn Sandbox>)
        })
    }
}

fn config(id: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        id: id.into(),
        name: format!("c-{}", &id[..6]),
        image: "mem".into(),
        image_digest: "sha256:00".into(),
        image_id: "sha256:00".into(),
        process: ProcessConfig {
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "FROM_CONFIG=1".into()],
            cwd: "/".into(),
            user: String::new(),
            tty: false,
            open_stdin: false,
            stdin_once: false,
        },
        hostname: "h".into(),
        cpus: 1,
        memory_mib: 64,
        labels: BTreeMap::new(),
        restart: RestartPolicy::No,
        auto_remove: false,
        stop_signal: 15,
        stop_timeout: 10,
        healthcheck: None,
        log_opts: vec![],
        created: skiff_runtime::time::now_rfc3339(),
        network: Default::default(),
        readonly_root: false,
        tmpfs: Vec::new(),
        binds: Vec::new(),
        volumes: Vec::new(),
        security: Default::default(),
        changes_to: None,
    }
}

/// A container directory with `cfg`, as `create` leaves one.
fn make(root: &Path, cfg: &ContainerConfig) -> PathBuf {
    let dir = root.join(&cfg.id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(cfg).unwrap()).unwrap();
    std::fs::write(
        dir.join("state.json"),
        serde_json::to_vec(&ContainerState::created()).unwrap(),
    )
    .unwrap();
    dir
}

/// A monitor running in a thread of this process, started as `start` starts
/// one; the pipe end is kept while `owner` may still attach.
struct Running {
    dir: PathBuf,
    thread: std::thread::JoinHandle<()>,
    first: Option<ReadyMsg>,
    _ready: BufReader<std::fs::File>,
    boots: Arc<AtomicUsize>,
}

fn start(dir: &Path, wait_for_owner: bool) -> Running {
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe().unwrap();
    let launcher = MemLauncher::default();
    let boots = launcher.boots.clone();
    let d = dir.to_path_buf();
    let thread = std::thread::spawn(move || {
        monitor::run(&d, &launcher, Some(w), MonitorOptions { wait_for_owner }).expect("monitor");
    });
    let mut ready = BufReader::new(std::fs::File::from(r));
    let first = read_until_settled(&mut ready, &mut |_| {}).unwrap();
    Running {
        dir: dir.to_path_buf(),
        thread,
        first,
        _ready: ready,
        boots,
    }
}

impl Running {
    fn container(&self) -> Container {
        Container::load(&self.dir).unwrap()
    }
    fn finish(self) -> Container {
        self.thread.join().unwrap();
        Container::load(&self.dir).unwrap()
    }
}

fn ids() -> String {
    skiff_util::id::random_hex::<32>()
}

fn log_lines(c: &Container) -> Vec<(Stream, String)> {
    let mut v = Vec::new();
    container::logs(c, &ReadOptions::default(), &mut |r| {
        v.push((r.stream, String::from_utf8_lossy(&r.line).into_owned()));
        Ok(())
    })
    .unwrap();
    v
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn exit_code_state_and_logs_of_a_run() {
    let root = tempfile::tempdir().unwrap();
    let dir = make(
        root.path(),
        &config(&ids(), "echo out; echo err >&2; printf partial; exit 3"),
    );
    let m = start(&dir, false);
    assert!(
        matches!(m.first, Some(ReadyMsg::Started { .. })),
        "{:?}",
        m.first
    );
    let c = m.finish();
    assert_eq!(c.status(), ContainerStatus::Exited);
    assert_eq!(c.state.exit_code, Some(3));
    assert!(c.state.started_at.is_some() && c.state.finished_at.is_some());
    assert_eq!(c.state.monitor_pid, None);
    let mut lines = log_lines(&c);
    lines.sort_by_key(|(s, _)| *s as u8);
    assert_eq!(
        lines,
        [
            (Stream::Stdout, "out\n".to_owned()),
            (Stream::Stdout, "partial".to_owned()),
            (Stream::Stderr, "err\n".to_owned()),
        ]
    );
    // The monitor is gone: its lock is free, its socket removed.
    assert!(!skiff_util::lock::is_held(&dir.join("monitor.lock")).unwrap());
    assert!(!dir.join("monitor.sock").exists());
}

#[test]
fn on_failure_restarts_count_then_it_stays_exited() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(&ids(), "exit 1");
    cfg.restart = RestartPolicy::OnFailure { max_retries: 2 };
    let m = start(&make(root.path(), &cfg), false);
    let boots = m.boots.clone();
    let c = m.finish();
    assert_eq!(boots.load(Ordering::SeqCst), 3, "one run and two restarts");
    assert_eq!(c.state.restart_count, 2);
    assert_eq!(
        (c.status(), c.state.exit_code),
        (ContainerStatus::Exited, Some(1))
    );
    // A success is not a failure: no restart.
    let mut cfg = config(&ids(), "exit 0");
    cfg.restart = RestartPolicy::OnFailure { max_retries: 5 };
    let m = start(&make(root.path(), &cfg), false);
    let boots = m.boots.clone();
    let c = m.finish();
    assert_eq!(
        (boots.load(Ordering::SeqCst), c.state.restart_count),
        (1, 0)
    );
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout_and_always_does_not_restart_it() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    // Ignores the stop signal: only SIGKILL ends it.
    let mut cfg = config(
        &ids(),
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    );
    cfg.restart = RestartPolicy::Always;
    cfg.stop_timeout = 1;
    let m = start(&make(root.path(), &cfg), false);
    let c = m.container();
    assert_eq!(c.status(), ContainerStatus::Running);
    assert!(rt.block_on(container::stop(&c, None)).unwrap());
    let boots = m.boots.clone();
    let c = m.finish();
    assert_eq!(c.state.exit_code, Some(137), "SIGKILL after the timeout");
    assert!(c.state.stopped_by_user);
    assert_eq!(
        boots.load(Ordering::SeqCst),
        1,
        "a stopped container is not restarted"
    );
    // One that obeys the stop signal exits with it.
    let cfg = config(&ids(), "trap 'exit 143' TERM; while :; do sleep 0.05; done");
    let m = start(&make(root.path(), &cfg), false);
    let c = m.container();
    assert!(rt.block_on(container::stop(&c, Some(30))).unwrap());
    assert_eq!(m.finish().state.exit_code, Some(143));
    // Stopping a stopped container does nothing.
    assert!(!rt
        .block_on(container::stop(&c.refresh().unwrap(), None))
        .unwrap());
}

#[test]
fn kill_with_a_signal_and_exec_into_a_stopped_container_is_refused() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let cfg = config(
        &ids(),
        "trap 'echo got-hup; exit 5' HUP; while :; do sleep 0.05; done",
    );
    let m = start(&make(root.path(), &cfg), false);
    rt.block_on(container::kill(&m.container(), 1)).unwrap();
    let c = m.finish();
    assert_eq!(c.state.exit_code, Some(5));
    assert_eq!(log_lines(&c), [(Stream::Stdout, "got-hup\n".to_owned())]);
    let e = rt
        .block_on(container::exec(
            &c,
            &ExecOptions {
                args: vec!["true".into()],
                ..Default::default()
            },
        ))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!("container {} is not running", c.name())
    );
    let e = rt.block_on(container::kill(&c, 9)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("container {} is not running", c.name())
    );
}

#[test]
fn exec_gets_its_own_exit_code_output_env_and_stdin() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let m = start(
        &make(root.path(), &config(&ids(), "while :; do sleep 0.05; done")),
        false,
    );
    let c = m.container();
    rt.block_on(async {
        let (mut s, pid) = container::exec(
            &c,
            &ExecOptions {
                args: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "read l; echo \"$l $FROM_CONFIG $EXTRA\"; echo e >&2; exit 4".into(),
                ],
                env: vec!["EXTRA=x".into()],
                stdin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(pid > 0);
        let input = s.input();
        input.stdin(b"hello\n").await.unwrap();
        input.stdin_eof().await.unwrap();
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some(ev) = s.next().await.unwrap() {
            match ev {
                SessionEvent::Output(skiff_runtime::agent::OutputStream::Stdout, d) => {
                    out.extend_from_slice(&d)
                }
                SessionEvent::Output(_, d) => err.extend_from_slice(&d),
                SessionEvent::Exited { code: c, .. } => {
                    code = Some(c);
                    break;
                }
                SessionEvent::Started(_) => {}
            }
        }
        assert_eq!(
            (out.as_slice(), err.as_slice(), code),
            (&b"hello 1 x\n"[..], &b"e\n"[..], Some(4))
        );
        // A missing command: 127, with the shell's wording.
        let e = container::exec(
            &c,
            &ExecOptions {
                args: vec!["/no/such".into()],
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(
                e,
                container::ContainerError::Agent(skiff_runtime::agent::AgentError::Exec {
                    code: 127,
                    ..
                })
            ),
            "{e}"
        );
        // top sees the main process.
        let top = container::top(&c).await.unwrap();
        assert!(
            top.processes
                .iter()
                .any(|p| p.last().is_some_and(|cmd| cmd.contains("while :"))),
            "{top:?}"
        );
        container::stop(&c, Some(0)).await.unwrap();
    });
    m.finish();
}

#[test]
fn a_failing_healthcheck_turns_unhealthy_and_a_passing_one_healthy() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let flag = root.path().join("ok");
    let mut cfg = config(&ids(), "while :; do sleep 0.05; done");
    cfg.healthcheck = Some(HealthConfig {
        test: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("test -f {}", flag.display()),
        ],
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        start_period: Duration::ZERO,
        retries: 2,
    });
    let m = start(&make(root.path(), &cfg), false);
    let wait_for = |want: HealthStatus| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let c = m.container();
            if c.state.health.as_ref().map(|h| h.status) == Some(want) {
                return c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {want:?}: {:?}",
                c.state.health
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let c = wait_for(HealthStatus::Unhealthy);
    let h = c.state.health.unwrap();
    assert!(h.failing_streak >= 2 && h.log.len() <= 5, "{h:?}");
    assert!(h.log.iter().all(|r| r.exit_code == 1));
    std::fs::write(&flag, b"").unwrap();
    let c = wait_for(HealthStatus::Healthy);
    assert_eq!(c.state.health.unwrap().failing_streak, 0);
    rt.block_on(container::stop(&m.container(), Some(0)))
        .unwrap();
    m.finish();
}

/// Waits (bounded) until no process's command line holds `token`: what a
/// container ran must not outlive it.
fn assert_no_process_with(token: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(token))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_owner_starts_the_process_and_takes_the_container_when_it_goes() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let token = ids();
    let mut cfg = config(
        &ids(),
        &format!("echo first; while :; do sleep 0.05; done # {token}"),
    );
    cfg.process.open_stdin = true;
    cfg.process.stdin_once = true;
    let m = start(&make(root.path(), &cfg), true);
    assert_eq!(m.first, Some(ReadyMsg::Waiting));
    // Nothing runs until the owner is there: the first line is not missed.
    assert!(log_lines(&m.container()).is_empty());
    rt.block_on(async {
        let mut s = container::attach(
            &m.container(),
            AttachOptions {
                stdin: true,
                owner: true,
                tty_size: None,
            },
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"first\n") {
            match s.next().await.unwrap() {
                Some(SessionEvent::Output(_, d)) => seen.extend_from_slice(&d),
                Some(_) => {}
                None => panic!("session ended"),
            }
        }
        // The owner goes without detaching.
        drop(s);
    });
    let c = m.finish();
    assert_eq!(c.status(), ContainerStatus::Exited);
    assert!(c.state.stopped_by_user);
    assert_no_process_with(&token);
}

#[test]
fn an_auto_remove_container_is_gone_when_its_monitor_ends() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(&ids(), "exit 0");
    cfg.auto_remove = true;
    let dir = make(root.path(), &cfg);
    let m = start(&dir, false);
    m.thread.join().unwrap();
    assert!(!dir.exists());
}

#[test]
fn what_starts_again_at_boot() {
    let root = tempfile::tempdir().unwrap();
    let containers_dir = root.path().join("containers");
    let paths = skiff_runtime::Paths::new(root.path());
    let mut want = Vec::new();
    for (policy, started, by_user, wanted) in [
        (RestartPolicy::Always, true, true, true),
        (RestartPolicy::Always, false, false, false),
        (RestartPolicy::UnlessStopped, true, false, true),
        (RestartPolicy::UnlessStopped, true, true, false),
        (
            RestartPolicy::OnFailure { max_retries: 0 },
            true,
            false,
            false,
        ),
        (RestartPolicy::No, true, false, false),
    ] {
        let mut cfg = config(&ids(), "true");
        cfg.restart = policy;
        let dir = make(&containers_dir, &cfg);
        let mut st = ContainerState::created();
        if started {
            st.status = ContainerStatus::Exited;
            st.started_at = Some(skiff_runtime::time::now_rfc3339());
            st.stopped_by_user = by_user;
        }
        std::fs::write(dir.join("state.json"), serde_json::to_vec(&st).unwrap()).unwrap();
        if wanted {
            want.push(cfg.id.clone());
        }
    }
    let mut got: Vec<String> = container::wanted_at_boot(&container::Containers::new(&paths))
        .unwrap()
        .into_iter()
        .map(|c| c.id().to_owned())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// Every exec and healthcheck is an HTTP/2 stream on the one connection to
/// the guest; each must end, or after a few hundred nothing gets through
/// (and `stop` hangs).
#[test]
fn hundreds_of_execs_leave_the_control_channel_usable() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let m = start(
        &make(root.path(), &config(&ids(), "while :; do sleep 0.05; done")),
        false,
    );
    let c = m.container();
    rt.block_on(async {
        for i in 0..300 {
            let (mut s, _) = container::exec(
                &c,
                &ExecOptions {
                    args: vec!["true".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("exec {i}: {e}"));
            loop {
                match s.next().await.unwrap() {
                    Some(SessionEvent::Exited { code, .. }) => {
                        assert_eq!(code, 0);
                        break;
                    }
                    Some(_) => {}
                    None => panic!("exec {i} ended without an exit"),
                }
            }
        }
        let stopped =
            tokio::time::timeout(Duration::from_secs(30), container::stop(&c, Some(0))).await;
        assert!(
            matches!(stopped, Ok(Ok(true))),
            "stop after 300 execs: {stopped:?}"
        );
    });
    m.finish();
}

/// A client that attaches and does not read (`attach | less`, left alone)
/// is let go once it is far behind: the container's log goes on growing,
/// the session ends while the container runs on, and `stop` is heard.
#[test]
fn an_attached_client_that_does_not_read_holds_nothing_up() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(&ids(), "exec yes a-line-of-output");
    cfg.log_opts = vec!["max-size=1g".into()];
    let m = start(&make(root.path(), &cfg), false);
    let c = m.container();
    rt.block_on(async {
        let mut idle = container::attach(&c, AttachOptions::default())
            .await
            .unwrap();
        let log = c.log_path();
        let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while size() < 100 << 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log stalled at {} bytes",
                size()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // What was queued for the client comes, then the end of its session.
        let drained = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = idle.next().await.unwrap() {
                assert!(!matches!(ev, SessionEvent::Exited { .. }));
            }
        })
        .await;
        assert!(
            drained.is_ok(),
            "a client far behind was kept, holding output up"
        );
        assert_eq!(c.refresh().unwrap().status(), ContainerStatus::Running);
        let stopped =
            tokio::time::timeout(Duration::from_secs(30), container::stop(&c, Some(1))).await;
        assert!(
            matches!(stopped, Ok(Ok(true))),
            "stop with an idle client: {stopped:?}"
        );
    });
    m.finish();
}
