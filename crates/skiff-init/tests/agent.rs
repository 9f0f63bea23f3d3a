//! The Agent service end to end over an in-memory channel: the real
//! handshake, gRPC and fork/exec of host programs. The test process is not
//! PID 1, so the agent runs in host mode (it reaps only its own children).

use std::time::Duration;

use sha2::{Digest, Sha256};
use skiff_init::agent::{AgentService, Mode};
use skiff_proto::session::{guest_handshake, host_handshake};
use skiff_proto::v1::agent_client::AgentClient;
use skiff_proto::v1::output_chunk::Stream;
use skiff_proto::v1::{
    ExitStatus, HelloRequest, ProcessRef, ProcessSpec, ResizeRequest, SignalRequest, StdinChunk,
    TtySize,
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
    for m in [&bind, &tmp] {
        rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH).unwrap();
    }
}
