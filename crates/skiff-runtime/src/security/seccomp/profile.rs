//! Docker's seccomp profile format, the JSON that `docker run --security-opt
//! seccomp=FILE.json` reads (moby's `profiles/seccomp` types), and its checks.

use serde::{Deserialize, Deserializer};

use super::SeccompError;
use crate::security::capabilities::{parse_capability, CapSet};

/// A docker-format seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What a syscall that no rule matches gets.
    pub default_action: Action,
    /// The errno of a `SCMP_ACT_ERRNO` default action (EPERM if absent).
    #[serde(default)]
    pub default_errno_ret: Option<u16>,
    /// The architectures (`SCMP_ARCH_X86_64`, …) the filter covers, besides the native one.
    #[serde(default, deserialize_with = "nullable")]
    pub architectures: Vec<String>,
    /// Per native architecture, the sub-architectures the filter covers.
    #[serde(default, deserialize_with = "nullable")]
    pub arch_map: Vec<ArchMap>,
    /// The rules, in order.
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<Syscall>,
}

/// One `archMap` entry: a native architecture and the ABIs that come with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The native architecture, e.g. `SCMP_ARCH_X86_64`.
    pub architecture: String,
    /// The others its processes can use, e.g. `SCMP_ARCH_X86` and `SCMP_ARCH_X32`.
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

/// One rule: syscalls, an action, and the conditions under which it applies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    /// One syscall name (the older form of `names`).
    #[serde(default)]
    pub name: Option<String>,
    /// The syscalls' names; those this architecture lacks are skipped.
    #[serde(default, deserialize_with = "nullable")]
    pub names: Vec<String>,
    /// What the syscalls get.
    pub action: Action,
    /// The errno of `SCMP_ACT_ERRNO` or the data of `SCMP_ACT_TRACE` (EPERM if absent).
    #[serde(default)]
    pub errno_ret: Option<u16>,
    /// Argument conditions, all of which must hold (each alone if two test the same argument).
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<Arg>,
    /// The rule applies only if all of these hold.
    #[serde(default, deserialize_with = "nullable")]
    pub includes: Filter,
    /// The rule applies only if none of these holds.
    #[serde(default, deserialize_with = "nullable")]
    pub excludes: Filter,
}

/// The `includes`/`excludes` of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`): included if the process has all, excluded if it has any.
    #[serde(default, deserialize_with = "nullable")]
    pub caps: Vec<String>,
    /// Native architectures as Go names (`amd64`, `arm64`).
    #[serde(default, deserialize_with = "nullable")]
    pub arches: Vec<String>,
    /// A kernel version: included from it on, excluded from it on.
    #[serde(default, deserialize_with = "min_kernel")]
    pub min_kernel: Option<KernelVersion>,
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Which argument, 0 to 5.
    pub index: u32,
    /// The value compared with (the mask, for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The value the masked argument must equal, for `SCMP_CMP_MASKED_EQ`.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: Op,
}

/// What a syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum Action {
    /// Runs.
    #[serde(rename = "SCMP_ACT_ALLOW")]
    #[default]
    Allow,
    /// Fails with an errno, without running.
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// Kills the thread (libseccomp's old name for KILL_THREAD).
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    /// Kills the thread.
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    /// Kills the whole process.
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    /// Sends SIGSYS.
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    /// Runs, and the kernel logs it.
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    /// Stops for a ptrace tracer (fails with ENOSYS when there is none).
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
}

/// How an argument is compared with a rule's value (unsigned, 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Op {
    /// Not equal.
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    /// Less than.
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    /// Equal.
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    /// Greater than or equal.
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    /// Greater than.
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    /// `arg & value == valueTwo & value`.
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

impl Op {
    /// Whether `arg` passes the comparison with `value` (and `value_two`).
    pub fn holds(self, arg: u64, value: u64, value_two: u64) -> bool {
        match self {
            Op::Ne => arg != value,
            Op::Lt => arg < value,
            Op::Le => arg <= value,
            Op::Eq => arg == value,
            Op::Ge => arg >= value,
            Op::Gt => arg > value,
            Op::MaskedEq => arg & value == value_two & value,
        }
    }
}

/// A kernel version as `minKernel` writes it, `"4.8"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
}

impl KernelVersion {
    /// Parses `MAJOR.MINOR`, or a release such as `6.1.0-13-amd64` (the rest ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_part = parts.next()?;
        let digits = minor_part
            .find(|c: char| !c.is_ascii_digit())
            .map_or(minor_part, |end| &minor_part[..end]);
        Some(KernelVersion {
            major,
            minor: digits.parse().ok()?,
        })
    }
}

/// `minKernel`: absent, `null` or `""` for none (as docker reads it), else a version.
fn min_kernel<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<KernelVersion>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => KernelVersion::parse(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "minKernel {s:?} is not MAJOR.MINOR, e.g. \"4.8\""
            ))
        }),
    }
}

