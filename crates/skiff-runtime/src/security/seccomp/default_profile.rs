//! Docker's default seccomp profile (moby `profiles/seccomp/default.json`, as
//! of its 2026 revision: AF_ALG and AF_VSOCK sockets refused, lsm_* behind
//! CAP_SYS_ADMIN, io_uring refused), written as tables: the allow list, the
//! argument conditions, and the groups that an architecture or a capability
//! brings in. Denied calls fail with EPERM.

use super::profile::{Action, ArchMap, Arg, Filter, KernelVersion, Op, Profile, Syscall};

/// Allowed whatever the capabilities.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed from kernel 4.8 on, whose ptrace no longer lets a tracee slip past seccomp.
const ALLOWED_FROM_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// `socket(family, …)` is allowed for families below 38, 39, and above 40:
/// AF_ALG (38) and AF_VSOCK (40) are refused.
const SOCKET_FAMILIES: [(Op, u64); 3] = [(Op::Lt, 38), (Op::Eq, 39), (Op::Gt, 40)];

/// `personality(persona)` is allowed for PER_LINUX, UNAME26,
/// ADDR_NO_RANDOMIZE, both of those, and 0xffffffff (a query).
const PERSONAS: [u64; 5] = [0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The clone flags that make namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET): without CAP_SYS_ADMIN, clone must set none.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Allowed on the native architectures named (Go names), with every ABI they have.
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// Allowed when the process has the capability. (Docker's profile has no
/// CAP_SYS_RESOURCE group; clone and clone3 without CAP_SYS_ADMIN come after.)
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The sub-architectures docker's `archMap` gives each native one.
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
    (
        "SCMP_ARCH_MIPS64",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    ),
    (
        "SCMP_ARCH_MIPS64N32",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    ),
    (
        "SCMP_ARCH_MIPSEL64",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    ),
    (
        "SCMP_ARCH_MIPSEL64N32",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    ),
    ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
    ("SCMP_ARCH_RISCV64", &[]),
    ("SCMP_ARCH_LOONGARCH64", &[]),
];

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn allow(list: &[&str]) -> Syscall {
    Syscall {
        names: names(list),
        action: Action::Allow,
        ..Syscall::default()
    }
}

fn allow_if(name: &str, op: Op, value: u64, value_two: u64) -> Syscall {
    Syscall {
        args: vec![Arg {
            index: 0,
            value,
            value_two,
            op,
        }],
        ..allow(&[name])
    }
}

impl Profile {
    /// Docker's default profile: EPERM for everything not on its lists.
    pub fn docker_default() -> Profile {
        let mut rules = vec![
            allow(ALLOWED),
            Syscall {
                includes: Filter {
                    min_kernel: Some(KernelVersion { major: 4, minor: 8 }),
                    ..Filter::default()
                },
                ..allow(ALLOWED_FROM_4_8)
            },
        ];
        rules.extend(SOCKET_FAMILIES.map(|(op, family)| allow_if("socket", op, family, 0)));
        rules.extend(PERSONAS.map(|persona| allow_if("personality", Op::Eq, persona, 0)));
        rules.extend(BY_ARCH.iter().map(|(arches, list)| Syscall {
            includes: Filter {
                arches: names(arches),
                ..Filter::default()
            },
            ..allow(list)
        }));
        let with_cap = |(cap, list): &(&str, &[&str])| Syscall {
            includes: Filter {
                caps: names(&[cap]),
                ..Filter::default()
            },
            ..allow(list)
        };
        let (first, rest) = BY_CAPABILITY.split_at(2);
        rules.extend(first.iter().map(with_cap));
        let without_sys_admin = |arches: &[&str]| Filter {
            caps: names(&["CAP_SYS_ADMIN"]),
            arches: names(arches),
            min_kernel: None,
        };
        rules.push(Syscall {
            excludes: without_sys_admin(&["s390", "s390x"]),
            ..allow_if("clone", Op::MaskedEq, CLONE_NAMESPACE_FLAGS, 0)
        });
        // s390 passes clone's flags second.
        let mut s390_clone = allow_if("clone", Op::MaskedEq, CLONE_NAMESPACE_FLAGS, 0);
        s390_clone.args[0].index = 1;
        s390_clone.includes.arches = names(&["s390", "s390x"]);
        s390_clone.excludes = without_sys_admin(&[]);
        rules.push(s390_clone);
        // Without CAP_SYS_ADMIN clone3's flags cannot be checked (they are in
        // memory): ENOSYS makes libcs fall back to clone.
        rules.push(Syscall {
            names: names(&["clone3"]),
            action: Action::Errno,
            errno_ret: Some(38),
            excludes: without_sys_admin(&[]),
            ..Syscall::default()
        });
        rules.extend(rest.iter().map(with_cap));
        Profile {
            default_action: Action::Errno,
            default_errno_ret: Some(1),
            architectures: Vec::new(),
            arch_map: ARCH_MAP
                .iter()
                .map(|(arch, subs)| ArchMap {
                    architecture: arch.to_string(),
                    sub_architectures: names(subs),
                })
                .collect(),
            syscalls: rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_valid_and_in_dockers_order() {
        let p = Profile::docker_default();
        p.validate().unwrap();
        assert_eq!(p.syscalls[0].names.len(), 361);
        let first_names: Vec<&str> = p
            .syscalls
            .iter()
            .map(|s| s.all_names().next().unwrap_or(""))
            .collect();
        assert_eq!(
            first_names,
            [
                "accept",
                "process_vm_readv",
                "socket",
                "socket",
                "socket",
                "personality",
                "personality",
                "personality",
                "personality",
                "personality",
                "sync_file_range2",
                "arm_fadvise64_64",
                "arch_prctl",
                "modify_ldt",
                "s390_pci_mmio_read",
                "riscv_flush_icache",
                "open_by_handle_at",
                "bpf",
                "clone",
                "clone",
                "clone3",
                "reboot",
                "chroot",
                "delete_module",
                "acct",
                "kcmp",
                "iopl",
                "settimeofday",
                "vhangup",
                "get_mempolicy",
                "syslog",
                "bpf",
                "perf_event_open",
            ]
        );
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let p = Profile::docker_default();
        let allowed = &p.syscalls[0].names;
        for denied in [
            "keyctl",
            "add_key",
            "request_key",
            "io_uring_setup",
            "userfaultfd",
            "kexec_load",
            "swapon",
            "pivot_root",
            "open_by_handle_at",
            "mount",
            "unshare",
            "clone",
            "clone3",
            "socket",
            "personality",
        ] {
            assert!(!allowed.iter().any(|n| n == denied), "{denied}");
        }
        let mut sorted = allowed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), allowed.len(), "no name twice");
    }
}
