//! The compiled programs: their decisions, read with a small classic BPF
//! interpreter for both architectures, and the same programs installed on
//! this host's kernel in forked children.

use super::arch::{Abi, Arch, X32_SYSCALL_BIT};
use super::compile::{
    compile_for, SockFilter, Target, BPF_MAXINSNS, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS,
    RET_KILL_THREAD, RET_LOG, RET_TRACE, RET_TRAP,
};
use super::*;
use crate::security::capabilities::{parse_capability, CapSet};

// ---------------------------------------------------------------- interpreter

/// What a program sees: `struct seccomp_data` without the instruction pointer.
#[derive(Clone, Copy)]
struct Call {
    arch: u32,
    nr: u32,
    args: [u64; 6],
}

/// Runs `program` on `call` as the kernel would (the opcodes the compiler uses).
fn run(program: &SeccompProgram, call: Call) -> u32 {
    run_counting(program, call).0
}

/// The return value, and how many instructions ran.
fn run_counting(program: &SeccompProgram, call: Call) -> (u32, usize) {
    let code = program.instructions();
    let (mut pc, mut a, mut ran) = (0usize, 0u32, 0usize);
    loop {
        let i = code[pc];
        pc += 1;
        ran += 1;
        let jump = |holds: bool| if holds { i.jt } else { i.jf } as usize;
        match i.code {
            0x20 => {
                a = match i.k {
                    0 => call.nr,
                    4 => call.arch,
                    k @ 16..=60 if k % 4 == 0 => {
                        let arg = call.args[(k as usize - 16) / 8];
                        if k % 8 == 0 {
                            arg as u32
                        } else {
                            (arg >> 32) as u32
                        }
                    }
                    k => panic!("load at {k}"),
                }
            }
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc += jump(a == i.k),
            0x25 => pc += jump(a > i.k),
            0x35 => pc += jump(a >= i.k),
            0x06 => return (i.k, ran),
            other => panic!("opcode {other:#x}"),
        }
    }
}

const X86_64: u32 = 0xC000_003E;
const I386: u32 = 0x4000_0003;
const AARCH64: u32 = 0xC000_00B7;
const ARM: u32 = 0x4000_0028;
const EPERM: u32 = RET_ERRNO | 1;
const ENOSYS: u32 = RET_ERRNO | 38;

fn cap(name: &str) -> u32 {
    parse_capability(name).unwrap()
}

fn with(caps: &[&str]) -> CapSet {
    let mut set = CapSet::docker_default();
    for c in caps {
        set.insert(cap(c));
    }
    set
}

fn target(arch: Arch) -> Target {
    Target { arch, kernel: None }
}

fn program(profile: &Profile, caps: CapSet, arch: Arch) -> SeccompProgram {
    compile_for(profile, caps, &target(arch)).unwrap()
}

/// The decision for syscall `name` of `abi`, with `args`.
fn decide(p: &SeccompProgram, abi: Abi, name: &str, args: [u64; 6]) -> u32 {
    let nr = *abi
        .syscall_table()
        .get(name)
        .unwrap_or_else(|| panic!("{name} on {abi:?}"));
    run(
        p,
        Call {
            arch: abi.audit_arch(),
            nr,
            args,
        },
    )
}

fn no_args() -> [u64; 6] {
    [0; 6]
}

fn arg0(v: u64) -> [u64; 6] {
    [v, 0, 0, 0, 0, 0]
}

fn profile(json: &str) -> Profile {
    Profile::from_json(json).unwrap()
}

// ---------------------------------------------------------------- decisions

