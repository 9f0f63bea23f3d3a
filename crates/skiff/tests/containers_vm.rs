//! Containers that live on, against real QEMU: `run -d`, `ps`, `logs -f`,
//! `exec`, `cp`, `top`, `stats`, `inspect`, healthchecks, `stop`, `rm`; a
//! monitor killed with SIGKILL; ten creates racing for one name; restarts;
//! log rotation under a fast writer; `create` + `start -a`. Boots are few and
//! shared: one long-lived container answers most of the assertions.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::vm::qemu_processes_with;
use common::{wait_until, Out, Registry, Skiff};
use serde_json::Value;

fn setup() -> (Registry, Skiff, String) {
    common::vm::pulled("users")
}

fn inspect(s: &Skiff, name: &str) -> Value {
    let v = s.ok(&["inspect", name]).json();
    v[0].clone()
}

fn containers_dir_entries(s: &Skiff) -> Vec<String> {
    std::fs::read_dir(s.root().join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_code(out: &Out, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
}

#[test]
fn a_detached_container_from_run_to_rm() {
    let (_reg, s, image) = setup();
    let root = s.root().display().to_string();
    // PID 1 of its namespace gets only the signals it handles (as in docker).
    let script = "trap 'exit 10' USR1; i=0; while :; do echo line $i; i=$((i+1)); sleep 0.2; done";
    let cidfile = s.root().join("web.cid");
    let out = s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "app=demo",
        "--stop-signal",
        "SIGUSR1",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        &image,
        "sh",
        "-c",
        script,
    ]);
    let id = out.stdout.trim().to_owned();
    assert_eq!(std::fs::read_to_string(&cidfile).unwrap(), id);
    assert!(
        common::is_digest(&format!("sha256:{id}")),
        "run -d prints the id: {id:?}"
    );

    // ps: running, filtered, quiet, JSON.
    let table = s.ok(&["ps"]).stdout;
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with(&id[..12]) && row.ends_with("web") && row.contains("Up "),
        "{table}"
    );
    assert_eq!(s.ok(&["ps", "-q"]).stdout, format!("{}\n", &id[..12]));
    assert_eq!(
        s.ok(&["ps", "-q", "--no-trunc", "--filter", "label=app=demo"])
            .stdout,
        format!("{id}\n")
    );
    assert_eq!(s.ok(&["ps", "-q", "--filter", "name=nope"]).stdout, "");
    let ps = s.ok(&["container", "ls", "--format", "json"]).json();
    assert_eq!(ps[0]["Id"], id.as_str());
    assert_eq!(ps[0]["State"], "running");
    assert_eq!(ps[0]["Labels"]["app"], "demo");

    // logs -f sees lines as they are written.
    let follow = s.spawn(&["logs", "-f", "web"]);
    let follow_out = follow.stdout_path();
    wait_until(Duration::from_secs(60), "logs -f to show line 3", || {
        std::fs::read_to_string(&follow_out)
            .unwrap_or_default()
            .contains("line 3\n")
    });
    let logs = s.ok(&["logs", "-n", "2", "-t", "web"]).stdout;
    let tail: Vec<&str> = logs.lines().collect();
    assert_eq!(tail.len(), 2, "{logs}");
    for l in &tail {
        let (ts, text) = l.split_once(' ').unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "timestamp {ts:?}");
        assert!(text.starts_with("line "), "{l}");
    }

    // attach: new output from now on; a client that goes leaves it running.
    let attached = s.spawn(&["attach", "--no-stdin", "web"]);
    let attached_out = attached.stdout_path();
    wait_until(Duration::from_secs(60), "attach to show new lines", || {
        std::fs::read_to_string(&attached_out)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    attached.kill();
    assert_eq!(inspect(&s, "web")["State"]["Status"], "running");

    // exec: exit code, env, user, workdir, a terminal.
    assert_code(&s.run(&["exec", "web", "sh", "-c", "exit 3"]), 3);
    let out = s.ok(&[
        "exec",
        "-e",
        "A=from-exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $A; id -u; pwd",
    ]);
    assert_eq!(out.stdout, "from-exec\n65534\n/tmp\n");
    let out = s.ok(&["exec", "-t", "web", "tty"]);
    assert!(out.stdout.starts_with("/dev/pts/"), "{out:?}");
    let out = s.run(&["exec", "web", "/no/such/thing"]);
    assert_code(&out, 127);
    out.assert_clean_error(&["/no/such/thing"]);

    // cp both ways, bytes compared; a directory; a missing path.
    let host = common::tempdir();
    let data = common::pseudo_random_bytes(1 << 20);
    std::fs::write(host.path().join("blob"), &data).unwrap();
    s.ok(&[
        "cp",
        host.path().join("blob").to_str().unwrap(),
        "web:/tmp/",
    ]);
    let sum = s.ok(&["exec", "web", "sha256sum", "/tmp/blob"]).stdout;
    assert_eq!(
        sum.split_whitespace().next(),
        Some(common::sha256_hex(&data).as_str())
    );
    let back = host.path().join("back");
    s.ok(&["cp", "web:/tmp/blob", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let etc = host.path().join("etc-copy");
    s.ok(&["cp", "web:/etc", etc.to_str().unwrap()]);
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    let out = s.run(&["cp", "web:/no/such", host.path().to_str().unwrap()]);
    assert_code(&out, 1);
    out.assert_clean_error(&["/no/such"]);

    // top, stats, inspect.
    let top = s.ok(&["top", "web"]).stdout;
    assert!(top.starts_with("UID") && top.contains(script), "{top}");
    let stats = s
        .ok(&["stats", "--no-stream", "--format", "json", "web"])
        .json();
    let mem_limit = stats[0]["MemLimit"].as_u64().unwrap();
    assert!((400 << 20..=512 << 20).contains(&mem_limit), "{stats}");
    assert!(
        stats[0]["SandboxRSS"].as_u64().unwrap() > 10 << 20,
        "{stats}"
    );
    assert!(stats[0]["PIDs"].as_u64().unwrap() >= 1, "{stats}");
    let v = inspect(&s, "web");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"], "/web");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["Config"]["Labels"]["app"], "demo");
    assert_eq!(v["Config"]["StopSignal"], "SIGUSR1");
    assert_eq!(
        s.ok(&["inspect", "--format", "{{.State.Status}} {{.Name}}", "web"])
            .stdout,
        "running /web\n"
    );

    // The healthcheck: failing, then passing.
    wait_until(Duration::from_secs(60), "ps to show (unhealthy)", || {
        s.ok(&["ps"]).stdout.contains("(unhealthy)")
    });
    s.ok(&["exec", "web", "touch", "/tmp/ok"]);
    wait_until(Duration::from_secs(60), "ps to show (healthy)", || {
        s.ok(&["ps"]).stdout.contains("(healthy)")
    });

    // Errors: a name in use, an unknown container.
    let out = s.run(&["run", "-d", "--name", "web", &image, "true"]);
    assert_code(&out, 125);
    out.assert_clean_error(&["\"web\" is already in use", &id[..12]]);
    let out = s.run(&["stop", "nothere"]);
    assert_code(&out, 1);
    out.assert_clean_error(&["no such container: nothere"]);

    // stop: the process gets its stop signal (its trap exits 10) and goes;
    // the VM with it.
    s.ok(&["stop", "-t", "5", "web"]);
    assert!(
        qemu_processes_with(&root).is_empty(),
        "QEMU left after stop"
    );
    let v = inspect(&s, "web");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 10);
    let done = follow.wait(Duration::from_secs(30));
    assert!(
        done.success(),
        "logs -f ends when the container stops: {done:?}"
    );
    assert!(
        done.stdout.starts_with("line 0\nline 1\n"),
        "{}",
        done.stdout
    );
    assert!(s.ok(&["ps", "-a"]).stdout.contains("Exited (10)"));
    // Stopping it again is no error (as with docker); exec is.
    s.ok(&["stop", "web"]);
    let out = s.run(&["exec", "web", "true"]);
    assert_code(&out, 125);
    out.assert_clean_error(&["container web is not running"]);

    s.ok(&["rm", "web"]);
    assert!(containers_dir_entries(&s).is_empty());
    let out = s.run(&["rm", "web"]);
    assert_code(&out, 1);
    out.assert_clean_error(&["no such container: web"]);
}

/// A monitor killed with SIGKILL: the VM dies with it, the container reads as
/// exited (never "running" forever); a --rm one is removed by the next
/// command that sees it; `system boot` starts the `--restart always` one
/// again, and `rm -f` takes it down.
#[test]
fn a_killed_monitor_leaves_an_exited_container_and_no_vm() {
    let (_reg, s, image) = setup();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--restart",
        "always",
        &image,
        "sleep",
        "1000",
    ]);
    s.ok(&[
        "run", "-d", "--rm", "--name", "gone", &image, "sleep", "1000",
    ]);
    for name in ["victim", "gone"] {
        let v = inspect(&s, name);
        let monitor = v["State"]["MonitorPid"].as_i64().unwrap();
        let id = v["Id"].as_str().unwrap().to_owned();
        assert!(!qemu_processes_with(&id).is_empty(), "{name} has no VM");
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(monitor as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        wait_until(
            Duration::from_secs(10),
            "the VM to die with its monitor",
            || qemu_processes_with(&id).is_empty(),
        );
    }
    let ps = s.ok(&["ps", "-a", "--format", "json"]).json();
    let names: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Names"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["victim"], "the --rm container is removed on sight");
    assert_eq!(ps[0]["State"], "exited");
    assert_eq!(ps[0]["ExitCode"], 255);
    assert!(ps[0]["Error"].as_str().unwrap().contains("monitor"), "{ps}");
    assert_eq!(containers_dir_entries(&s).len(), 1);
    // As after a host reboot: `system boot` starts what should run.
    assert_eq!(s.ok(&["system", "boot"]).stdout, "victim\n");
    assert_eq!(inspect(&s, "victim")["State"]["Status"], "running");
    s.ok(&["rm", "-f", "victim"]);
    assert!(containers_dir_entries(&s).is_empty());
    assert!(qemu_processes_with(&s.root().display().to_string()).is_empty());
}

/// Ten creates racing for one name: exactly one container, nine clean errors.
#[test]
fn ten_concurrent_creates_with_one_name_make_one_container() {
    let (_reg, s, image) = setup();
    s.ok(&["create", "--name", "warm", &image, "true"]);
    s.ok(&["rm", "warm"]);
    let racers: Vec<_> = (0..10)
        .map(|_| s.spawn(&["create", "--name", "same", &image, "true"]))
        .collect();
    let outs: Vec<Out> = racers
        .into_iter()
        .map(|r| r.wait(Duration::from_secs(120)))
        .collect();
    let won: Vec<&Out> = outs.iter().filter(|o| o.success()).collect();
    assert_eq!(won.len(), 1, "{outs:#?}");
    for o in outs.iter().filter(|o| !o.success()) {
        assert_code(o, 125);
        o.assert_clean_error(&["\"same\" is already in use"]);
    }
    let ps = s.ok(&["ps", "-a", "-q", "--no-trunc"]).stdout;
    assert_eq!(ps.trim(), won[0].stdout.trim());
    assert_eq!(containers_dir_entries(&s).len(), 1);
}

/// `create` then `start -a`: the container's exit code; then a restart
/// policy that counts its restarts; then `wait`.
#[test]
fn create_start_attach_and_restart_on_failure() {
    let (_reg, s, image) = setup();
    let id = s
        .ok(&[
            "create",
            "--name",
            "job",
            &image,
            "sh",
            "-c",
            "echo working; exit 4",
        ])
        .stdout;
    assert_eq!(inspect(&s, "job")["State"]["Status"], "created");
    let out = s.run(&["start", "-a", "job"]);
    assert_code(&out, 4);
    assert_eq!(out.stdout, "working\n");
    assert_eq!(s.ok(&["wait", "job"]).stdout, "4\n");
    assert_eq!(inspect(&s, id.trim())["State"]["ExitCode"], 4);

    s.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &image,
        "sh",
        "-c",
        "echo try; exit 1",
    ]);
    assert_eq!(s.ok(&["wait", "flaky"]).stdout, "1\n");
    let v = inspect(&s, "flaky");
    assert_eq!(v["RestartCount"], 2);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    // Each run logged its line.
    assert_eq!(s.ok(&["logs", "flaky"]).stdout, "try\ntry\ntry\n");
    assert!(qemu_processes_with(&s.root().display().to_string()).is_empty());
}

