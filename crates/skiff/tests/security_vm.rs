//! A container's confinement inside its VM, against real QEMU and the guest
//! kernel: its own PID/mount/IPC/UTS namespaces (its process is PID 1), a
//! minimal /dev, docker's capabilities and seccomp profile, no-new-privileges,
//! pids/ulimit/shm/sysctl settings, what --privileged lifts, and the flags
//! refused before any boot.

mod common;

use std::path::PathBuf;

use common::{Registry, RegistryOpts, Skiff};

fn setup() -> (Registry, Skiff, String) {
    common::vm::pulled("users")
}

/// A static probe for what busybox cannot show: effective uid (for setuid
/// checks), a denied syscall's errno, binding port 80.
fn probe() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        common::vm::static_c_tool(
            "probe",
            r#"#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
static int report(const char *what, long rc) {
  printf("%s=%s\n", what, rc < 0 ? strerror(errno) : "ok");
  return 0;
}
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *w = argv[1];
  if (!strcmp(w, "euid")) { printf("euid=%d\n", (int)geteuid()); return 0; }
  /* KEYCTL_GET_KEYRING_ID of the session keyring, without creating it. */
  if (!strcmp(w, "keyctl")) return report(w, syscall(SYS_keyctl, 0, -3, 0));
  if (!strcmp(w, "userns")) return report(w, unshare(CLONE_NEWUSER));
  if (!strcmp(w, "bind80")) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    return report(w, bind(s, (struct sockaddr *)&a, sizeof a));
  }
  if (!strcmp(w, "mkdir") && argc > 2) return report(w, mkdir(argv[2], 0755));
  return 2;
}
"#,
        )
    })
    .clone()
}

/// `skiff exec` in `c` as `user`: stdout.
fn exec_as(s: &Skiff, c: &str, user: &str, cmd: &str) -> String {
    s.ok(&["exec", "-u", user, c, "sh", "-c", cmd]).stdout
}

/// Copies the probe in as /bin/probe and a setuid-root copy as /tmp/suid.
fn install_probe(s: &Skiff, c: &str) {
    s.ok(&["cp", probe().to_str().unwrap(), &format!("{c}:/bin/probe")]);
    exec_as(s, c, "0", "cp /bin/probe /tmp/suid && chmod 4755 /tmp/suid");
}