#[test]
fn default_profile_on_x86_64() {
    let p = program(
        &Profile::docker_default(),
        CapSet::docker_default(),
        Arch::X86_64,
    );
    let d = |name, args| decide(&p, Abi::X86_64, name, args);
    for name in [
        "read",
        "getpid",
        "execve",
        "openat",
        "mmap",
        "futex",
        "rseq",
        "arch_prctl",
        "modify_ldt",
        "ptrace",
        "socketpair",
        "statx",
        "mseal",
    ] {
        assert_eq!(d(name, no_args()), RET_ALLOW, "{name}");
    }
    for name in [
        "keyctl",
        "add_key",
        "unshare",
        "mount",
        "setns",
        "bpf",
        "reboot",
        "init_module",
        "open_by_handle_at",
        "io_uring_setup",
        "kexec_load",
        "perf_event_open",
        "lsm_list_modules",
        "clock_settime",
        "vhangup",
        "iopl",
        "acct",
        "kcmp",
        "syslog",
    ] {
        assert_eq!(d(name, no_args()), EPERM, "{name}");
    }
    assert_eq!(d("clone3", no_args()), ENOSYS);
    // clone: no namespace flag without CAP_SYS_ADMIN.
    assert_eq!(d("clone", arg0(17)), RET_ALLOW, "fork's SIGCHLD");
    assert_eq!(
        d("clone", arg0(0x003D_0F00)),
        RET_ALLOW,
        "pthread_create's flags"
    );
    for flag in [
        0x0002_0000u64,
        0x0400_0000,
        0x0800_0000,
        0x1000_0000,
        0x2000_0000,
        0x4000_0000,
        0x0200_0000,
    ] {
        assert_eq!(d("clone", arg0(flag | 17)), EPERM, "{flag:#x}");
    }
    assert_eq!(
        d("clone", arg0(1 << 32 | 17)),
        RET_ALLOW,
        "the mask has no high half"
    );
    // personality: the five values.
    for persona in [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
        assert_eq!(d("personality", arg0(persona)), RET_ALLOW, "{persona:#x}");
    }
    for persona in [1, 0x40_0000, 0x1_ffff_ffff, 0xffff_fffe] {
        assert_eq!(d("personality", arg0(persona)), EPERM, "{persona:#x}");
    }
    // socket: not AF_ALG (38) nor AF_VSOCK (40).
    for family in [1, 2, 10, 16, 17, 37, 39, 41, 44, 1 << 40] {
        assert_eq!(d("socket", arg0(family)), RET_ALLOW, "{family}");
    }
    for family in [38, 40] {
        assert_eq!(d("socket", arg0(family)), EPERM, "{family}");
    }
    // Every name of the allow list this ABI has is allowed.
    let table = Abi::X86_64.syscall_table();
    let allowed = &Profile::docker_default().syscalls[0].names;
    let mut known = 0;
    for name in allowed.iter().filter(|n| table.contains_key(n.as_str())) {
        assert_eq!(d(name, no_args()), RET_ALLOW, "{name}");
        known += 1;
    }
    assert!(known >= 290, "{known}");
    // Numbers no syscall has get the default, up to the x32 bit.
    for nr in [336u32, 400, 999, 0x3fff_ffff] {
        let call = Call {
            arch: X86_64,
            nr,
            args: no_args(),
        };
        assert_eq!(run(&p, call), EPERM, "{nr}");
    }
}

#[test]
fn default_profile_with_capabilities() {
    let d = |caps: CapSet, name, args| {
        decide(
            &program(&Profile::docker_default(), caps, Arch::X86_64),
            Abi::X86_64,
            name,
            args,
        )
    };
    let admin = with(&["SYS_ADMIN"]);
    for name in [
        "unshare",
        "mount",
        "setns",
        "clone3",
        "bpf",
        "perf_event_open",
        "sethostname",
        "umount2",
        "fsopen",
        "lsm_get_self_attr",
    ] {
        assert_eq!(d(admin, name, no_args()), RET_ALLOW, "{name}");
    }
    assert_eq!(
        d(admin, "clone", arg0(0x1000_0000 | 17)),
        RET_ALLOW,
        "CLONE_NEWUSER"
    );
    assert_eq!(
        d(admin, "keyctl", no_args()),
        EPERM,
        "only what the group brings"
    );
    for (cap_name, syscall) in [
        ("DAC_READ_SEARCH", "open_by_handle_at"),
        ("SYS_BOOT", "reboot"),
        ("SYS_MODULE", "finit_module"),
        ("SYS_PACCT", "acct"),
        ("SYS_PTRACE", "kcmp"),
        ("SYS_RAWIO", "iopl"),
        ("SYS_TIME", "settimeofday"),
        ("SYS_TTY_CONFIG", "vhangup"),
        ("SYS_NICE", "mbind"),
        ("SYSLOG", "syslog"),
        ("BPF", "bpf"),
        ("PERFMON", "perf_event_open"),
    ] {
        assert_eq!(
            d(CapSet::docker_default(), syscall, no_args()),
            EPERM,
            "{syscall}"
        );
        assert_eq!(
            d(with(&[cap_name]), syscall, no_args()),
            RET_ALLOW,
            "{syscall}"
        );
    }
    // chroot comes with the default set; without CAP_SYS_CHROOT it goes.
    assert_eq!(d(CapSet::docker_default(), "chroot", no_args()), RET_ALLOW);
    let mut no_chroot = CapSet::docker_default();
    no_chroot.remove(cap("SYS_CHROOT"));
    assert_eq!(d(no_chroot, "chroot", no_args()), EPERM);
    // All capabilities: no conflict between the groups.
    let all = program(&Profile::docker_default(), CapSet::all(), Arch::X86_64);
    for name in ["ptrace", "syslog", "bpf", "clone3", "unshare"] {
        assert_eq!(
            decide(&all, Abi::X86_64, name, no_args()),
            RET_ALLOW,
            "{name}"
        );
    }
}

