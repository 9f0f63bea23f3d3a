//! The Agent service end to end over an in-memory channel: the real
//! handshake, gRPC and fork/exec of host programs. The test process is not
//! PID 1, so the agent runs in host mode (it reaps only its own children).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use skiff_init::agent::{AgentService, Mode};
use skiff_proto::session::{guest_handshake, host_handshake};
use skiff_proto::v1::agent_client::AgentClient;
use skiff_proto::v1::output_chunk::Stream;
use skiff_proto::v1::{
    ArchiveChunk, Empty, ExitStatus, HelloRequest, PathRequest, ProcessInfo, ProcessRef,
    ProcessSpec, ResizeRequest, SignalRequest, StdinChunk, TtySize,
};
use skiff_proto::PROTOCOL_VERSION;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

type Client = AgentClient<Channel>;

/// Asserts `r` failed with exactly this code and message.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, message: &str) {
    let e = r.expect_err("the call must fail");
    assert_eq!((e.code(), e.message()), (code, message), "{e:?}");
}

async fn agent() -> Client {
    let agent = AgentService::new(Mode::Host, 42).expect("agent");
    let (mut host, mut guest) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        guest_handshake(&mut guest, "nonce")
            .await
            .expect("guest handshake");
        skiff_proto::serve(guest, agent).await.expect("serve");
    });
    host_handshake(&mut host, "test")
        .await
        .expect("host handshake");
    skiff_proto::connect(host).await.expect("connect")
}

fn sh(id: &str, script: &str) -> ProcessSpec {
    ProcessSpec {
        id: id.into(),
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

struct Attached {
    stdin: mpsc::Sender<StdinChunk>,
    output: tonic::Streaming<skiff_proto::v1::OutputChunk>,
}

async fn attach(client: &mut Client, id: &str) -> Result<Attached, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(StdinChunk {
        id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let output = client.stdio(ReceiverStream::new(rx)).await?.into_inner();
    Ok(Attached { stdin: tx, output })
}

/// Everything the process wrote, by stream.
async fn drain(mut output: tonic::Streaming<skiff_proto::v1::OutputChunk>) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = output.message().await.expect("output stream") {
        assert!(
            chunk.data.len() <= 64 * 1024,
            "chunk of {} bytes",
            chunk.data.len()
        );
        match Stream::try_from(chunk.stream).expect("stream") {
            Stream::Stdout => out.extend_from_slice(&chunk.data),
            Stream::Stderr => err.extend_from_slice(&chunk.data),
        }
    }
    (out, err)
}

async fn wait(client: &mut Client, id: &str) -> ExitStatus {
    client
        .wait(ProcessRef { id: id.into() })
        .await
        .expect("wait")
        .into_inner()
}

/// Create, attach, start, collect output, wait.
async fn run(client: &mut Client, spec: ProcessSpec) -> (String, String, ExitStatus) {
    let id = spec.id.clone();
    client.create_process(spec).await.expect("create");
    let attached = attach(client, &id).await.expect("attach");
    let started = client
        .start_process(ProcessRef { id: id.clone() })
        .await
        .expect("start")
        .into_inner();
    assert!(started.pid > 1 && started.started_us > 0);
    let (out, err) = drain(attached.output).await;
    let status = wait(client, &id).await;
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status,
    )
}

#[tokio::test]
async fn hello_reports_versions_and_times() {
    let mut c = agent().await;
    let r = c
        .hello(HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            session_id: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.protocol_version, PROTOCOL_VERSION);
    assert_eq!(r.agent_version, env!("CARGO_PKG_VERSION"));
    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(r.kernel_release, uname.trim());
    assert_eq!(r.init_started_us, 42);
    assert!(r.agent_ready_us > 0 && r.now_us >= r.agent_ready_us);

    let err = c
        .hello(HelloRequest {
            protocol_version: PROTOCOL_VERSION + 1,
            session_id: "x".into(),
        })
        .await;
    assert_status(
        err,
        Code::FailedPrecondition,
        &format!(
            "host speaks protocol {}, this skiff-init serves {PROTOCOL_VERSION}",
            PROTOCOL_VERSION + 1
        ),
    );
}

#[tokio::test]
async fn echo_exits_zero_with_default_env() {
    let mut c = agent().await;
    let (out, err, st) = run(
        &mut c,
        sh(
            "p",
            "echo hello; echo \"$HOME|$HOSTNAME|$PATH|${TERM-none}\"; echo oops >&2",
        ),
    )
    .await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        out,
        format!(
            "hello\n/root|{}|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|none\n",
            host.trim()
        )
    );
    assert_eq!(err, "oops\n");
    assert_eq!((st.exit_code, st.signal), (0, 0));
    assert!(st.exited_us > 0);
}

#[tokio::test]
async fn exit_code_is_reported() {
    let mut c = agent().await;
    let (_, _, st) = run(&mut c, sh("p", "exit 3")).await;
    assert_eq!((st.exit_code, st.signal), (3, 0));
}

#[tokio::test]
async fn killed_by_signal_is_128_plus_signal() {
    let mut c = agent().await;
    let (_, _, st) = run(&mut c, sh("p", "kill -9 $$")).await;
    assert_eq!((st.exit_code, st.signal), (137, 9));
}

