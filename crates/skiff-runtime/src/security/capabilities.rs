//! Linux capabilities by name and number, sets of them, and docker's
//! `--cap-add`/`--cap-drop` rules.

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Every capability the kernel defines, by number (index n is capability n),
/// as in `<linux/capability.h>`.
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The highest capability number the kernel defines (CAP_CHECKPOINT_RESTORE).
pub const CAP_LAST_CAP: u32 = CAPABILITIES.len() as u32 - 1;

/// Docker's default set (moby `oci/caps/defaults.go`).
const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A capability name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The name is no capability of `capabilities(7)`.
    #[error("unknown capability {0:?} (see capabilities(7); e.g. NET_ADMIN or ALL)")]
    Unknown(String),
    /// `ALL` where one capability is wanted.
    #[error("ALL stands for every capability; one capability is wanted here (e.g. NET_ADMIN)")]
    All,
}

/// The number of a capability named `NET_ADMIN`, `CAP_NET_ADMIN` or `cap_net_admin`.
pub fn parse_capability(name: &str) -> Result<u32, CapabilityError> {
    if is_all(name) {
        return Err(CapabilityError::All);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    number(&full).ok_or_else(|| CapabilityError::Unknown(name.to_owned()))
}

/// The number of the capability the kernel names `full` (`CAP_CHOWN`).
fn number(full: &str) -> Option<u32> {
    CAPABILITIES
        .iter()
        .position(|&c| c == full)
        .map(|n| n as u32)
}

/// The kernel's name of capability `cap` (`CAP_CHOWN` for 0), if it has one.
pub fn capability_name(cap: u32) -> Option<&'static str> {
    CAPABILITIES.get(cap as usize).copied()
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// A process's capabilities from docker's `--cap-add` and `--cap-drop`: with
/// `ALL` in `add`, every capability but those dropped; else with `ALL` in
/// `drop`, only those added; else docker's default set, less `drop`, plus `add`.
pub fn resolve(add: &[String], drop: &[String]) -> Result<CapSet, CapabilityError> {
    let parse = |names: &[String]| -> Result<CapSet, CapabilityError> {
        let mut set = CapSet::empty();
        for name in names.iter().filter(|n| !is_all(n)) {
            set.insert(parse_capability(name)?);
        }
        Ok(set)
    };
    let (added, dropped) = (parse(add)?, parse(drop)?);
    Ok(if add.iter().any(|n| is_all(n)) {
        CapSet::all().difference(dropped)
    } else if drop.iter().any(|n| is_all(n)) {
        added
    } else {
        CapSet::docker_default().difference(dropped).union(added)
    })
}

/// A set of capabilities: bit n of the mask is capability n.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    /// No capability.
    pub const fn empty() -> Self {
        CapSet(0)
    }

    /// Every capability the kernel defines, up to CAP_CHECKPOINT_RESTORE.
    pub const fn all() -> Self {
        CapSet((1u64 << (CAP_LAST_CAP + 1)) - 1)
    }

    /// Docker's default set: CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD,
    /// NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE,
    /// SYS_CHROOT, KILL, AUDIT_WRITE.
    pub fn docker_default() -> Self {
        let mut set = CapSet::empty();
        for n in DOCKER_DEFAULT.iter().filter_map(|name| number(name)) {
            set.insert(n);
        }
        set
    }

    /// The mask: bit n set for capability n.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set of a mask; bits above CAP_LAST_CAP are dropped.
    pub const fn from_bits(bits: u64) -> Self {
        CapSet(bits & Self::all().0)
    }

    /// Whether capability number `cap` is in the set.
    pub const fn contains(self, cap: u32) -> bool {
        cap <= CAP_LAST_CAP && self.0 & (1 << cap) != 0
    }

    /// Adds capability number `cap` (a number above CAP_LAST_CAP adds nothing).
    pub fn insert(&mut self, cap: u32) {
        if cap <= CAP_LAST_CAP {
            self.0 |= 1 << cap;
        }
    }

    /// Removes capability number `cap`.
    pub fn remove(&mut self, cap: u32) {
        if cap <= CAP_LAST_CAP {
            self.0 &= !(1 << cap);
        }
    }

    /// The capabilities in both sets or either.
    pub const fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    /// The capabilities in both sets.
    pub const fn intersection(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// The capabilities of `self` that are not in `other`.
    pub const fn difference(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Whether no capability is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The numbers in the set, smallest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..=CAP_LAST_CAP).filter(move |&n| self.contains(n))
    }

    /// The names in the set (`CAP_CHOWN`, …), sorted by name.
    pub fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.iter().filter_map(capability_name).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Serialize for CapSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for CapSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = CapSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of capability names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CapSet, A::Error> {
                let mut set = CapSet::empty();
                while let Some(name) = seq.next_element::<String>()? {
                    set.insert(parse_capability(&name).map_err(serde::de::Error::custom)?);
                }
                Ok(set)
            }
        }
        deserializer.deserialize_seq(Names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn cap(name: &str) -> u32 {
        parse_capability(name).unwrap()
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(cap("CHOWN"), 0);
        assert_eq!(cap("NET_ADMIN"), 12);
        assert_eq!(cap("CAP_NET_ADMIN"), 12);
        assert_eq!(cap("cap_net_admin"), 12);
        assert_eq!(cap("Net_Admin"), 12);
        assert_eq!(cap("SYS_ADMIN"), 21);
        assert_eq!(cap("CAP_CHECKPOINT_RESTORE"), 40);
        assert_eq!(CAP_LAST_CAP, 40);
        assert_eq!(capability_name(39), Some("CAP_BPF"));
        assert_eq!(capability_name(41), None);
        for (n, name) in CAPABILITIES.iter().enumerate() {
            assert_eq!(parse_capability(name), Ok(n as u32));
        }
    }

    #[test]
    fn unknown_name_says_what_is_accepted() {
        let err = parse_capability("CAP_FOO").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown capability "CAP_FOO" (see capabilities(7); e.g. NET_ADMIN or ALL)"#
        );
        assert_eq!(parse_capability("all"), Err(CapabilityError::All));
        assert!(parse_capability("").is_err());
        assert!(parse_capability("CAP_").is_err());
        let err = resolve(&strings(&["NET_ADMIN", "bogus"]), &[]).unwrap_err();
        assert_eq!(err, CapabilityError::Unknown("bogus".into()));
        assert!(resolve(&[], &strings(&["CAP_NOPE"])).is_err());
        assert!(resolve(&strings(&["ALL"]), &strings(&["NOPE"])).is_err());
    }

    #[test]
    fn sets() {
        assert_eq!(CapSet::all().bits(), (1 << 41) - 1);
        assert_eq!(CapSet::all().iter().count(), 41);
        assert!(CapSet::empty().is_empty());
        let default = CapSet::docker_default();
        assert_eq!(default.iter().count(), 14);
        assert!(default.contains(cap("AUDIT_WRITE")));
        assert!(default.contains(cap("NET_BIND_SERVICE")));
        assert!(!default.contains(cap("SYS_ADMIN")));
        assert!(!default.contains(cap("NET_ADMIN")));
        assert!(!default.contains(99));
        assert_eq!(CapSet::from_bits(u64::MAX), CapSet::all());
        assert_eq!(CapSet::from_bits(default.bits()), default);
        let mut set = CapSet::empty();
        set.insert(cap("SYS_ADMIN"));
        set.insert(cap("CHOWN"));
        set.insert(64);
        assert_eq!(set.bits(), 1 << 21 | 1);
        assert_eq!(set.names(), ["CAP_CHOWN", "CAP_SYS_ADMIN"]);
        set.remove(0);
        assert_eq!(set.names(), ["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn serde_is_sorted_names() {
        let mut set = CapSet::empty();
        for name in ["SYS_TIME", "CHOWN", "AUDIT_WRITE"] {
            set.insert(cap(name));
        }
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["CAP_AUDIT_WRITE","CAP_CHOWN","CAP_SYS_TIME"]"#);
        assert_eq!(serde_json::from_str::<CapSet>(&json).unwrap(), set);
        assert_eq!(
            serde_json::from_str::<CapSet>(r#"["chown","NET_RAW"]"#).unwrap(),
            CapSet::from_bits(1 | 1 << 13)
        );
        let err = serde_json::from_str::<CapSet>(r#"["CAP_FOO"]"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown capability \"CAP_FOO\""),
            "{err}"
        );
    }

    #[test]
    fn docker_rules() {
        let default = CapSet::docker_default();
        // Neither list: the default set.
        assert_eq!(resolve(&[], &[]).unwrap(), default);
        // Added and dropped, any case, with or without the prefix.
        let set = resolve(
            &strings(&["net_admin", "CAP_SYS_TIME"]),
            &strings(&["MKNOD", "cap_kill"]),
        )
        .unwrap();
        let mut expected = default;
        expected.insert(cap("NET_ADMIN"));
        expected.insert(cap("SYS_TIME"));
        expected.remove(cap("MKNOD"));
        expected.remove(cap("KILL"));
        assert_eq!(set, expected);
        // ALL added: everything but what is dropped.
        let set = resolve(&strings(&["all"]), &strings(&["SYS_ADMIN"])).unwrap();
        assert_eq!(set, CapSet::all().difference(CapSet::from_bits(1 << 21)));
        // ALL added and ALL dropped: docker keeps everything (ALL in drop is no name).
        assert_eq!(
            resolve(&strings(&["ALL"]), &strings(&["ALL"])).unwrap(),
            CapSet::all()
        );
        // ALL dropped: only what is added.
        let set = resolve(&strings(&["CHOWN", "NET_RAW"]), &strings(&["ALL"])).unwrap();
        assert_eq!(set, CapSet::from_bits(1 | 1 << 13));
        assert_eq!(resolve(&[], &strings(&["All"])).unwrap(), CapSet::empty());
        // Adding one of the defaults changes nothing; dropping one not there neither.
        assert_eq!(
            resolve(&strings(&["CHOWN"]), &strings(&["SYS_ADMIN"])).unwrap(),
            default
        );
    }
}