#[test]
fn min_kernel() {
    let old = Target {
        arch: Arch::X86_64,
        kernel: Some(KernelVersion { major: 4, minor: 4 }),
    };
    let new = Target {
        arch: Arch::X86_64,
        kernel: Some(KernelVersion { major: 4, minor: 8 }),
    };
    let p = |t: &Target, caps| compile_for(&Profile::docker_default(), caps, t).unwrap();
    let caps = CapSet::docker_default();
    assert_eq!(
        decide(&p(&old, caps), Abi::X86_64, "ptrace", no_args()),
        EPERM
    );
    assert_eq!(
        decide(&p(&new, caps), Abi::X86_64, "ptrace", no_args()),
        RET_ALLOW
    );
    let ptrace = with(&["SYS_PTRACE"]);
    assert_eq!(
        decide(&p(&old, ptrace), Abi::X86_64, "ptrace", no_args()),
        RET_ALLOW
    );
    // excludes.minKernel: left out from that kernel on.
    let pr = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "5.0"}}]}"#,
    );
    let old5 = Target {
        arch: Arch::X86_64,
        kernel: Some(KernelVersion {
            major: 4,
            minor: 19,
        }),
    };
    let new5 = Target {
        arch: Arch::X86_64,
        kernel: Some(KernelVersion { major: 5, minor: 0 }),
    };
    let p = |t: &Target| compile_for(&pr, CapSet::empty(), t).unwrap();
    assert_eq!(decide(&p(&old5), Abi::X86_64, "getpid", no_args()), EPERM);
    assert_eq!(
        decide(&p(&new5), Abi::X86_64, "getpid", no_args()),
        RET_ALLOW
    );
}

#[test]
fn the_other_x86_abis() {
    let p = program(
        &Profile::docker_default(),
        CapSet::docker_default(),
        Arch::X86_64,
    );
    // x32: its own numbers, the default for those unlisted.
    assert_eq!(decide(&p, Abi::X32, "getpid", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::X32, "rt_sigaction", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::X32, "keyctl", no_args()), EPERM);
    assert_eq!(decide(&p, Abi::X32, "clone3", no_args()), ENOSYS);
    assert_eq!(
        decide(&p, Abi::X32, "personality", arg0(0xffff_ffff)),
        RET_ALLOW
    );
    let x32 = |nr: u32| {
        run(
            &p,
            Call {
                arch: X86_64,
                nr: X32_SYSCALL_BIT | nr,
                args: no_args(),
            },
        )
    };
    assert_eq!(
        x32(13),
        EPERM,
        "x86_64's rt_sigaction number is no x32 call"
    );
    assert_eq!(x32(0x3fff_ffff), EPERM);
    assert_eq!(
        run(
            &p,
            Call {
                arch: X86_64,
                nr: u32::MAX,
                args: no_args()
            }
        ),
        EPERM
    );
    // i386: its own numbers and 32-bit arguments.
    assert_eq!(decide(&p, Abi::I386, "getpid", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::I386, "socketcall", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::I386, "_llseek", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::I386, "keyctl", no_args()), EPERM);
    assert_eq!(decide(&p, Abi::I386, "clone", arg0(0x1000_0011)), EPERM);
    assert_eq!(decide(&p, Abi::I386, "clone", arg0(0x11)), RET_ALLOW);
    assert_eq!(
        decide(&p, Abi::I386, "personality", arg0(0xffff_ffff)),
        RET_ALLOW
    );
    assert_eq!(decide(&p, Abi::I386, "socket", arg0(40)), EPERM);
    assert_eq!(decide(&p, Abi::I386, "socket", arg0(2)), RET_ALLOW);
    // Another architecture altogether: killed.
    for arch in [AARCH64, ARM, 0] {
        assert_eq!(
            run(
                &p,
                Call {
                    arch,
                    nr: 39,
                    args: no_args()
                }
            ),
            RET_KILL_PROCESS
        );
    }
    // A profile for x86_64 alone: x32 and i386 calls are a bad architecture,
    // even under a default of "allow".
    let only = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    let p = program(&only, CapSet::empty(), Arch::X86_64);
    assert_eq!(decide(&p, Abi::X86_64, "getpid", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::X86_64, "mkdir", no_args()), EPERM);
    assert_eq!(decide(&p, Abi::X32, "getpid", no_args()), RET_KILL_PROCESS);
    assert_eq!(decide(&p, Abi::I386, "getpid", no_args()), RET_KILL_PROCESS);
    // No architectures at all: the native one only.
    let none = profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#);
    let p = program(&none, CapSet::empty(), Arch::X86_64);
    assert_eq!(p.instructions().len(), 8, "{:?}", p.instructions());
    assert_eq!(decide(&p, Abi::X86_64, "getpid", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::X32, "getpid", no_args()), RET_KILL_PROCESS);
}