#[tokio::test]
async fn stdin_is_piped_through() {
    let mut c = agent().await;
    let spec = ProcessSpec {
        stdin: true,
        ..sh("p", "tr a-z A-Z; echo done")
    };
    c.create_process(spec).await.unwrap();
    let a = attach(&mut c, "p").await.unwrap();
    c.start_process(ProcessRef { id: "p".into() })
        .await
        .unwrap();
    a.stdin
        .send(StdinChunk {
            data: b"hello ".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    a.stdin
        .send(StdinChunk {
            data: b"world\n".to_vec(),
            eof: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let (out, _) = drain(a.output).await;
    assert_eq!(String::from_utf8_lossy(&out), "HELLO WORLD\ndone\n");
    assert_eq!(wait(&mut c, "p").await.exit_code, 0);
}

#[tokio::test]
async fn without_stdin_the_process_reads_dev_null() {
    let mut c = agent().await;
    let (out, _, st) = run(&mut c, sh("p", "cat; echo eof")).await;
    assert_eq!((out.as_str(), st.exit_code), ("eof\n", 0));
}

#[tokio::test]
async fn ten_megabytes_each_on_stdout_and_stderr_arrive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut make = |name: &str| {
        // xorshift: incompressible, reproducible, no extra crate.
        let data: Vec<u8> = (0..10 << 20)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let path = dir.path().join(name);
        std::fs::write(&path, &data).unwrap();
        (path, Sha256::digest(&data))
    };
    let (a, a_hash) = make("a");
    let (b, b_hash) = make("b");
    let mut c = agent().await;
    let script = format!("cat {} & cat {} >&2; wait", a.display(), b.display());
    let spec = sh("p", &script);
    c.create_process(spec).await.unwrap();
    let att = attach(&mut c, "p").await.unwrap();
    c.start_process(ProcessRef { id: "p".into() })
        .await
        .unwrap();
    let (out, err) = drain(att.output).await;
    assert_eq!(out.len(), 10 << 20);
    assert_eq!(err.len(), 10 << 20);
    assert_eq!(Sha256::digest(&out), a_hash, "stdout differs");
    assert_eq!(Sha256::digest(&err), b_hash, "stderr differs");
    assert_eq!(wait(&mut c, "p").await.exit_code, 0);
}

#[tokio::test]
async fn terminal_has_the_given_size_and_resizes() {
    let mut c = agent().await;
    let spec = ProcessSpec {
        terminal: true,
        stdin: true,
        tty_size: Some(TtySize {
            rows: 33,
            cols: 101,
        }),
        ..sh("p", "tty; stty size; read line; stty size; echo \"$TERM\"")
    };
    c.create_process(spec).await.unwrap();
    let mut a = attach(&mut c, "p").await.unwrap();
    c.start_process(ProcessRef { id: "p".into() })
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("33 101") {
        let chunk = a
            .output
            .message()
            .await
            .unwrap()
            .expect("output before exit");
        assert_eq!(chunk.stream, Stream::Stdout as i32, "a pty has one stream");
        seen.extend(chunk.data);
    }
    c.resize_tty(ResizeRequest {
        id: "p".into(),
        rows: 40,
        cols: 120,
    })
    .await
    .unwrap();
    a.stdin
        .send(StdinChunk {
            data: b"go\n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (rest, _) = drain(a.output).await;
    seen.extend(rest);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("33 101\r\n"), "{text:?}");
    assert!(text.contains("40 120\r\n"), "{text:?}");
    assert!(text.contains("xterm\r\n"), "{text:?}");
    assert_eq!(wait(&mut c, "p").await.exit_code, 0);
}

#[tokio::test]
async fn sigterm_ends_sleep_with_143_and_later_signals_are_no_ops() {
    let mut c = agent().await;
    let spec = ProcessSpec {
        args: vec!["sleep".into(), "100".into()],
        id: "p".into(),
        ..Default::default()
    };
    c.create_process(spec).await.unwrap();
    let a = attach(&mut c, "p").await.unwrap();
    c.start_process(ProcessRef { id: "p".into() })
        .await
        .unwrap();
    c.signal(SignalRequest {
        id: "p".into(),
        signal: 15,
        group: false,
    })
    .await
    .unwrap();
    let st = tokio::time::timeout(Duration::from_secs(10), wait(&mut c, "p"))
        .await
        .expect("exit after SIGTERM");
    assert_eq!((st.exit_code, st.signal), (143, 15));
    drain(a.output).await;
    // Exited: OK, nothing sent.
    c.signal(SignalRequest {
        id: "p".into(),
        signal: 9,
        group: true,
    })
    .await
    .unwrap();
    let err = c
        .signal(SignalRequest {
            id: "nope".into(),
            signal: 9,
            group: false,
        })
        .await;
    assert_status(err, Code::NotFound, "no process \"nope\"");
}

#[tokio::test]
async fn group_signal_reaches_children() {
    let mut c = agent().await;
    // "ready" comes after the background sleep is forked: from then on the
    // group has a child besides the shell, holding stdout open for 100 s.
    c.create_process(sh(
        "p",
        "sleep 100 & echo ready; sleep 100; echo unreachable",
    ))
    .await
    .unwrap();
    let mut a = attach(&mut c, "p").await.unwrap();
    c.start_process(ProcessRef { id: "p".into() })
        .await
        .unwrap();
    let first = a.output.message().await.unwrap().expect("ready");
    assert_eq!(first.data, b"ready\n");
    c.signal(SignalRequest {
        id: "p".into(),
        signal: 9,
        group: true,
    })
    .await
    .unwrap();
    let (out, _) = tokio::time::timeout(Duration::from_secs(10), drain(a.output))
        .await
        .expect("pipes closed: the background sleep was killed too");
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(wait(&mut c, "p").await.signal, 9);
}

#[tokio::test]
async fn main_exit_kills_background_children_so_output_ends() {
    let mut c = agent().await;
    // The orphaned sleep would hold stdout open for 1000 s.
    c.create_process(sh("main", "sleep 1000 & echo started"))
        .await
        .unwrap();
    let a = attach(&mut c, "main").await.unwrap();
    c.start_process(ProcessRef { id: "main".into() })
        .await
        .unwrap();
    let (out, _) = tokio::time::timeout(Duration::from_secs(10), drain(a.output))
        .await
        .expect("output ended");
    assert_eq!(out, b"started\n");
    assert_eq!(wait(&mut c, "main").await.exit_code, 0);
}

#[tokio::test]
async fn lookup_errors_are_distinguishable() {
    let mut c = agent().await;
    let spec = ProcessSpec {
        id: "a".into(),
        args: vec!["no-such-program-skiff".into()],
        ..Default::default()
    };
    assert_status(
        c.create_process(spec).await,
        Code::NotFound,
        "exec: \"no-such-program-skiff\": executable file not found in $PATH",
    );
    let spec = ProcessSpec {
        id: "b".into(),
        args: vec!["/etc/passwd".into()],
        ..Default::default()
    };
    assert_status(
        c.create_process(spec).await,
        Code::PermissionDenied,
        "exec: \"/etc/passwd\": permission denied",
    );
    let spec = ProcessSpec {
        id: "c".into(),
        args: vec!["sh".into()],
        user: "no-such-user-skiff".into(),
        ..Default::default()
    };
    assert_status(
        c.create_process(spec).await,
        Code::InvalidArgument,
        "unable to find user no-such-user-skiff: no matching entries in passwd file",
    );
}

#[tokio::test]
async fn ids_user_and_cwd() {
    let mut c = agent().await;
    c.create_process(sh("p", "true")).await.unwrap();
    assert_status(
        c.create_process(sh("p", "true")).await,
        Code::AlreadyExists,
        "process \"p\" exists",
    );
    assert_status(
        c.start_process(ProcessRef { id: "q".into() }).await,
        Code::NotFound,
        "no process \"q\"",
    );
    assert_status(
        attach(&mut c, "q").await.map(|_| ()),
        Code::NotFound,
        "no process \"q\"",
    );
    let a = attach(&mut c, "p").await.unwrap();
    assert_status(
        attach(&mut c, "p").await.map(|_| ()),
        Code::FailedPrecondition,
        "process \"p\" is already attached",
    );
    // Wait before start resolves once the process has run; twice works.
    let mut c2 = c.clone();
    let early = tokio::spawn(async move { wait(&mut c2, "p").await });
    c.start_process(ProcessRef { id: "p".into() })
        .await
        .unwrap();
    assert_status(
        c.start_process(ProcessRef { id: "p".into() }).await,
        Code::FailedPrecondition,
        "process p was already started",
    );
    drain(a.output).await;
    assert_eq!(early.await.unwrap().exit_code, 0);
    assert_eq!(wait(&mut c, "p").await.exit_code, 0);

    // A second agent: its first process is main again.
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("made/by/init");
    let spec = ProcessSpec {
        user: "nobody".into(),
        cwd: cwd.display().to_string(),
        ..sh("u", "id -u; id -g; pwd")
    };
    let (out, _, st) = run(&mut c, spec).await;
    let nobody = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .map(|l| l.split(':').skip(2).take(2).collect::<Vec<_>>().join("\n"))
        .expect("nobody in /etc/passwd");
    assert_eq!(out, format!("{nobody}\n{}\n", cwd.display()));
    assert_eq!(st.exit_code, 0);
}

#[tokio::test]
async fn mount_and_network_reject_bad_input() {
    let mut c = agent().await;
    let req = skiff_proto::v1::MountRequest {
        target: "relative".into(),
        ..Default::default()
    };
    assert_status(
        c.mount(req).await,
        Code::InvalidArgument,
        "mount target \"relative\" is not an absolute path",
    );
    let req = skiff_proto::v1::MountRequest {
        source: "tmpfs".into(),
        target: "/nonexistent-skiff-mount".into(),
        fstype: "tmpfs".into(),
        options: vec!["size=1m\0mode=700".into()],
        mkdir: false,
        copy_up: false,
    };
    assert_status(
        c.mount(req).await,
        Code::InvalidArgument,
        "mount option data contains a NUL byte",
    );
    let cfg = skiff_proto::v1::NetworkConfig {
        interfaces: vec![skiff_proto::v1::Interface {
            name: "no-such-if0".into(),
            ..Default::default()
        }],
        routes: vec![],
    };
    assert_status(
        c.configure_network(cfg).await,
        Code::InvalidArgument,
        "no interface named \"no-such-if0\"",
    );
    assert_status(
        c.setup_container(skiff_proto::v1::ContainerSetup::default())
            .await,
        Code::FailedPrecondition,
        "SetupContainer needs skiff-init to be PID 1 of a guest",
    );
}

#[tokio::test]
async fn mounts_tmpfs_with_data_and_read_only_binds() {
    assert!(
        rustix::process::geteuid().is_root(),
        "mounting needs root: run the suite as root (scripts/test.sh)"
    );
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("t/m");
    let req = skiff_proto::v1::MountRequest {
        source: "tmpfs".into(),
        target: tmp.display().to_string(),
        fstype: "tmpfs".into(),
        options: vec!["nosuid".into(), "size=1m".into(), "mode=700".into()],
        mkdir: true,
        copy_up: false,
    };
    c.mount(req).await.unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(tmp.to_str().unwrap()))
        .expect("mounted")
        .to_owned();
    assert!(
        line.contains("nosuid") && line.contains("size=1024k") && line.contains("mode=700"),
        "{line}"
    );
    std::fs::write(tmp.join("f"), "x").unwrap();

    let bind = dir.path().join("b");
    let req = skiff_proto::v1::MountRequest {
        source: tmp.display().to_string(),
        target: bind.display().to_string(),
        options: vec!["bind".into(), "ro".into()],
        mkdir: true,
        ..Default::default()
    };
    c.mount(req).await.unwrap();
    assert_eq!(std::fs::read_to_string(bind.join("f")).unwrap(), "x");
    let err = std::fs::write(bind.join("g"), "y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");

    // copy_up: the new (empty) filesystem receives what was at its target.
    let under = dir.path().join("u");
    std::fs::create_dir_all(under.join("sub")).unwrap();
    std::fs::write(under.join("sub/g"), "below").unwrap();
    let req = skiff_proto::v1::MountRequest {
        source: "tmpfs".into(),
        target: under.display().to_string(),
        fstype: "tmpfs".into(),
        options: vec!["size=1m".into()],
        copy_up: true,
        ..Default::default()
    };
    c.mount(req).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(under.join("sub/g")).unwrap(),
        "below"
    );
    std::fs::write(under.join("sub/g"), "above").unwrap();
    rustix::mount::unmount(under.as_path(), rustix::mount::UnmountFlags::DETACH).unwrap();
    assert_eq!(
        std::fs::read_to_string(under.join("sub/g")).unwrap(),
        "below",
        "the copy lived in the tmpfs; what was below is untouched"
    );
    for m in [&bind, &tmp] {
        rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH).unwrap();
    }
}

// ---- ListProcesses and Stats ----

/// Creates, attaches and starts; returns the output stream and the pid.
async fn spawn(client: &mut Client, spec: ProcessSpec) -> (Attached, u32, u64) {
    let id = spec.id.clone();
    client.create_process(spec).await.expect("create");
    let attached = attach(client, &id).await.expect("attach");
    let started = client
        .start_process(ProcessRef { id })
        .await
        .expect("start")
        .into_inner();
    (attached, started.pid, started.started_us)
}

/// The first line the process writes.
async fn first_line(a: &mut Attached) -> String {
    let mut seen = Vec::new();
    while !seen.contains(&b'\n') {
        let chunk = a
            .output
            .message()
            .await
            .unwrap()
            .expect("a line before exit");
        seen.extend(chunk.data);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    text.lines()
        .next()
        .unwrap()
        .trim_end_matches('\r')
        .to_owned()
}

async fn kill(client: &mut Client, id: &str) {
    client
        .signal(SignalRequest {
            id: id.into(),
            signal: 9,
            group: true,
        })
        .await
        .unwrap();
    assert_eq!(wait(client, id).await.signal, 9);
}

/// The parent of `pid`, read from /proc here (not through the agent).
fn ppid_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn descends_from_us(mut pid: u32) -> bool {
    let me = std::process::id();
    for _ in 0..64 {
        match ppid_of(pid) {
            Some(p) if p == me => return true,
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

fn my_user_name() -> String {
    let uid = rustix::process::geteuid().as_raw().to_string();
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some(uid.as_str()))
        .map(|l| l.split(':').next().unwrap().to_owned())
        .unwrap_or_default()
}

async fn list(client: &mut Client) -> Vec<ProcessInfo> {
    client
        .list_processes(Empty {})
        .await
        .expect("ListProcesses")
        .into_inner()
        .processes
}

fn find(list: &[ProcessInfo], pid: u32) -> &ProcessInfo {
    list.iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not listed: {list:#?}"))
}

#[tokio::test]
async fn list_processes_shows_the_agents_descendants_and_nothing_of_the_host() {
    // A host process that is not the agent's: an orphan, adopted elsewhere.
    let orphan = std::process::Command::new("sh")
        .args(["-c", "sleep 997 </dev/null >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    let orphan: u32 = String::from_utf8_lossy(&orphan.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(!descends_from_us(orphan), "the orphan is still ours");

    let mut c = agent().await;
    let before_us = skiff_init::clock::boottime_us();
    let script = "sleep 1000 & echo $!; wait";
    let (mut tree, sh_pid, sh_started_us) = spawn(&mut c, sh("tree", script)).await;
    let sleep_pid: u32 = first_line(&mut tree).await.parse().unwrap();
    // `true` exits at once and, never waited for by the sleep that the shell
    // becomes, stays a zombie.
    let (_zombie_out, zombie_parent, _) =
        spawn(&mut c, sh("zombie", "/bin/true & exec sleep 999")).await;
    let tty_spec = ProcessSpec {
        terminal: true,
        ..sh("tty", "tty; exec sleep 998")
    };
    let (mut tty_out, tty_pid, _) = spawn(&mut c, tty_spec).await;
    let tty_path = first_line(&mut tty_out).await;

    let mut procs = list(&mut c).await;
    // The zombie appears once `true` has exited.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !procs
        .iter()
        .any(|p| p.ppid == zombie_parent && p.state == "Z")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no zombie: {procs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        procs = list(&mut c).await;
    }

    let me = std::process::id();
    let uid = rustix::process::geteuid().as_raw();
    let user = my_user_name();
    let shell = find(&procs, sh_pid);
    assert_eq!(
        (
            shell.ppid,
            shell.uid,
            shell.user.as_str(),
            shell.args.clone(),
            shell.tty.as_str()
        ),
        (
            me,
            uid,
            user.as_str(),
            vec!["/bin/sh".to_owned(), "-c".into(), script.into()],
            ""
        )
    );
    // Waiting for its child.
    assert_eq!(shell.state, "S");
    assert!(shell.rss_bytes > 0);
    // On the Hello clock: /proc's start time (10 ms ticks, rounded down)
    // lies between just before the start and StartProcess's answer.
    assert!(
        before_us.saturating_sub(10_000) <= shell.started_us && shell.started_us <= sh_started_us,
        "started_us {} outside {before_us}..={sh_started_us}",
        shell.started_us
    );
    let sleep = find(&procs, sleep_pid);
    assert_eq!(
        (
            sleep.ppid,
            sleep.state.as_str(),
            sleep.args.clone(),
            sleep.user.as_str()
        ),
        (
            sh_pid,
            "S",
            vec!["sleep".to_owned(), "1000".into()],
            user.as_str()
        )
    );
    let sleeper = find(&procs, zombie_parent);
    assert_eq!(sleeper.args, ["sleep", "999"]);
    let zombie = procs.iter().find(|p| p.ppid == zombie_parent).unwrap();
    assert_eq!(
        (zombie.state.as_str(), zombie.args.clone()),
        ("Z", vec!["[true]".to_owned()])
    );
    assert_eq!(zombie.rss_bytes, 0);
    let on_tty = find(&procs, tty_pid);
    assert_eq!(
        (on_tty.tty.as_str(), on_tty.args.clone()),
        (
            tty_path.strip_prefix("/dev/").unwrap(),
            vec!["sleep".to_owned(), "998".into()]
        )
    );
    assert!(on_tty.tty.starts_with("pts/"), "{}", on_tty.tty);

    // Nothing but the agent's descendants (other tests of this binary run
    // theirs at the same time): not init, not the test itself, not the orphan.
    for p in &procs {
        assert!(descends_from_us(p.pid), "not the agent's: {p:?}");
    }
    for pid in [1, me, orphan] {
        assert!(procs.iter().all(|p| p.pid != pid), "pid {pid} listed");
    }
    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    let mut sorted = pids.clone();
    sorted.sort_unstable();
    assert_eq!(pids, sorted, "by pid");

    for id in ["tree", "zombie", "tty"] {
        kill(&mut c, id).await;
    }
    let gone = list(&mut c).await;
    for pid in [sh_pid, sleep_pid, zombie_parent, tty_pid] {
        assert!(gone.iter().all(|p| p.pid != pid), "pid {pid} still listed");
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(orphan as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

#[tokio::test]
async fn stats_count_cpus_memory_and_busy_time() {
    let mut c = agent().await;
    let before = c.stats(Empty {}).await.unwrap().into_inner();
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpus = proc_stat
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.strip_prefix("cpu"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(cpus >= 1);
    assert_eq!(before.cpus as usize, cpus);
    assert_eq!(before.memory_total_bytes, total_kib * 1024);
    assert!(
        0 < before.memory_available_bytes
            && before.memory_available_bytes <= before.memory_total_bytes,
        "{before:?}"
    );

    let (_out, pid, _) = spawn(&mut c, sh("burn", "while :; do :; done")).await;
    // Until the loop has used a third of a second of CPU.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let burned = loop {
        let cpu = find(&list(&mut c).await, pid).cpu_time_us;
        if cpu >= 300_000 {
            break cpu;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loop got no CPU"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = c.stats(Empty {}).await.unwrap().into_inner();
    assert!(after.processes >= 1, "{after:?}");
    assert!(after.now_us > before.now_us);
    // All of the loop's CPU time was spent between the two samples. The
    // kernel samples /proc/stat by ticks and scales a task's time from its
    // exact runtime, so the two agree only roughly: half is a safe floor
    // (and a unit error, ticks for µs, is off by 10^4).
    let busy = after
        .cpu_busy_us
        .checked_sub(before.cpu_busy_us)
        .expect("busy time went backwards");
    assert!(
        busy >= burned / 2,
        "busy {busy} µs, the loop alone {burned} µs"
    );
    kill(&mut c, "burn").await;
}

// ---- StatPath, ReadArchive, WriteArchive ----

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_root(what: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{what} needs root: run the suite as root (scripts/test.sh)"
    );
}

fn path_req(path: &Path) -> PathRequest {
    PathRequest {
        path: path.display().to_string(),
        follow_link: false,
    }
}

#[tokio::test]
async fn stat_path_of_a_file_a_dir_a_symlink_and_nothing() {
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    chmod(&f, 0o640);
    set_mtime(&f, 1_600_000_000);
    let d = dir.path().join("sub");
    std::fs::create_dir(&d).unwrap();
    chmod(&d, 0o750);
    set_mtime(&d, 1_500_000_000);
    let l = dir.path().join("link");
    std::os::unix::fs::symlink("notes.txt", &l).unwrap();
    set_mtime(&l, 1_400_000_000);

    let st = c.stat_path(path_req(&f)).await.unwrap().into_inner();
    assert_eq!(
        (
            st.name.as_str(),
            st.size,
            st.mode,
            st.mtime,
            st.link_target.as_str()
        ),
        ("notes.txt", 5, 0o100640, 1_600_000_000, "")
    );
    let st = c.stat_path(path_req(&d)).await.unwrap().into_inner();
    assert_eq!(
        (st.name.as_str(), st.mode, st.mtime),
        ("sub", 0o040750, 1_500_000_000)
    );
    // A trailing slash or "/." still names the directory.
    let req = PathRequest {
        path: format!("{}/.", d.display()),
        follow_link: false,
    };
    assert_eq!(c.stat_path(req).await.unwrap().into_inner().name, "sub");
    let st = c.stat_path(path_req(&l)).await.unwrap().into_inner();
    assert_eq!(
        (
            st.name.as_str(),
            st.size,
            st.mode & 0o170000,
            st.mtime,
            st.link_target.as_str()
        ),
        ("link", 9, 0o120000, 1_400_000_000, "notes.txt")
    );

    let missing = dir.path().join("nope");
    assert_status(
        c.stat_path(path_req(&missing)).await,
        Code::NotFound,
        &format!(
            "no such file or directory in the container: {}",
            missing.display()
        ),
    );
    let under_file = f.join("x");
    assert_status(
        c.stat_path(path_req(&under_file)).await,
        Code::NotFound,
        &format!(
            "no such file or directory in the container: {}",
            under_file.display()
        ),
    );
    assert_status(
        c.stat_path(PathRequest {
            path: "etc/hosts".into(),
            follow_link: false,
        })
        .await,
        Code::InvalidArgument,
        "path \"etc/hosts\" is not absolute",
    );
}

/// The whole ReadArchive stream; every chunk is checked for its size.
async fn read_archive(c: &mut Client, req: PathRequest) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = c.read_archive(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert!(
            !chunk.data.is_empty() && chunk.data.len() <= 64 * 1024,
            "chunk of {} bytes",
            chunk.data.len()
        );
        out.extend(chunk.data);
    }
    Ok(out)
}

/// What an entry is, the same from a tree on disk and from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    /// f, d, l, p, c, b
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    /// None for symlinks (not every extractor sets theirs).
    mtime: Option<u64>,
    data: Vec<u8>,
    link: String,
    dev: (u32, u32),
}

/// The tree at `path` named `name`, depth first in name order, sockets
/// left out: what ReadArchive should give, computed without it.
fn walk(path: &Path, name: &str, out: &mut Vec<(String, Node)>) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(path).unwrap();
    let ft = m.file_type();
    let kind = if ft.is_file() {
        'f'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return;
    };
    let dev = if "cb".contains(kind) {
        (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev()))
    } else {
        (0, 0)
    };
    out.push((
        name.to_owned(),
        Node {
            kind,
            mode: if kind == 'l' { 0 } else { m.mode() & 0o7777 },
            uid: m.uid(),
            gid: m.gid(),
            mtime: (kind != 'l').then_some(m.mtime() as u64),
            data: if kind == 'f' {
                std::fs::read(path).unwrap()
            } else {
                Vec::new()
            },
            link: if kind == 'l' {
                std::fs::read_link(path).unwrap().display().to_string()
            } else {
                String::new()
            },
            dev,
        },
    ));
    if kind == 'd' {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let child = if name.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{name}/{}", n.to_string_lossy())
            };
            walk(&path.join(&n), &child, out);
        }
    }
}

fn walk_children(path: &Path) -> Vec<(String, Node)> {
    let mut out = Vec::new();
    walk(path, "", &mut out);
    out.remove(0);
    out
}

/// The entries of an archive, read back with the tar crate.
fn entries(archive: &[u8]) -> Vec<(String, Node)> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Regular => 'f',
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Fifo => 'p',
                tar::EntryType::Char => 'c',
                tar::EntryType::Block => 'b',
                other => panic!("unexpected entry type {other:?}"),
            };
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap())
                .unwrap_or_default();
            let node = Node {
                kind,
                mode: if kind == 'l' { 0 } else { h.mode().unwrap() },
                uid: h.uid().unwrap() as u32,
                gid: h.gid().unwrap() as u32,
                mtime: (kind != 'l').then(|| h.mtime().unwrap()),
                data,
                link,
                dev: if "cb".contains(kind) {
                    (
                        h.device_major().unwrap().unwrap(),
                        h.device_minor().unwrap().unwrap(),
                    )
                } else {
                    (0, 0)
                },
            };
            (name, node)
        })
        .collect()
}