/// `null` read as the empty value, as Go's JSON decoder does.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The architecture names libseccomp knows.
const SCMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

impl Profile {
    /// Parses and checks a profile in docker's JSON format.
    pub fn from_json(json: &str) -> Result<Self, SeccompError> {
        let profile: Profile = serde_json::from_str(json).map_err(SeccompError::Parse)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks what the JSON types cannot: one of `name`/`names`, one of
    /// `architectures`/`archMap`, known architectures and capabilities,
    /// argument indexes below 6. Unknown syscall names are not errors.
    pub fn validate(&self) -> Result<(), SeccompError> {
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(SeccompError::ArchitecturesAndArchMap);
        }
        let arches = self.architectures.iter().chain(
            self.arch_map
                .iter()
                .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures)),
        );
        for arch in arches {
            if !SCMP_ARCHES.contains(&arch.as_str()) {
                return Err(SeccompError::UnknownArchitecture(arch.clone()));
            }
        }
        for (rule, s) in self.syscalls.iter().enumerate() {
            if s.name.is_some() && !s.names.is_empty() {
                return Err(SeccompError::NameAndNames { rule });
            }
            if s.name.is_none() && s.names.is_empty() {
                return Err(SeccompError::NoNames { rule });
            }
            if let Some(arg) = s.args.iter().find(|a| a.index > 5) {
                return Err(SeccompError::ArgIndex {
                    rule,
                    index: arg.index,
                });
            }
            s.includes.cap_set(rule, "includes")?;
            s.excludes.cap_set(rule, "excludes")?;
        }
        Ok(())
    }
}

impl Syscall {
    /// The names of the rule, whether written as `name` or `names`.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.name.iter().chain(&self.names).map(String::as_str)
    }
}