#[test]
fn default_profile_on_aarch64() {
    let p = program(
        &Profile::docker_default(),
        CapSet::docker_default(),
        Arch::Aarch64,
    );
    let d = |name, args| decide(&p, Abi::Aarch64, name, args);
    for name in [
        "getpid",
        "newfstatat",
        "openat",
        "fstat",
        "ppoll",
        "sync_file_range",
    ] {
        assert_eq!(d(name, no_args()), RET_ALLOW, "{name}");
    }
    assert_eq!(d("clone", arg0(17)), RET_ALLOW);
    assert_eq!(d("keyctl", no_args()), EPERM);
    assert_eq!(d("clone3", no_args()), ENOSYS);
    assert_eq!(d("clone", arg0(0x1000_0011)), EPERM);
    assert_eq!(d("personality", arg0(0xffff_ffff)), RET_ALLOW);
    // The 32-bit-only time64 numbers are no arm64 calls: the default, as docker's.
    assert_eq!(
        run(
            &p,
            Call {
                arch: AARCH64,
                nr: 403,
                args: no_args()
            }
        ),
        EPERM
    );
    // arm: its numbers, its private calls.
    assert_eq!(decide(&p, Abi::Arm, "getpid", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::Arm, "set_tls", no_args()), RET_ALLOW);
    assert_eq!(decide(&p, Abi::Arm, "cacheflush", no_args()), RET_ALLOW);
    assert_eq!(
        decide(&p, Abi::Arm, "arm_fadvise64_64", no_args()),
        RET_ALLOW
    );
    assert_eq!(
        decide(&p, Abi::Arm, "clock_gettime64", no_args()),
        RET_ALLOW
    );
    assert_eq!(decide(&p, Abi::Arm, "keyctl", no_args()), EPERM);
    assert_eq!(decide(&p, Abi::Arm, "usr26", no_args()), EPERM);
    assert_eq!(
        run(
            &p,
            Call {
                arch: X86_64,
                nr: 39,
                args: no_args()
            }
        ),
        RET_KILL_PROCESS
    );
    assert_eq!(
        run(
            &p,
            Call {
                arch: I386,
                nr: 20,
                args: no_args()
            }
        ),
        RET_KILL_PROCESS
    );
}

#[test]
fn every_action() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 95, "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["close"], "action": "SCMP_ACT_KILL"},
            {"names": ["stat"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["fstat"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["lstat"], "action": "SCMP_ACT_TRAP"},
            {"names": ["poll"], "action": "SCMP_ACT_LOG"},
            {"names": ["lseek"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["mmap"], "action": "SCMP_ACT_TRACE"},
            {"names": ["no_such_call", "brk"], "action": "SCMP_ACT_ALLOW"}
        ]}"#,
    );
    let p = program(&p, CapSet::empty(), Arch::X86_64);
    let d = |name| decide(&p, Abi::X86_64, name, no_args());
    assert_eq!(d("read"), RET_ALLOW);
    assert_eq!(d("write"), RET_ERRNO | 1);
    assert_eq!(d("open"), RET_ERRNO | 13);
    assert_eq!(d("close"), RET_KILL_THREAD);
    assert_eq!(d("stat"), RET_KILL_THREAD);
    assert_eq!(d("fstat"), RET_KILL_PROCESS);
    assert_eq!(d("lstat"), RET_TRAP);
    assert_eq!(d("poll"), RET_LOG);
    assert_eq!(d("lseek"), RET_TRACE | 7);
    assert_eq!(d("mmap"), RET_TRACE | 1);
    assert_eq!(d("brk"), RET_ALLOW, "the unknown name beside it is skipped");
    assert_eq!(d("getpid"), RET_ERRNO | 95);
}

