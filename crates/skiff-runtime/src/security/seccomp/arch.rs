//! The architectures and ABIs a program is built for, and their syscall
//! numbers.
//!
//! The numbers come from the `syscalls` crate, whose per-architecture tables
//! are generated from the kernel's own (`syscall_64.tbl`, `syscall_32.tbl`,
//! arm's `syscall.tbl`, asm-generic `unistd.h`) and follow new kernels.
//! Three things it lacks or has otherwise than libseccomp, whose names docker
//! profiles use, are made good here: arm64's `newfstatat` (the crate calls it
//! `fstatat`) and the 32-bit-only time64 calls (403–423) it lists for arm64; arm's
//! private syscalls (`breakpoint`, `cacheflush`, `set_tls`, …); and the x32
//! ABI, which is x86_64's table with bit 30 set except for the calls x32
//! numbers apart (512–547) or lacks.

use std::collections::HashMap;
use std::sync::LazyLock;

/// An architecture skiff builds seccomp programs for: the host's, which is the guest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86-64; its processes may also use the i386 and x32 ABIs.
    X86_64,
    /// 64-bit Arm; its processes may also use the 32-bit arm ABI.
    Aarch64,
}

impl Arch {
    /// The architecture this code runs on, if skiff supports it.
    pub const fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// libseccomp's name, as profiles write it: that of the native ABI.
    pub const fn scmp_name(self) -> &'static str {
        self.abis()[0].1
    }

    /// Go's name (`GOARCH`), which `includes.arches` and `excludes.arches` use.
    pub const fn go_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The ABIs of the architecture: the native one first, then those a
    /// profile may add with the libseccomp name that adds each.
    pub(super) const fn abis(self) -> &'static [(Abi, &'static str)] {
        match self {
            Arch::X86_64 => &[
                (Abi::X86_64, "SCMP_ARCH_X86_64"),
                (Abi::X32, "SCMP_ARCH_X32"),
                (Abi::I386, "SCMP_ARCH_X86"),
            ],
            Arch::Aarch64 => &[
                (Abi::Aarch64, "SCMP_ARCH_AARCH64"),
                (Abi::Arm, "SCMP_ARCH_ARM"),
            ],
        }
    }
}

/// x32 syscalls are numbered from this bit up (`__X32_SYSCALL_BIT`).
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One syscall ABI: its audit architecture and its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Abi {
    X86_64,
    /// x86_64's audit architecture; numbers with `X32_SYSCALL_BIT` set.
    X32,
    I386,
    Aarch64,
    Arm,
}

// AUDIT_ARCH_* of <linux/audit.h>: the ELF machine, 0x8000_0000 for 64-bit,
// 0x4000_0000 for little-endian.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;

/// arm's private syscalls, `__ARM_NR_BASE` (0x0f0000) + n, which the crate's table lacks.
const ARM_PRIVATE: [(&str, u32); 6] = [
    ("breakpoint", 0x0f_0001),
    ("cacheflush", 0x0f_0002),
    ("usr26", 0x0f_0003),
    ("usr32", 0x0f_0004),
    ("set_tls", 0x0f_0005),
    ("get_tls", 0x0f_0006),
];

/// The calls x32 numbers apart, in order from 512 (`syscall_64.tbl`, abi "x32").
const X32_OWN: [&str; 36] = [
    "rt_sigaction",
    "rt_sigreturn",
    "ioctl",
    "readv",
    "writev",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "execve",
    "ptrace",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "sigaltstack",
    "timer_create",
    "mq_notify",
    "kexec_load",
    "waitid",
    "set_robust_list",
    "get_robust_list",
    "vmsplice",
    "move_pages",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "recvmmsg",
    "sendmmsg",
    "process_vm_readv",
    "process_vm_writev",
    "setsockopt",
    "getsockopt",
    "io_setup",
    "io_submit",
    "execveat",
    "preadv2",
    "pwritev2",
];

/// The other x86_64-only calls (abi "64" in the kernel's table as of 6.18), which x32 lacks.
const X32_LACKS: [&str; 12] = [
    "uselib",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "set_thread_area",
    "get_thread_area",
    "epoll_ctl_old",
    "epoll_wait_old",
    "vserver",
    "map_shadow_stack",
];

/// Every entry of one of the crate's tables, by name (`r#break` read as `break`).
macro_rules! table {
    ($sysno:ty) => {{
        let (first, last) = (<$sysno>::first().id(), <$sysno>::last().id());
        (first..=last)
            .filter_map(|id| <$sysno>::new(id as usize))
            .map(|s| (s.name().trim_start_matches("r#"), s.id() as u32))
            .collect::<HashMap<&'static str, u32>>()
    }};
}