impl Filter {
    /// `caps` as a set; `rule` and `field` say where for the error.
    pub(super) fn cap_set(&self, rule: usize, field: &'static str) -> Result<CapSet, SeccompError> {
        let mut set = CapSet::empty();
        for name in &self.caps {
            let cap = parse_capability(name).map_err(|source| SeccompError::Capability {
                rule,
                field,
                source,
            })?;
            set.insert(cap);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": null,
             "comment": "old form", "includes": {}, "excludes": null},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS",
             "includes": {"minKernel": "4.8", "caps": ["sys_ptrace"]}},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["tkill"], "action": "SCMP_ACT_TRAP"},
            {"names": ["tgkill"], "action": "SCMP_ACT_KILL"},
            {"names": ["uname"], "action": "SCMP_ACT_KILL_THREAD",
             "args": [{"index": 5, "value": 1, "op": "SCMP_CMP_NE"},
                      {"index": 1, "value": 2, "op": "SCMP_CMP_LT"},
                      {"index": 2, "value": 3, "op": "SCMP_CMP_LE"},
                      {"index": 3, "value": 4, "op": "SCMP_CMP_GE"},
                      {"index": 4, "value": 5, "op": "SCMP_CMP_GT"},
                      {"index": 0, "value": 6, "op": "SCMP_CMP_EQ"}]}
        ],
        "listenerPath": "/ignored/as/docker/without/a/notify/rule"
    }"#;

    #[test]
    fn parses_dockers_format() {
        let p = Profile::from_json(EXAMPLE).unwrap();
        assert_eq!(p.default_action, Action::Errno);
        assert_eq!(p.default_errno_ret, Some(38));
        assert_eq!(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        assert_eq!(p.syscalls.len(), 9);
        assert_eq!(
            p.syscalls[0].all_names().collect::<Vec<_>>(),
            ["read", "write", "no_such_syscall"]
        );
        assert_eq!(p.syscalls[1].all_names().collect::<Vec<_>>(), ["mkdir"]);
        assert_eq!(p.syscalls[1].errno_ret, Some(13));
        assert!(p.syscalls[1].args.is_empty() && p.syscalls[1].excludes == Filter::default());
        let clone = &p.syscalls[2];
        assert_eq!(
            clone.args,
            [Arg {
                index: 0,
                value: 0x7E02_0000,
                value_two: 0,
                op: Op::MaskedEq
            }]
        );
        assert_eq!(clone.excludes.caps, ["CAP_SYS_ADMIN"]);
        assert_eq!(
            p.syscalls[3].includes.min_kernel,
            Some(KernelVersion { major: 4, minor: 8 })
        );
        let actions: Vec<Action> = p.syscalls.iter().map(|s| s.action).collect();
        use Action::*;
        assert_eq!(
            actions,
            [
                Allow,
                Errno,
                Allow,
                KillProcess,
                Log,
                Trace,
                Trap,
                Kill,
                KillThread
            ]
        );
        let ops: Vec<Op> = p.syscalls[8].args.iter().map(|a| a.op).collect();
        assert_eq!(ops, [Op::Ne, Op::Lt, Op::Le, Op::Ge, Op::Gt, Op::Eq]);
    }

    #[test]
    fn arch_map_with_null_sub_architectures() {
        let p = Profile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "archMap": [{"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
                "syscalls": null}"#,
        )
        .unwrap();
        assert!(p.arch_map[0].sub_architectures.is_empty() && p.syscalls.is_empty());
    }

    /// The error with its causes, as skiff shows it.
    fn error(json: &str) -> String {
        let text = skiff_util::error::chain(&Profile::from_json(json).unwrap_err());
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn malformed_json_is_a_one_line_error_with_its_place() {
        let e = error("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [}");
        assert!(e.starts_with("parsing the seccomp profile: "), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = error("");
        assert!(e.starts_with("parsing the seccomp profile: "), "{e}");
        // Nothing but the rule's own words: no file name, no repeated source.
        let e = Profile::from_json("[").unwrap_err();
        assert_eq!(e.to_string(), "parsing the seccomp profile");
    }

    #[test]
    fn unknown_actions_and_ops_are_errors() {
        let e = error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(e.contains("unknown variant `SCMP_ACT_NOTIFY`"), "{e}");
        assert!(e.contains("SCMP_ACT_ALLOW"), "says what is accepted: {e}");
        let e = error(r#"{"defaultAction": "ALLOW"}"#);
        assert!(e.contains("unknown variant `ALLOW`"), "{e}");
        let e = error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}"#,
        );
        assert!(e.contains("unknown variant `SCMP_CMP_SOMETIMES`"), "{e}");
        assert!(e.contains("SCMP_CMP_MASKED_EQ"), "{e}");
        let e = error(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}"#);
        assert!(e.contains("missing field `action`"), "{e}");
    }

    #[test]
    fn checks_beyond_the_types() {
        let rule = |r: &str| {
            format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["read"], "action": "SCMP_ACT_ALLOW"}}, {r}]}}"#
            )
        };
        let e = error(&rule(
            r#"{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}"#,
        ));
        assert_eq!(e, "syscalls[1]: use either 'name' or 'names'");
        let e = error(&rule(r#"{"action": "SCMP_ACT_ALLOW"}"#));
        assert_eq!(e, "syscalls[1]: no syscall names");
        let e = error(&rule(
            r#"{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}"#,
        ));
        assert_eq!(
            e,
            "syscalls[1]: argument index 6 (a syscall has 6 arguments, 0 to 5)"
        );
        let bad_cap = rule(
            r#"{"names": ["a"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_FOO"]}}"#,
        );
        let e = error(&bad_cap);
        assert!(
            e.starts_with("syscalls[1]: excludes.caps: unknown capability \"CAP_FOO\""),
            "{e}"
        );
        // The message leaves the capability's error to its source.
        let e = Profile::from_json(&bad_cap).unwrap_err();
        assert_eq!(e.to_string(), "syscalls[1]: excludes.caps");
        let e = error(&rule(
            r#"{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}"#,
        ));
        assert!(e.contains("minKernel \"4\" is not MAJOR.MINOR"), "{e}");
        // As docker (Go's Sscanf "%d.%d"): more after MAJOR.MINOR is ignored, "" is none.
        let p = Profile::from_json(&rule(
            r#"{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.10.2"}, "excludes": {"minKernel": ""}}"#,
        ))
        .unwrap();
        assert_eq!(
            p.syscalls[1].includes.min_kernel,
            Some(KernelVersion {
                major: 5,
                minor: 10
            })
        );
        assert_eq!(p.syscalls[1].excludes.min_kernel, None);
        let e = error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        );
        assert_eq!(
            e,
            "the profile has both 'architectures' and 'archMap'; use one"
        );
        let e = error(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#);
        assert!(
            e.starts_with("unknown architecture \"SCMP_ARCH_Z80\""),
            "{e}"
        );
        let e = error(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
        assert!(e.contains("70000"), "{e}");
    }

    #[test]
    fn kernel_versions() {
        let v = |s| KernelVersion::parse(s);
        assert_eq!(v("4.8"), Some(KernelVersion { major: 4, minor: 8 }));
        assert_eq!(
            v("6.18.44-fc-v1045"),
            Some(KernelVersion {
                major: 6,
                minor: 18
            })
        );
        assert_eq!(
            v("5.10-rc1"),
            Some(KernelVersion {
                major: 5,
                minor: 10
            })
        );
        assert_eq!(v("5"), None);
        assert_eq!(v("x.1"), None);
        assert!(v("4.8") < v("4.10"));
        assert!(v("5.0") > v("4.19"));
    }

    #[test]
    fn ops() {
        assert!(Op::MaskedEq.holds(0x1234, 0xF0, 0x30));
        assert!(!Op::MaskedEq.holds(0x1244, 0xF0, 0x30));
        assert!(
            Op::MaskedEq.holds(0x1234, 0xF0, 0x3F),
            "the datum is masked too"
        );
        assert!(Op::Gt.holds(1 << 32, u32::MAX as u64, 0));
        assert!(Op::Lt.holds(u32::MAX as u64, 1 << 32, 0));
    }
}