#[test]
fn which_rule_decides() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 10,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12,
             "args": [{"index": 2, "value": 3, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 4, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 3, "value": 5, "op": "SCMP_CMP_EQ"}]},
            {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 20,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 21},
            {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}
        ]}"#,
    );
    let p = program(&p, CapSet::empty(), Arch::X86_64);
    let d = |name, args| decide(&p, Abi::X86_64, name, args);
    // Conditional rules: the first whose conditions all hold.
    assert_eq!(d("getpid", [1, 2, 0, 0, 0, 0]), RET_ERRNO | 10);
    assert_eq!(d("getpid", [0, 2, 0, 0, 0, 0]), RET_ALLOW);
    // Two conditions on argument 2: either one.
    assert_eq!(d("getpid", [0, 0, 3, 0, 0, 0]), RET_ERRNO | 12);
    assert_eq!(d("getpid", [0, 0, 4, 0, 0, 0]), RET_ERRNO | 12);
    assert_eq!(d("getpid", [0, 0, 5, 0, 0, 0]), RET_ALLOW);
    // A rule with the default action is left out: no effect, whatever its place.
    assert_eq!(d("getpid", [0, 0, 3, 5, 0, 0]), RET_ERRNO | 12);
    // An unconditional rule overrides the conditional ones; the first such rule wins.
    assert_eq!(d("gettid", arg0(1)), RET_ERRNO | 21);
    assert_eq!(d("gettid", no_args()), RET_ERRNO | 21);
    // All conditions of one rule.
    assert_eq!(d("getuid", [1, 1, 0, 0, 0, 0]), RET_ERRNO | 30);
    assert_eq!(d("getuid", [1, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(d("getuid", [0, 1, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn includes_and_excludes() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["getuid"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_CHOWN", "NET_ADMIN"]}},
            {"names": ["getgid"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN", "NET_ADMIN"]}}
        ]}"#,
    );
    let d = |caps: CapSet, name| {
        decide(
            &program(&p, caps, Arch::X86_64),
            Abi::X86_64,
            name,
            no_args(),
        )
    };
    let chown = CapSet::from_bits(1);
    let both = CapSet::from_bits(1 | 1 << 12);
    assert_eq!(d(CapSet::empty(), "getpid"), RET_ALLOW);
    assert_eq!(d(CapSet::empty(), "gettid"), EPERM);
    assert_eq!(d(chown, "getuid"), EPERM, "includes: all of them");
    assert_eq!(d(both, "getuid"), RET_ALLOW);
    assert_eq!(d(CapSet::empty(), "getgid"), RET_ALLOW);
    assert_eq!(d(chown, "getgid"), EPERM, "excludes: any of them");
    let arm = program(&p, CapSet::empty(), Arch::Aarch64);
    assert_eq!(decide(&arm, Abi::Aarch64, "getpid", no_args()), EPERM);
    assert_eq!(decide(&arm, Abi::Aarch64, "gettid", no_args()), RET_ALLOW);
}

#[test]
fn the_longest_rule() {
    // Six conditions of six instructions each, the most a rule's code holds:
    // its jumps still land.
    let args: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"index": {i}, "value": 64424509680, "valueTwo": 12884901936, "op": "SCMP_CMP_MASKED_EQ"}}"#))
        .collect();
    let p = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "syscalls": [
            {{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77, "args": [{}]}}]}}"#,
        args.join(",")
    ));
    let p = program(&p, CapSet::empty(), Arch::X86_64);
    let all = [0x3_0000_0030u64; 6];
    assert_eq!(decide(&p, Abi::X86_64, "getpid", all), RET_ERRNO | 77);
    for i in 0..6 {
        for off in [0x1_0000_0000, 0x10] {
            let mut args = all;
            args[i] ^= off;
            assert_eq!(
                decide(&p, Abi::X86_64, "getpid", args),
                RET_ALLOW,
                "{i} {off:#x}"
            );
        }
    }
    // On i386 the high half is zero: the mask's high half never matches 3.
    assert_eq!(decide(&p, Abi::I386, "getpid", all), RET_ALLOW);
}

#[test]
fn comparisons_on_both_halves() {
    // Values around each half's boundaries, compared with Op::holds.
    let values = [
        0u64,
        1,
        4,
        5,
        6,
        0x30,
        0xF0,
        0xFFFF_FFFF,
        1 << 32,
        0x1_0000_0004,
        0x1_0000_0005,
        0x1_0000_0006,
        0x1_FFFF_FFFF,
        0x2_0000_0000,
        0x2_0000_0005,
        0x3_0000_0030,
        0x13_0000_0130,
        0xFFFF_FFFF_0000_0005,
        u64::MAX,
    ];
    let ops = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::MaskedEq];
    for op in ops {
        for (value, value_two) in [
            (0x1_0000_0005u64, 0u64),
            (5, 0),
            (0xF_0000_00F0, 0x3_0000_0030),
            (0xF0, 0x30),
            (0, 0),
            (u64::MAX, 7),
        ] {
            let pr = Profile {
                default_action: Action::Allow,
                default_errno_ret: None,
                architectures: vec!["SCMP_ARCH_X86".into()],
                arch_map: Vec::new(),
                syscalls: vec![Syscall {
                    names: vec!["getpid".into()],
                    action: Action::Errno,
                    errno_ret: Some(77),
                    args: vec![Arg {
                        index: 1,
                        value,
                        value_two,
                        op,
                    }],
                    ..Syscall::default()
                }],
            };
            let p = program(&pr, CapSet::empty(), Arch::X86_64);
            for x in values {
                let holds = op.holds(x, value, value_two);
                let want = if holds { RET_ERRNO | 77 } else { RET_ALLOW };
                let args = [0, x, 0, 0, 0, 0];
                assert_eq!(
                    decide(&p, Abi::X86_64, "getpid", args),
                    want,
                    "{op:?} {value:#x} {value_two:#x}: {x:#x}"
                );
                // i386's arguments are 32 bits.
                let x = x & 0xFFFF_FFFF;
                let holds = op.holds(x, value, value_two);
                let want = if holds { RET_ERRNO | 77 } else { RET_ALLOW };
                let args = [0, x, 0, 0, 0, 0];
                assert_eq!(
                    decide(&p, Abi::I386, "getpid", args),
                    want,
                    "i386 {op:?} {value:#x} {value_two:#x}: {x:#x}"
                );
            }
        }
    }
}