/// A tree with every kind of entry ReadArchive handles, and a socket.
fn make_tree(root: &Path) {
    use rustix::fs::{FileType, Mode};
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(root.join("bin/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    chmod(&root.join("bin/run.sh"), 0o4755);
    std::fs::write(root.join("secret"), "s3cret").unwrap();
    chmod(&root.join("secret"), 0o600);
    std::os::unix::fs::chown(root.join("secret"), Some(1234), Some(5678)).unwrap();
    std::fs::hard_link(root.join("a.txt"), root.join("hard")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
    let long = "n".repeat(150);
    std::fs::create_dir(root.join("deep")).unwrap();
    std::fs::write(root.join("deep").join(&long), "long name").unwrap();
    // A link target over the header's 100 bytes.
    std::os::unix::fs::symlink(format!("deep/{long}"), root.join("longlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("pipe"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    chmod(&root.join("pipe"), 0o640);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    chmod(&root.join("null"), 0o666);
    std::fs::create_dir(root.join("empty")).unwrap();
    chmod(&root.join("empty"), 0o700);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    for (i, p) in [
        "a.txt",
        "bin/run.sh",
        "secret",
        "deep/nnn",
        "pipe",
        "null",
        "empty",
        "deep",
        "bin",
        "",
    ]
    .iter()
    .enumerate()
    {
        let p = if *p == "deep/nnn" {
            root.join("deep").join(&long)
        } else {
            root.join(p)
        };
        set_mtime(&p, 1_700_000_000 + i as i64 * 1000);
    }
}

#[tokio::test]
async fn read_archive_of_a_file_and_of_a_tree_entry_by_entry() {
    assert_root("chown and mknod of the fixture");
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);

    // One file: "/…/tree/a.txt" gives "a.txt".
    let bytes = read_archive(&mut c, path_req(&tree.join("a.txt")))
        .await
        .unwrap();
    let mut expected = Vec::new();
    walk(&tree.join("a.txt"), "a.txt", &mut expected);
    assert_eq!(entries(&bytes), expected);

    // The tree, under its own name.
    let bytes = read_archive(&mut c, path_req(&tree)).await.unwrap();
    let mut expected = Vec::new();
    walk(&tree, "tree", &mut expected);
    let got = entries(&bytes);
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(got, expected);
    // Spot checks of what the oracle walk holds, so it cannot be vacuous.
    let get = |name: &str| &got.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(get("tree/bin/run.sh").mode, 0o4755);
    assert_eq!(
        (get("tree/secret").uid, get("tree/secret").gid),
        (1234, 5678)
    );
    assert_eq!(get("tree/hard").data, b"alpha\n");
    assert_eq!(get("tree/abs").link, "/etc/passwd");
    assert_eq!(
        get("tree/longlink").link,
        format!("deep/{}", "n".repeat(150))
    );
    assert_eq!((get("tree/pipe").kind, get("tree/pipe").mode), ('p', 0o640));
    assert_eq!((get("tree/null").kind, get("tree/null").dev), ('c', (1, 3)));
    assert_eq!(get("tree").mtime, Some(1_700_009_000));
    assert!(got.iter().all(|(n, _)| n != "tree/sock"));

    // GNU tar, independently, unpacks the same tree from it.
    let out = dir.path().join("gnu");
    std::fs::create_dir(&out).unwrap();
    let mut gnu = std::process::Command::new("tar")
        .args(["-x", "-f", "-", "--same-owner", "--same-permissions", "-C"])
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(gnu.stdin.as_mut().unwrap(), &bytes).unwrap();
    drop(gnu.stdin.take());
    assert!(gnu.wait().unwrap().success());
    let mut unpacked = Vec::new();
    walk(&out.join("tree"), "tree", &mut unpacked);
    assert_eq!(unpacked, expected);

    // "tree/.": the contents, without the "tree/" prefix and without an
    // entry for the directory itself.
    let req = PathRequest {
        path: format!("{}/.", tree.display()),
        follow_link: false,
    };
    let bytes = read_archive(&mut c, req).await.unwrap();
    assert_eq!(entries(&bytes), walk_children(&tree));

    // A symlink at the top is the symlink, or with follow_link its target
    // under the link's name.
    let bytes = read_archive(&mut c, path_req(&tree.join("link")))
        .await
        .unwrap();
    let got = entries(&bytes);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].0.as_str(), got[0].1.kind, got[0].1.link.as_str()),
        ("link", 'l', "a.txt")
    );
    let req = PathRequest {
        follow_link: true,
        ..path_req(&tree.join("link"))
    };
    let got = entries(&read_archive(&mut c, req).await.unwrap());
    let mut target = Vec::new();
    walk(&tree.join("a.txt"), "link", &mut target);
    assert_eq!(got, target);
}

#[tokio::test]
async fn read_archive_refuses_before_any_data() {
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_status(
        c.read_archive(path_req(&missing)).await,
        Code::NotFound,
        &format!(
            "no such file or directory in the container: {}",
            missing.display()
        ),
    );
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let contents_of_file = format!("{}/.", file.display());
    assert_status(
        c.read_archive(PathRequest {
            path: contents_of_file.clone(),
            follow_link: false,
        })
        .await,
        Code::FailedPrecondition,
        &format!("not a directory in the container: {contents_of_file}"),
    );
    assert_status(
        c.read_archive(PathRequest {
            path: "relative".into(),
            follow_link: false,
        })
        .await,
        Code::InvalidArgument,
        "path \"relative\" is not absolute",
    );
}

#[tokio::test]
async fn read_archive_does_not_descend_into_proc() {
    assert_root("mounting proc");
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("top");
    let p = top.join("proc");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(top.join("f"), "x").unwrap();
    rustix::mount::mount("proc", &p, "proc", rustix::mount::MountFlags::empty(), None).unwrap();
    let result = read_archive(&mut c, path_req(&top)).await;
    rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH).unwrap();
    let names: Vec<String> = entries(&result.unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["top", "top/f", "top/proc"]);
}