/// A fast writer with a small log: the files stay bounded, the log is a
/// contiguous tail of what was written, and a follower sees everything it
/// saw in order, up to the last line.
#[test]
fn log_rotation_under_a_fast_writer() {
    let (_reg, s, image) = setup();
    let n = 30000;
    s.ok(&[
        "create",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=64k",
        "--log-opt",
        "max-file=2",
        &image,
        "seq",
        "1",
        &n.to_string(),
    ]);
    s.ok(&["start", "chatty"]);
    let follow = s.spawn(&["logs", "-f", "chatty"]);
    assert_eq!(s.ok(&["wait", "chatty"]).stdout, "0\n");
    let followed = follow.wait(Duration::from_secs(60));
    assert!(followed.success(), "{followed:?}");
    let seen: Vec<u64> = followed
        .stdout
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "followed lines out of order or repeated"
    );
    assert_eq!(seen.last(), Some(&n));

    let id = inspect(&s, "chatty")["Id"].as_str().unwrap().to_owned();
    let dir = s.root().join("containers").join(&id);
    let logs: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container.log"))
        .collect();
    assert_eq!(
        logs,
        BTreeSet::from(["container.log".into(), "container.log.1".into()])
    );
    for f in &logs {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 64 << 10, "{f} is {len} bytes");
    }
    let kept: Vec<u64> = s
        .ok(&["logs", "chatty"])
        .stdout
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(!kept.is_empty() && kept.len() < n as usize);
    let first = kept[0];
    assert_eq!(
        kept,
        (first..=n).collect::<Vec<_>>(),
        "the kept log is a contiguous tail"
    );
}