#[test]
fn program_sizes() {
    // The default profile's programs, x86_64 (x86_64 + x32 + i386 sections)
    // and aarch64 (aarch64 + arm), with no, docker's and all capabilities:
    // 702, 694, 526 and 500, 496, 332 instructions (--nocapture prints them),
    // of which one native syscall runs at most 17.
    for arch in [Arch::X86_64, Arch::Aarch64] {
        for (name, caps) in [
            ("no caps", CapSet::empty()),
            ("docker's", CapSet::docker_default()),
            ("all", CapSet::all()),
        ] {
            let p = program(&Profile::docker_default(), caps, arch);
            // The most instructions one native syscall runs through.
            let abi = arch.abis()[0].0;
            let slowest = abi
                .syscall_table()
                .values()
                .map(|&nr| {
                    run_counting(
                        &p,
                        Call {
                            arch: abi.audit_arch(),
                            nr,
                            args: no_args(),
                        },
                    )
                    .1
                })
                .max()
                .unwrap_or(0);
            let len = p.instructions().len();
            println!(
                "default profile, {arch:?}, {name}: {len} instructions, at most {slowest} run"
            );
            assert!(slowest < 25, "{slowest}");
            assert!((200..1000).contains(&len), "{len}");
        }
    }
    // Past the kernel's limit: a clear error.
    let rules = (0..1000)
        .map(|i| format!(r#"{{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [{{"index": 0, "value": {i}, "op": "SCMP_CMP_EQ"}}]}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let big = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{rules}]}}"#
    ));
    let err = compile_for(&big, CapSet::empty(), &target(Arch::X86_64)).unwrap_err();
    assert!(
        matches!(err, SeccompError::TooLong { len } if len > BPF_MAXINSNS),
        "{err}"
    );
    assert!(
        err.to_string().contains("the kernel takes at most 4096"),
        "{err}"
    );
    // Long searches over many ranges need `ja`: still right.
    let names: Vec<String> = Abi::X86_64
        .syscall_table()
        .iter()
        .filter(|(_, &nr)| nr % 2 == 0)
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    let sparse = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{{"names": [{}], "action": "SCMP_ACT_ALLOW"}}]}}"#,
        names.join(",")
    ));
    let p = program(&sparse, CapSet::empty(), Arch::X86_64);
    assert!(p.instructions().iter().any(|i| i.code == 0x05), "a ja");
    for (name, nr) in Abi::X86_64.syscall_table() {
        let want = if nr % 2 == 0 { RET_ALLOW } else { EPERM };
        assert_eq!(decide(&p, Abi::X86_64, name, no_args()), want, "{name}");
    }
}

#[test]
fn bytes() {
    let p = compile(&Profile::docker_default(), CapSet::docker_default()).unwrap();
    let bytes = p.to_bytes();
    assert_eq!(bytes.len(), p.instructions().len() * 8);
    // Laid out as the kernel's struct sock_filter: code, jt, jf, k.
    use std::mem::{offset_of, size_of};
    assert_eq!(size_of::<libc::sock_filter>(), 8);
    assert_eq!(size_of::<SockFilter>(), 8);
    assert_eq!(
        [
            offset_of!(libc::sock_filter, code),
            offset_of!(libc::sock_filter, jt),
            offset_of!(libc::sock_filter, jf),
            offset_of!(libc::sock_filter, k),
        ],
        [0, 2, 3, 4]
    );
    for (i, c) in p.instructions().iter().zip(bytes.chunks_exact(8)) {
        assert_eq!(c[..2], i.code.to_ne_bytes());
        assert_eq!([c[2], c[3]], [i.jt, i.jf]);
        assert_eq!(c[4..], i.k.to_ne_bytes());
    }
}

// ---------------------------------------------------------------- the kernel

/// How a child's call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It returned, not an error.
    Ok,
    /// It failed with this errno.
    Err(i32),
    /// The child was killed by this signal.
    Killed(i32),
}

/// Calls `call(arg)` in a forked child, under `program` if given, and says
/// how it ended. The child does nothing but async-signal-safe calls: no
/// allocation, no locks, then `_exit`.
fn in_child(program: Option<&[u8]>, call: fn(u64) -> i64, arg: u64) -> Outcome {
    let fprog = program.map(|bytes| libc::sock_fprog {
        len: (bytes.len() / 8) as u16,
        filter: bytes.as_ptr() as *mut libc::sock_filter,
    });
    // SAFETY: the child only makes system calls and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            if let Some(fprog) = &fprog {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                    libc::_exit(250);
                }
                let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
                if libc::prctl(libc::PR_SET_SECCOMP, mode, fprog as *const libc::sock_fprog) != 0 {
                    libc::_exit(251);
                }
            }
            let ret = call(arg);
            libc::_exit(if ret >= 0 {
                0
            } else {
                (-ret).clamp(1, 249) as i32
            });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR), "waitpid: {e}");
    }
    if libc::WIFSIGNALED(status) {
        return Outcome::Killed(libc::WTERMSIG(status));
    }
    match libc::WEXITSTATUS(status) {
        0 => Outcome::Ok,
        250 => panic!("PR_SET_NO_NEW_PRIVS failed in the child"),
        251 => panic!("PR_SET_SECCOMP refused the program"),
        errno => Outcome::Err(errno),
    }
}

/// A raw syscall's result: the value, or minus the errno.
fn result(ret: i64) -> i64 {
    if ret == -1 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        ret
    }
}

fn getpid(_: u64) -> i64 {
    result(unsafe { libc::syscall(libc::SYS_getpid) })
}