impl Abi {
    /// `AUDIT_ARCH_*`, which `seccomp_data.arch` holds.
    pub(super) const fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::I386 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// Whether arguments are 32 bits wide, so that only the low half is compared (as libseccomp does).
    pub(super) const fn narrow_args(self) -> bool {
        matches!(self, Abi::I386 | Abi::Arm)
    }

    /// The ABI's syscall numbers by name, built once per process.
    pub(super) fn syscall_table(self) -> &'static HashMap<&'static str, u32> {
        type Table = LazyLock<HashMap<&'static str, u32>>;
        static X86_64: Table = LazyLock::new(|| table!(syscalls::x86_64::Sysno));
        static I386: Table = LazyLock::new(|| table!(syscalls::x86::Sysno));
        static X32: Table = LazyLock::new(|| {
            let mut t = X86_64.clone();
            t.retain(|name, _| !X32_OWN.contains(name) && !X32_LACKS.contains(name));
            for nr in t.values_mut() {
                *nr |= X32_SYSCALL_BIT;
            }
            for (i, name) in X32_OWN.iter().enumerate() {
                t.insert(name, X32_SYSCALL_BIT | (512 + i as u32));
            }
            t
        });
        static AARCH64: Table = LazyLock::new(|| {
            let mut t = table!(syscalls::aarch64::Sysno);
            // 403-423 are asm-generic's 32-bit-only time64 calls.
            t.retain(|name, nr| *name != "fstatat" && !(403..=423).contains(nr));
            t.insert("newfstatat", 79);
            t
        });
        static ARM: Table = LazyLock::new(|| {
            let mut t = table!(syscalls::arm::Sysno);
            t.extend(ARM_PRIVATE);
            t
        });
        match self {
            Abi::X86_64 => &X86_64,
            Abi::I386 => &I386,
            Abi::X32 => &X32,
            Abi::Aarch64 => &AARCH64,
            Abi::Arm => &ARM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let x86_64 = Abi::X86_64.syscall_table();
        assert_eq!(x86_64["read"], 0);
        assert_eq!(x86_64["getpid"], 39);
        assert_eq!(x86_64["clone3"], 435);
        assert_eq!(x86_64["newfstatat"], 262);
        assert!(!x86_64.contains_key("recv"), "x86_64 has no recv");
        let x32 = Abi::X32.syscall_table();
        assert_eq!(x32["getpid"], X32_SYSCALL_BIT | 39);
        assert_eq!(x32["rt_sigaction"], X32_SYSCALL_BIT | 512);
        assert_eq!(x32["pwritev2"], X32_SYSCALL_BIT | 547);
        assert_eq!(x32["clone3"], X32_SYSCALL_BIT | 435);
        assert!(!x32.contains_key("set_thread_area"));
        assert!(!x32.contains_key("map_shadow_stack"));
        let i386 = Abi::I386.syscall_table();
        assert_eq!(i386["getpid"], 20);
        assert_eq!(i386["break"], 17);
        assert_eq!(i386["socketcall"], 102);
        assert_eq!(i386["keyctl"], 288);
        assert_eq!(i386["clock_gettime64"], 403);
        let aarch64 = Abi::Aarch64.syscall_table();
        assert_eq!(aarch64["getpid"], 172);
        assert_eq!(aarch64["newfstatat"], 79);
        assert_eq!(aarch64["clone3"], 435);
        assert!(!aarch64.contains_key("fstatat"));
        assert!(!aarch64.contains_key("clock_gettime64"));
        assert!(!aarch64.contains_key("open"), "arm64 has only openat");
        let arm = Abi::Arm.syscall_table();
        assert_eq!(arm["getpid"], 20);
        assert_eq!(arm["set_tls"], 0x0f_0005);
        assert_eq!(arm["arm_fadvise64_64"], 270);
        assert_eq!(arm["clock_gettime64"], 403);
        // The tables reach the newest calls (the last entry is not lost).
        assert!(x86_64.values().any(|&n| n >= 462), "mseal and later");
    }

    #[test]
    fn audit_arches_match_the_kernels() {
        assert_eq!(Abi::X86_64.audit_arch(), 0xC000_003E);
        assert_eq!(Abi::I386.audit_arch(), 0x4000_0003);
        assert_eq!(Abi::Aarch64.audit_arch(), 0xC000_00B7);
        assert_eq!(Abi::Arm.audit_arch(), 0x4000_0028);
    }

    #[test]
    fn names() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Arch::host(), Some(Arch::X86_64));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(Arch::host(), Some(Arch::Aarch64));
        assert_eq!(Arch::X86_64.scmp_name(), "SCMP_ARCH_X86_64");
        assert_eq!(Arch::Aarch64.scmp_name(), "SCMP_ARCH_AARCH64");
    }
}