/// Sends `archive` to WriteArchive in 64 KiB chunks after the first one.
async fn write_archive(
    c: &mut Client,
    dest: &Path,
    keep_owner: bool,
    archive: &[u8],
) -> Result<(), tonic::Status> {
    let mut chunks = vec![ArchiveChunk {
        path: dest.display().to_string(),
        keep_owner,
        data: Vec::new(),
    }];
    chunks.extend(archive.chunks(64 * 1024).map(|d| ArchiveChunk {
        data: d.to_vec(),
        ..Default::default()
    }));
    c.write_archive(tokio_stream::iter(chunks))
        .await
        .map(|_| ())
}

/// One entry with the name (and link) written into the header as given,
/// which the tar crate's builder would refuse for absolute paths.
fn raw_entry(
    out: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.append(&h, data).unwrap();
}

fn header(kind: tar::EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// A tar of: a directory with a file, a set-uid file, a symlink, a hard
/// link, a fifo, a device, a long name; a file whose parents have no
/// entries; and a file where the destination has a symlink to outside.
fn archive_to_unpack() -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(
        &mut header(T::Directory, 0o750, 1_600_000_001, 0),
        "d",
        std::io::empty(),
    )
    .unwrap();
    b.append_data(
        &mut header(T::Regular, 0o640, 1_600_000_002, 5),
        "d/f",
        &b"hello"[..],
    )
    .unwrap();
    b.append_data(
        &mut header(T::Regular, 0o4755, 1_600_000_003, 2),
        "d/suid",
        &b"#!"[..],
    )
    .unwrap();
    b.append_link(&mut header(T::Symlink, 0o777, 1_600_000_004, 0), "d/l", "f")
        .unwrap();
    b.append_link(&mut header(T::Link, 0o640, 1_600_000_002, 0), "d/h", "d/f")
        .unwrap();
    b.append_data(
        &mut header(T::Fifo, 0o620, 1_600_000_005, 0),
        "d/p",
        std::io::empty(),
    )
    .unwrap();
    let mut dev = header(T::Char, 0o600, 1_600_000_006, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(5).unwrap();
    b.append_data(&mut dev, "d/zero", std::io::empty()).unwrap();
    let long = format!("d/{}", "m".repeat(140));
    b.append_data(
        &mut header(T::Regular, 0o644, 1_600_000_007, 4),
        &long,
        &b"long"[..],
    )
    .unwrap();
    b.append_data(
        &mut header(T::Regular, 0o600, 1_600_000_008, 3),
        "x/y/z.txt",
        &b"xyz"[..],
    )
    .unwrap();
    b.append_data(
        &mut header(T::Regular, 0o644, 1_600_000_009, 4),
        "replace-me",
        &b"mine"[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn write_archive_unpacks_with_owners_modes_and_mtimes() {
    assert_root("chown and mknod");
    use std::os::unix::fs::MetadataExt;
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("target"), "untouched").unwrap();

    for keep_owner in [false, true] {
        let dest = dir.path().join(format!("dest-{keep_owner}"));
        std::fs::create_dir(&dest).unwrap();
        // Already there: a directory of someone else's, which the archive's
        // entry takes over, and a symlink out that its file replaces.
        std::fs::create_dir(dest.join("d")).unwrap();
        std::os::unix::fs::chown(dest.join("d"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), dest.join("replace-me")).unwrap();

        write_archive(&mut c, &dest, keep_owner, &archive_to_unpack())
            .await
            .unwrap();

        let (uid, gid) = if keep_owner { (1234, 5678) } else { (0, 0) };
        let long = format!("d/{}", "m".repeat(140));
        let node = |kind, mode, mtime, data: &[u8], link: &str, dev| Node {
            kind,
            mode,
            uid,
            gid,
            mtime,
            data: data.to_vec(),
            link: link.into(),
            dev,
        };
        let mut expected = vec![
            (
                "d".to_owned(),
                node('d', 0o750, Some(1_600_000_001), b"", "", (0, 0)),
            ),
            (
                "d/f".into(),
                node('f', 0o640, Some(1_600_000_002), b"hello", "", (0, 0)),
            ),
            (
                "d/h".into(),
                node('f', 0o640, Some(1_600_000_002), b"hello", "", (0, 0)),
            ),
            ("d/l".into(), node('l', 0, None, b"", "f", (0, 0))),
            (
                long,
                node('f', 0o644, Some(1_600_000_007), b"long", "", (0, 0)),
            ),
            (
                "d/p".into(),
                node('p', 0o620, Some(1_600_000_005), b"", "", (0, 0)),
            ),
            (
                "d/suid".into(),
                node('f', 0o4755, Some(1_600_000_003), b"#!", "", (0, 0)),
            ),
            (
                "d/zero".into(),
                node('c', 0o600, Some(1_600_000_006), b"", "", (1, 5)),
            ),
            (
                "replace-me".into(),
                node('f', 0o644, Some(1_600_000_009), b"mine", "", (0, 0)),
            ),
            (
                "x".into(),
                Node {
                    uid: 0,
                    gid: 0,
                    ..node('d', 0o755, None, b"", "", (0, 0))
                },
            ),
            (
                "x/y".into(),
                Node {
                    uid: 0,
                    gid: 0,
                    ..node('d', 0o755, None, b"", "", (0, 0))
                },
            ),
            (
                "x/y/z.txt".into(),
                node('f', 0o600, Some(1_600_000_008), b"xyz", "", (0, 0)),
            ),
        ];
        let mut got = walk_children(&dest);
        // Directories made for x/y/z.txt have no entry of their own: their
        // mtime is whenever they were made.
        for (name, n) in got.iter_mut() {
            if name == "x" || name == "x/y" {
                n.mtime = None;
            }
        }
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, expected, "keep_owner {keep_owner}");
        let ino = |p: &str| std::fs::metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("d/h"), ino("d/f"), "a hard link");
        assert_eq!(
            std::fs::read_to_string(outside.join("target")).unwrap(),
            "untouched"
        );
    }
}

#[tokio::test]
async fn write_archive_refuses_entries_that_leave_the_destination() {
    use tar::EntryType as T;
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("target"), "untouched").unwrap();
    let abs = outside.join("abs").display().to_string();
    let outside_s = outside.display().to_string();

    type Case = (&'static str, Vec<(String, T, String)>, Code, String);
    let file = |name: &str| (name.to_owned(), T::Regular, String::new());
    let symlink = |name: &str, to: &str| (name.to_owned(), T::Symlink, to.to_owned());
    let cases: Vec<Case> = vec![
        ("dotdot", vec![file("../x")], Code::InvalidArgument, r#"archive entry "../x" contains "..""#.into()),
        ("inner-dotdot", vec![file("a/../../x")], Code::InvalidArgument, r#"archive entry "a/../../x" contains "..""#.into()),
        ("absolute", vec![file(&abs)], Code::InvalidArgument, format!("archive entry {abs:?} is an absolute path")),
        (
            "symlink-out",
            vec![symlink("esc", &outside_s), file("esc/pwned")],
            Code::InvalidArgument,
            r#"archive entry "esc/pwned" would be written outside the destination through a symlink"#.into(),
        ),
        (
            "relative-symlink-out",
            vec![symlink("up", "../outside"), file("up/pwned")],
            Code::InvalidArgument,
            r#"archive entry "up/pwned" would be written outside the destination through a symlink"#.into(),
        ),
        (
            "chained-symlinks-out",
            vec![symlink("a", "b"), symlink("b", "../outside"), file("a/pwned")],
            Code::InvalidArgument,
            r#"archive entry "a/pwned" would be written outside the destination through a symlink"#.into(),
        ),
        (
            "dir-through-symlink",
            vec![symlink("esc", &outside_s), ("esc/newdir".into(), T::Directory, String::new())],
            Code::InvalidArgument,
            r#"archive entry "esc/newdir" would be written outside the destination through a symlink"#.into(),
        ),
        (
            "hardlink-dotdot",
            vec![("hl".into(), T::Link, "../outside/target".into())],
            Code::InvalidArgument,
            r#"archive entry "hl" links to "../outside/target", which contains "..""#.into(),
        ),
        (
            "hardlink-through-symlink",
            vec![symlink("esc", &outside_s), ("hl".into(), T::Link, "esc/target".into())],
            Code::InvalidArgument,
            r#"archive entry "hl" links to "esc/target", which is outside the destination"#.into(),
        ),
    ];
    let cases_dir = dir.path().join("cases");
    std::fs::create_dir(&cases_dir).unwrap();
    let mut made = Vec::new();
    for (what, items, code, message) in cases {
        let dest = cases_dir.join(what);
        std::fs::create_dir(&dest).unwrap();
        made.push(what.to_owned());
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link) in &items {
            let data: &[u8] = if *kind == T::Regular { b"pwned" } else { b"" };
            raw_entry(&mut b, name, *kind, link, data);
        }
        let result = write_archive(&mut c, &dest, false, &b.into_inner().unwrap()).await;
        let e = result.expect_err(what);
        assert_eq!((e.code(), e.message()), (code, message.as_str()), "{what}");
        // Nothing beside the destinations, nothing new outside.
        let names = |d: &Path| {
            let mut n: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let mut expected = made.clone();
        expected.sort();
        assert_eq!(names(&cases_dir), expected, "{what}");
        assert_eq!(names(dir.path()), ["cases", "outside"], "{what}");
        assert_eq!(names(&outside), ["target"], "{what}");
        assert_eq!(
            std::fs::read_to_string(outside.join("target")).unwrap(),
            "untouched"
        );
    }
}

#[tokio::test]
async fn write_archive_destination_and_stream_errors() {
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_status(
        write_archive(&mut c, &missing, false, b"").await,
        Code::NotFound,
        &format!("no such directory in the container: {}", missing.display()),
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert_status(
        write_archive(&mut c, &file, false, b"").await,
        Code::FailedPrecondition,
        &format!("not a directory in the container: {}", file.display()),
    );
    assert_status(
        write_archive(&mut c, Path::new("rel/dir"), false, b"").await,
        Code::InvalidArgument,
        "destination \"rel/dir\" is not an absolute path",
    );
    assert_status(
        c.write_archive(tokio_stream::iter(Vec::<ArchiveChunk>::new()))
            .await,
        Code::InvalidArgument,
        "WriteArchive stream ended before naming a directory",
    );
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, 1, 1),
        "f",
        &b"x"[..],
    )
    .unwrap();
    let mut corrupt = b.into_inner().unwrap();
    corrupt[0] = b'g';
    assert_status(
        write_archive(&mut c, dir.path(), false, &corrupt).await,
        Code::InvalidArgument,
        "reading the archive: archive header checksum mismatch",
    );
    // A file cut short inside its data.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 1, 10_000);
    b.append_data(&mut h, "cut", &[7u8; 10_000][..]).unwrap();
    let whole = b.into_inner().unwrap();
    assert_status(
        write_archive(&mut c, dir.path(), false, &whole[..4096]).await,
        Code::InvalidArgument,
        "reading the archive: it ends inside \"cut\"",
    );
    // An empty stream after the first chunk is an empty archive.
    write_archive(&mut c, dir.path(), false, b"").await.unwrap();
    // A directory entry cannot become a file, nor the other way round
    // silently: a file over an existing directory is refused.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, 1, 1),
        "sub",
        &b"x"[..],
    )
    .unwrap();
    assert_status(
        write_archive(&mut c, dir.path(), false, &b.into_inner().unwrap()).await,
        Code::FailedPrecondition,
        "archive entry \"sub\" would replace a directory",
    );
}

#[tokio::test]
async fn read_archive_then_write_archive_copies_a_tree() {
    assert_root("chown and mknod of the fixture");
    let mut c = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let bytes = read_archive(&mut c, path_req(&tree)).await.unwrap();
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    write_archive(&mut c, &copy, true, &bytes).await.unwrap();
    let mut expected = Vec::new();
    walk(&tree, "tree", &mut expected);
    // The hard link comes back as a file of its own: ReadArchive stores it so.
    let mut got = Vec::new();
    walk(&copy.join("tree"), "tree", &mut got);
    assert_eq!(got, expected);
}