/// getpid with `x` in its argument 1 (the kernel ignores it; the filter sees it).
fn getpid_with(x: u64) -> i64 {
    result(unsafe { libc::syscall(libc::SYS_getpid, 0u64, x, 0u64, 0u64, 0u64, 0u64) })
}

fn keyctl(_: u64) -> i64 {
    // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, not created.
    result(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) })
}

fn unshare_user(_: u64) -> i64 {
    result(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) })
}

fn clone3_null(_: u64) -> i64 {
    result(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) })
}

fn personality(persona: u64) -> i64 {
    result(unsafe { libc::syscall(libc::SYS_personality, persona) })
}

fn socket(family: u64) -> i64 {
    result(unsafe { libc::syscall(libc::SYS_socket, family, libc::SOCK_STREAM, 0) })
}

/// clone with flags `flags | SIGCHLD` and no new stack (like fork); the
/// grandchild, if any, exits at once.
fn clone_flags(flags: u64) -> i64 {
    let ret = result(unsafe {
        libc::syscall(libc::SYS_clone, flags | 17, 0usize, 0usize, 0usize, 0usize)
    });
    if ret == 0 {
        unsafe { libc::_exit(0) };
    }
    ret
}

fn mkdirat(_: u64) -> i64 {
    let path = c"/nonexistent-skiff-seccomp-test/dir";
    result(unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.as_ptr(), 0o700) })
}

#[cfg(target_arch = "x86_64")]
fn mkdir(_: u64) -> i64 {
    let path = c"/nonexistent-skiff-seccomp-test/dir";
    result(unsafe { libc::syscall(libc::SYS_mkdir, path.as_ptr(), 0o700) })
}

fn bytes_of(profile: &Profile, caps: CapSet) -> Vec<u8> {
    compile(profile, caps).unwrap().to_bytes()
}

#[test]
fn kernel_runs_the_default_program() {
    let default = bytes_of(&Profile::docker_default(), CapSet::docker_default());
    let admin = bytes_of(&Profile::docker_default(), with(&["SYS_ADMIN"]));
    let run = |p: &[u8], call: fn(u64) -> i64, arg| in_child(Some(p), call, arg);

    assert_eq!(in_child(None, getpid, 0), Outcome::Ok);
    assert_eq!(run(&default, getpid, 0), Outcome::Ok);
    assert_eq!(run(&default, keyctl, 0), Outcome::Err(libc::EPERM));
    assert_eq!(run(&default, clone3_null, 0), Outcome::Err(libc::ENOSYS));
    assert_eq!(run(&default, personality, 0xffff_ffff), Outcome::Ok);
    assert_eq!(
        run(&default, personality, 0x40_0000),
        Outcome::Err(libc::EPERM)
    );
    assert_eq!(run(&default, socket, libc::AF_UNIX as u64), Outcome::Ok);
    assert_eq!(
        run(&default, socket, libc::AF_VSOCK as u64),
        Outcome::Err(libc::EPERM)
    );
    assert_eq!(
        run(&default, socket, libc::AF_ALG as u64),
        Outcome::Err(libc::EPERM)
    );
    assert_eq!(run(&default, clone_flags, 0), Outcome::Ok);
    assert_eq!(
        run(&default, clone_flags, libc::CLONE_NEWUTS as u64),
        Outcome::Err(libc::EPERM)
    );

    // unshare(CLONE_NEWUSER): refused without CAP_SYS_ADMIN, left to the kernel with it.
    let unfiltered = in_child(None, unshare_user, 0);
    assert_eq!(run(&default, unshare_user, 0), Outcome::Err(libc::EPERM));
    assert_eq!(run(&admin, unshare_user, 0), unfiltered);
    // The filter's refusal told from the kernel's: another errno for the default.
    let mut marked = Profile::docker_default();
    marked.default_errno_ret = Some(200);
    let marked_default = bytes_of(&marked, CapSet::docker_default());
    let marked_admin = bytes_of(&marked, with(&["SYS_ADMIN"]));
    assert_eq!(run(&marked_default, unshare_user, 0), Outcome::Err(200));
    assert_ne!(run(&marked_admin, unshare_user, 0), Outcome::Err(200));
    assert_eq!(run(&marked_admin, unshare_user, 0), unfiltered);
    // clone3 reaches the kernel with CAP_SYS_ADMIN (which rejects a null argument).
    assert_eq!(run(&admin, clone3_null, 0), in_child(None, clone3_null, 0));
    assert_ne!(run(&admin, clone3_null, 0), Outcome::Err(libc::ENOSYS));
}

#[test]
fn kernel_runs_a_custom_profile() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]}"#,
    );
    let bytes = bytes_of(&p, CapSet::empty());
    assert_eq!(in_child(None, mkdirat, 0), Outcome::Err(libc::ENOENT));
    assert_eq!(
        in_child(Some(&bytes), mkdirat, 0),
        Outcome::Err(libc::EACCES)
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(in_child(Some(&bytes), mkdir, 0), Outcome::Err(libc::EACCES));
    assert_eq!(in_child(Some(&bytes), getpid, 0), Outcome::Ok);
    assert_eq!(in_child(Some(&bytes), keyctl, 0), in_child(None, keyctl, 0));
    fn getppid(_: u64) -> i64 {
        result(unsafe { libc::syscall(libc::SYS_getppid) })
    }
    assert_eq!(
        in_child(Some(&bytes), getppid, 0),
        Outcome::Killed(libc::SIGSYS)
    );
}