#[test]
fn docker_defaults_namespaces_and_limits() {
    let (_reg, s, image) = setup();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--pids-limit",
        "40",
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "16m",
        "--sysctl",
        "kernel.shmmax=123456789",
        &image,
        "sleep",
        "1000",
    ]);
    install_probe(&s, "box");
    let out = exec_as(
        &s,
        "box",
        "0",
        "echo pid1=$(cat /proc/1/comm); echo self=$$; \
         [ $(readlink /proc/self/ns/pid) = $(readlink /proc/1/ns/pid) ] && echo same-pidns; \
         [ $(readlink /proc/self/ns/mnt) = $(readlink /proc/1/ns/mnt) ] && echo same-mntns; \
         echo dev=$(ls /dev); grep CapEff /proc/self/status; \
         probe keyctl; probe userns; \
         echo nofile=$(ulimit -n):$(ulimit -Hn); \
         echo pids.max=$(cat /sys/fs/cgroup/container/pids.max); cat /proc/self/cgroup; \
         df -k /dev/shm | grep shm; echo shmmax=$(cat /proc/sys/kernel/shmmax); \
         grep ' /sys ' /proc/mounts; touch /tmp/f && chown 1000 /tmp/f && echo chown-ok",
    );
    assert!(out.contains("pid1=sleep\n"), "the process is PID 1: {out}");
    let self_pid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("self="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(
        self_pid < 20,
        "exec runs in the container's PID namespace: {out}"
    );
    assert!(out.contains("same-pidns\nsame-mntns\n"), "{out}");
    assert!(
        out.contains(
            "dev=core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero\n"
        ),
        "a minimal /dev (no disks): {out}"
    );
    // docker's default capability set.
    assert!(out.contains("CapEff:\t00000000a80425fb\n"), "{out}");
    assert!(out.contains("keyctl=Operation not permitted\n"), "{out}");
    assert!(out.contains("userns=Operation not permitted\n"), "{out}");
    assert!(out.contains("nofile=1024:2048\n"), "{out}");
    assert!(out.contains("pids.max=40\n0::/container\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.ends_with(" /dev/shm") && l.split_whitespace().nth(1) == Some("16384")),
        "--shm-size: {out}"
    );
    assert!(out.contains("shmmax=123456789\n"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("sysfs /sys sysfs ro,")),
        "/sys is read-only: {out}"
    );
    assert!(out.contains("chown-ok"), "root may chown: {out}");

    // Without no-new-privileges a setuid binary gains root; a non-root user
    // has no capabilities, so no port below 1024.
    let out = exec_as(&s, "box", "1000", "/tmp/suid euid; probe bind80");
    assert_eq!(out, "euid=0\nbind80=Permission denied\n");

    // The pids limit: forks fail at 40 tasks; then every other process is
    // killed from inside (PID 1 survives: it is the namespace's init).
    let out = s.run(&[
        "exec",
        "box",
        "sh",
        "-c",
        "i=0; while [ $i -lt 60 ]; do sleep 60 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; echo all-forked",
    ]);
    assert!(
        out.stderr.contains("fork") && !out.stdout.contains("all-forked"),
        "{out:?}"
    );
    let current: u32 = s
        .ok(&[
            "exec",
            "box",
            "cat",
            "/sys/fs/cgroup/container/pids.current",
        ])
        .stdout
        .trim()
        .parse()
        .unwrap();
    assert!((30..=40).contains(&current), "pids.current {current}");
    s.ok(&["exec", "box", "kill", "-9", "-1"]);
    assert_eq!(
        s.ok(&["inspect", "--format", "{{.State.Status}}", "box"])
            .stdout,
        "running\n"
    );

    let v = s.ok(&["inspect", "box"]).json();
    let hc = &v[0]["HostConfig"];
    assert_eq!(hc["PidsLimit"], 40);
    assert_eq!(hc["ShmSize"], 16 << 20);
    assert_eq!(hc["Ulimits"][0]["Name"], "nofile");
    assert_eq!(hc["Sysctls"]["kernel.shmmax"], "123456789");
    assert_eq!(hc["Capabilities"].as_array().unwrap().len(), 14, "{hc}");
    s.ok(&["rm", "-f", "box"]);
}

#[test]
fn dropped_capabilities_and_no_new_privileges() {
    let (_reg, s, image) = setup();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "tight",
        "--read-only",
        "--tmpfs",
        "/tmp:exec,suid",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--security-opt",
        "no-new-privileges",
        &image,
        "sleep",
        "1000",
    ]);
    // The probe goes to the writable tmpfs (the root is read-only).
    s.ok(&["cp", probe().to_str().unwrap(), "tight:/tmp/probe"]);
    let out = exec_as(
        &s,
        "tight",
        "0",
        "cp /tmp/probe /tmp/suid && chmod 4755 /tmp/suid; grep CapEff /proc/self/status; \
         touch /tmp/f; chown 1000 /tmp/f 2>&1; touch /x 2>&1; true",
    );
    assert!(out.contains("CapEff:\t0000000000000400\n"), "{out}");
    assert!(
        out.contains("chown: /tmp/f: Operation not permitted"),
        "cap-drop ALL: {out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    // A non-root user gets the added capability (ambient), and a setuid
    // binary no root.
    let out = exec_as(
        &s,
        "tight",
        "1000",
        "/tmp/probe bind80; /tmp/suid euid; grep CapAmb /proc/self/status",
    );
    assert_eq!(
        out, "bind80=ok\neuid=1000\nCapAmb:\t0000000000000400\n",
        "NET_BIND_SERVICE for user 1000, no-new-privileges"
    );
    let v = s.ok(&["inspect", "tight"]).json();
    assert_eq!(
        v[0]["HostConfig"]["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    s.ok(&["rm", "-f", "tight"]);
}

#[test]
fn privileged_and_custom_profiles() {
    let (_reg, s, image) = setup();
    // --privileged: every capability, the VM's disks, mount allowed.
    let out = s.ok(&[
        "run",
        "--rm",
        "--privileged",
        &image,
        "sh",
        "-c",
        "grep CapEff /proc/self/status; ls /dev/vda && mkdir /tmp/m && mount -t tmpfs none /tmp/m && echo mounted",
    ]);
    assert!(
        out.stdout.contains("CapEff:\t000001ffffffffff\n"),
        "{out:?}"
    );
    assert!(out.stdout.contains("/dev/vda\nmounted\n"), "{out:?}");

    // A profile of one's own (docker's format): mkdir denied with EACCES,
    // everything else allowed.
    let dir = common::tempdir();
    let profile = dir.path().join("nomkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = s.ok(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        &image,
        "sh",
        "-c",
        "mkdir /tmp/d 2>&1; touch /tmp/t && echo touched",
    ]);
    assert!(
        out.stdout.contains("Permission denied") && out.stdout.contains("touched"),
        "{out:?}"
    );
    // seccomp=unconfined lifts only the filter: capabilities stay docker's.
    let out = s.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        &image,
        "sh",
        "-c",
        "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status",
    ]);
    assert_eq!(
        out.stdout, "CapEff:\t00000000a80425fb\nSeccomp:\t0\n",
        "{out:?}"
    );
}

#[test]
fn bad_security_flags_fail_before_boot() {
    let s = Skiff::for_vms();
    let reg = Registry::start(RegistryOpts::default());
    let image = reg.push_vm_fixture("users", "test/vm");
    s.ok(&["pull", "-q", &image]);
    let dir = common::tempdir();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [",
    )
    .unwrap();
    let bad_opt = format!("seccomp={}", bad.display());
    let bad_path = bad.display().to_string();
    for (args, msg) in [
        (vec!["--cap-add", "CAP_FOO"], "unknown capability"),
        (vec!["--cap-drop", "bogus"], "unknown capability"),
        (vec!["--security-opt", &bad_opt], bad_path.as_str()),
        (
            vec!["--security-opt", "seccomp=/no/such.json"],
            "/no/such.json",
        ),
        (
            vec!["--security-opt", "bogus"],
            "invalid --security-opt \"bogus\"",
        ),
        (
            vec!["--ulimit", "nofile=9:3"],
            "soft limit is above the hard one",
        ),
        (vec!["--ulimit", "files=3"], "unknown limit \"files\""),
        (vec!["--sysctl", "novalue"], "invalid --sysctl \"novalue\""),
    ] {
        common::vm::assert_refused(&s, &image, &args, msg);
    }
    assert_eq!(s.ok(&["ps", "-aq"]).stdout, "", "nothing was created");
}
