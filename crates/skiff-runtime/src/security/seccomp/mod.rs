//! Seccomp: docker-format profiles ([`Profile`]), docker's default one
//! ([`Profile::docker_default`]), and their compilation, for given
//! capabilities, into the classic BPF program ([`SeccompProgram`]) that
//! skiff-init installs in the guest with `PR_SET_SECCOMP`.

/// Architectures, ABIs and their syscall numbers.
mod arch;
/// Profiles into BPF programs.
mod compile;
/// Docker's default profile as tables.
mod default_profile;
/// Docker's profile format.
mod profile;
#[cfg(test)]
mod tests;

pub use compile::{compile, SeccompProgram};
pub use profile::{Action, ArchMap, Arg, Filter, KernelVersion, Op, Profile, Syscall};

use crate::security::capabilities::CapabilityError;
use compile::BPF_MAXINSNS;

/// A profile that cannot be read or compiled.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The JSON is malformed or not of the profile's shape (serde says where).
    #[error("parsing the seccomp profile")]
    Parse(#[source] serde_json::Error),
    /// Both ways of naming architectures at once.
    #[error("the profile has both 'architectures' and 'archMap'; use one")]
    ArchitecturesAndArchMap,
    /// An architecture libseccomp does not know.
    #[error("unknown architecture {0:?} (e.g. SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64)")]
    UnknownArchitecture(String),
    /// A rule with both `name` and `names`.
    #[error("syscalls[{rule}]: use either 'name' or 'names'")]
    NameAndNames {
        /// The rule's index in `syscalls`.
        rule: usize,
    },
    /// A rule with neither `name` nor `names`.
    #[error("syscalls[{rule}]: no syscall names")]
    NoNames {
        /// The rule's index in `syscalls`.
        rule: usize,
    },
    /// A condition on an argument a syscall does not have.
    #[error("syscalls[{rule}]: argument index {index} (a syscall has 6 arguments, 0 to 5)")]
    ArgIndex {
        /// The rule's index in `syscalls`.
        rule: usize,
        /// The index given.
        index: u32,
    },
    /// A capability name in `includes.caps` or `excludes.caps` that is none.
    #[error("syscalls[{rule}]: {field}.caps")]
    Capability {
        /// The rule's index in `syscalls`.
        rule: usize,
        /// `includes` or `excludes`.
        field: &'static str,
        /// What is wrong with the name.
        #[source]
        source: CapabilityError,
    },
    /// More instructions than the kernel takes.
    #[error("the seccomp program has {len} instructions; the kernel takes at most {BPF_MAXINSNS}")]
    TooLong {
        /// The program's length.
        len: usize,
    },
    /// A host whose architecture skiff builds no programs for.
    #[error("no seccomp programs for {0} hosts (x86_64 and aarch64 only)")]
    UnsupportedHost(&'static str),
}