#[test]
fn kernel_compares_arguments_as_the_compiler_means() {
    // MASKED_EQ, and every comparison across the 32-bit halves, on the real
    // kernel: getpid's argument 1 is seen by the filter, ignored by getpid.
    let cases: [(Op, u64, u64); 8] = [
        (Op::MaskedEq, 0xF0, 0x30),
        (Op::MaskedEq, 0xF_0000_00F0, 0x3_0000_0030),
        (Op::Eq, 0x1_0000_0005, 0),
        (Op::Ne, 0x1_0000_0005, 0),
        (Op::Gt, 0x1_0000_0005, 0),
        (Op::Ge, 0x1_0000_0005, 0),
        (Op::Lt, 0x1_0000_0005, 0),
        (Op::Le, 0x1_0000_0005, 0),
    ];
    let values = [
        0u64,
        5,
        6,
        0x35,
        0xFFFF_FFFF,
        0x1_0000_0004,
        0x1_0000_0005,
        0x1_0000_0006,
        0x2_0000_0004,
        0x3_0000_0030,
        0x3_0000_0130,
        0x13_0000_0130,
        u64::MAX,
    ];
    for (op, value, value_two) in cases {
        let pr = Profile {
            default_action: Action::Allow,
            default_errno_ret: None,
            architectures: Vec::new(),
            arch_map: Vec::new(),
            syscalls: vec![Syscall {
                names: vec!["getpid".into()],
                action: Action::Errno,
                errno_ret: Some(77),
                args: vec![Arg {
                    index: 1,
                    value,
                    value_two,
                    op,
                }],
                ..Syscall::default()
            }],
        };
        let bytes = bytes_of(&pr, CapSet::empty());
        for x in values {
            let want = if op.holds(x, value, value_two) {
                Outcome::Err(77)
            } else {
                Outcome::Ok
            };
            assert_eq!(
                in_child(Some(&bytes), getpid_with, x),
                want,
                "{op:?} {value:#x} {value_two:#x}: {x:#x}"
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    /// A syscall of the x32 ABI: `nr` with bit 30.
    fn x32(nr: u64) -> i64 {
        result(unsafe { libc::syscall(libc::c_long::from(X32_SYSCALL_BIT) | nr as libc::c_long) })
    }

    /// An i386 syscall by `int 0x80`, without arguments.
    fn int80(nr: u64) -> i64 {
        let ret: i64;
        // SAFETY: `int 0x80` with only eax set; the registers it may change are listed.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inlateout("rax") nr as i64 => ret,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack),
            );
        }
        i64::from(ret as i32)
    }

    #[test]
    fn kernel_x32_calls() {
        let default = bytes_of(&Profile::docker_default(), CapSet::docker_default());
        // keyctl is refused by the filter, whether or not this kernel has x32.
        assert_eq!(
            in_child(Some(&default), x32, 250),
            Outcome::Err(libc::EPERM)
        );
        // getpid is let through: the kernel runs it, or says ENOSYS without x32.
        let unfiltered = in_child(None, x32, 39);
        assert!(
            matches!(unfiltered, Outcome::Ok | Outcome::Err(libc::ENOSYS)),
            "{unfiltered:?}"
        );
        assert_eq!(in_child(Some(&default), x32, 39), unfiltered);
        // A profile without x32: a bad architecture, the process killed.
        let only = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}"#,
        );
        let only = bytes_of(&only, CapSet::empty());
        assert_eq!(in_child(Some(&only), getpid, 0), Outcome::Ok);
        assert_eq!(
            in_child(Some(&only), x32, 39),
            Outcome::Killed(libc::SIGSYS)
        );
    }

    #[test]
    fn kernel_i386_calls() {
        let unfiltered = in_child(None, int80, 20);
        if unfiltered != Outcome::Ok {
            eprintln!("no i386 emulation here ({unfiltered:?}): i386 checks skipped");
            return;
        }
        let default = bytes_of(&Profile::docker_default(), CapSet::docker_default());
        assert_eq!(in_child(Some(&default), int80, 20), Outcome::Ok, "getpid");
        assert_eq!(
            in_child(Some(&default), int80, 288),
            Outcome::Err(libc::EPERM),
            "keyctl"
        );
        assert_eq!(
            in_child(Some(&default), int80, 435),
            Outcome::Err(libc::ENOSYS),
            "clone3"
        );
        let only = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}"#,
        );
        let only = bytes_of(&only, CapSet::empty());
        assert_eq!(
            in_child(Some(&only), int80, 20),
            Outcome::Killed(libc::SIGSYS)
        );
    }
}
