//! The container's hardening flags as `create` records them (`--privileged`,
//! `--cap-add/--cap-drop`, `--security-opt`, `--pids-limit`, `--ulimit`,
//! `--shm-size`, `--sysctl`), and what they become for the guest each time
//! the container starts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::agent::GuestSecurity;
use crate::security::capabilities::{self, CapSet};
use crate::security::seccomp;

/// The flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt` values.
    pub security_opts: Vec<String>,
    /// `--pids-limit`; 0 or below: no limit.
    pub pids_limit: Option<i64>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--shm-size`, in bytes.
    pub shm_size: Option<u64>,
    /// `--sysctl KEY=VALUE`.
    pub sysctls: Vec<String>,
}

/// Which seccomp filter the container runs under.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SeccompChoice {
    /// docker's default profile.
    #[default]
    Default,
    Unconfined,
    /// A docker-format profile, read at create (as docker stores it).
    Profile {
        path: String,
        json: String,
    },
}

/// One `--ulimit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// What `create` decided; kept in config.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecurityConfig {
    #[serde(default)]
    pub privileged: bool,
    /// The capabilities root processes have (docker's default set after
    /// --cap-add/--cap-drop; all with --privileged).
    #[serde(default = "CapSet::docker_default")]
    pub capabilities: CapSet,
    /// What --cap-add named: also given, as ambient capabilities, to
    /// processes of other users.
    #[serde(default)]
    pub added: CapSet,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub seccomp: SeccompChoice,
    #[serde(default)]
    pub pids_limit: u32,
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// Bytes; 0: docker's 64 MiB.
    #[serde(default)]
    pub shm_size: u64,
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
}

/// docker's defaults (and those of a config.json from before these flags).
impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            privileged: false,
            capabilities: CapSet::docker_default(),
            added: CapSet::empty(),
            no_new_privileges: false,
            seccomp: SeccompChoice::Default,
            pids_limit: 0,
            ulimits: Vec::new(),
            shm_size: 0,
            sysctls: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BadSecurity {
    #[error(transparent)]
    Capability(#[from] capabilities::CapabilityError),
    #[error("invalid --security-opt {0:?}: use no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json")]
    SecurityOpt(String),
    #[error("--security-opt {0}: skiff guests have no SELinux or AppArmor; use label=disable or apparmor=unconfined, or leave it out")]
    NoLsm(String),
    #[error("reading the seccomp profile {path}")]
    ReadProfile {
        path: String,
        source: std::io::Error,
    },
    #[error("the seccomp profile {path}")]
    Profile {
        path: String,
        source: seccomp::SeccompError,
    },
    #[error("compiling the seccomp filter")]
    Compile(#[source] seccomp::SeccompError),
    #[error("invalid --ulimit {spec:?}: {why}")]
    Ulimit { spec: String, why: String },
    #[error("invalid --sysctl {0:?}: use KEY=VALUE, e.g. net.core.somaxconn=1024")]
    Sysctl(String),
    #[error("--pids-limit {0} is too large")]
    PidsLimit(i64),
}

/// docker's `--ulimit` names and their RLIMIT_* numbers.
// `as u32`: the constants are u32 on glibc but c_int on musl.
#[allow(clippy::unnecessary_cast)]
const ULIMITS: &[(&str, u32)] = &[
    ("as", libc::RLIMIT_AS as u32),
    ("core", libc::RLIMIT_CORE as u32),
    ("cpu", libc::RLIMIT_CPU as u32),
    ("data", libc::RLIMIT_DATA as u32),
    ("fsize", libc::RLIMIT_FSIZE as u32),
    ("locks", libc::RLIMIT_LOCKS as u32),
    ("memlock", libc::RLIMIT_MEMLOCK as u32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as u32),
    ("nice", libc::RLIMIT_NICE as u32),
    ("nofile", libc::RLIMIT_NOFILE as u32),
    ("nproc", libc::RLIMIT_NPROC as u32),
    ("rss", libc::RLIMIT_RSS as u32),
    ("rtprio", libc::RLIMIT_RTPRIO as u32),
    ("rttime", libc::RLIMIT_RTTIME as u32),
    ("sigpending", libc::RLIMIT_SIGPENDING as u32),
    ("stack", libc::RLIMIT_STACK as u32),
];

fn parse_ulimit(spec: &str) -> Result<Ulimit, BadSecurity> {
    let bad = |why: &str| BadSecurity::Ulimit {
        spec: spec.to_owned(),
        why: why.to_owned(),
    };
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| bad("use NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
    if !ULIMITS.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
        return Err(bad(&format!(
            "unknown limit {name:?} (one of {})",
            names.join(", ")
        )));
    }
    let value = |v: &str| -> Result<u64, BadSecurity> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse()
            .map_err(|_| bad(&format!("{v:?} is not a number (or -1 for unlimited)")))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => {
            let v = value(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

/// A key that names a file under /proc/sys and nothing outside it:
/// dot-separated words of letters, digits, '_' and '-'.
fn valid_sysctl_key(k: &str) -> bool {
    !k.is_empty()
        && k.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// docker's /dev/shm size, and skiff-init's when none is given.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

impl SecurityConfig {
    /// Checks and records the flags; `cwd` resolves a relative profile path.
    /// The seccomp program is compiled once here so that a bad profile fails
    /// before anything starts.
    pub fn from_options(o: &SecurityOptions, cwd: &Path) -> Result<Self, BadSecurity> {
        let mut no_new_privileges = false;
        let mut seccomp_choice = SeccompChoice::Default;
        for opt in &o.security_opts {
            let (key, value) = match opt.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
                ("no-new-privileges", Some("false")) => no_new_privileges = false,
                ("seccomp", Some("unconfined")) => seccomp_choice = SeccompChoice::Unconfined,
                ("seccomp", Some(path)) if !path.is_empty() => {
                    let full = cwd.join(path);
                    let json = std::fs::read_to_string(&full).map_err(|source| {
                        BadSecurity::ReadProfile {
                            path: full.display().to_string(),
                            source,
                        }
                    })?;
                    // Parsed (and compiled) by guest() below.
                    seccomp_choice = SeccompChoice::Profile {
                        path: full.display().to_string(),
                        json,
                    };
                }
                // Nothing to relabel or confine with in a skiff guest; no
                // masked /proc paths to lift either.
                ("label", Some("disable")) | ("apparmor", Some("unconfined")) => {}
                ("systempaths", Some("unconfined")) => {}
                ("label" | "apparmor", Some(_)) => return Err(BadSecurity::NoLsm(opt.clone())),
                _ => return Err(BadSecurity::SecurityOpt(opt.clone())),
            }
        }
        let (capabilities, added) = if o.privileged {
            (CapSet::all(), CapSet::empty())
        } else {
            // What --cap-add names alone: docker's rules with everything
            // else dropped.
            let added = capabilities::resolve(&o.cap_add, &["ALL".to_owned()])?;
            (capabilities::resolve(&o.cap_add, &o.cap_drop)?, added)
        };
        let pids_limit = match o.pids_limit {
            Some(n) if n > 0 => u32::try_from(n).map_err(|_| BadSecurity::PidsLimit(n))?,
            _ => 0,
        };
        let ulimits = o
            .ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<Result<_, _>>()?;
        let sysctls = o
            .sysctls
            .iter()
            .map(|s| match s.split_once('=') {
                Some((k, v)) if valid_sysctl_key(k) => Ok((k.to_owned(), v.to_owned())),
                _ => Err(BadSecurity::Sysctl(s.clone())),
            })
            .collect::<Result<_, _>>()?;
        let config = Self {
            privileged: o.privileged,
            capabilities,
            added,
            no_new_privileges,
            seccomp: seccomp_choice,
            pids_limit,
            ulimits,
            shm_size: o.shm_size.unwrap_or(0),
            sysctls,
        };
        config.guest()?;
        Ok(config)
    }

    /// The confinement the guest applies, with the seccomp program compiled
    /// for this host's architecture (the guest's).
    pub fn guest(&self) -> Result<GuestSecurity, BadSecurity> {
        let seccomp_filter = if self.privileged {
            Vec::new()
        } else {
            let profile = match &self.seccomp {
                SeccompChoice::Unconfined => None,
                SeccompChoice::Default => Some(seccomp::Profile::docker_default()),
                SeccompChoice::Profile { path, json } => {
                    Some(seccomp::Profile::from_json(json).map_err(|source| {
                        BadSecurity::Profile {
                            path: path.clone(),
                            source,
                        }
                    })?)
                }
            };
            match profile {
                Some(p) => seccomp::compile(&p, self.capabilities)
                    .map_err(BadSecurity::Compile)?
                    .to_bytes(),
                None => Vec::new(),
            }
        };
        let rlimits = self
            .ulimits
            .iter()
            .filter_map(|u| {
                let resource = ULIMITS.iter().find(|(n, _)| *n == u.name)?.1;
                Some((resource, u.soft, u.hard))
            })
            .collect();
        Ok(GuestSecurity {
            privileged: self.privileged,
            capabilities: self.capabilities.bits(),
            user_capabilities: self.added.bits() & self.capabilities.bits(),
            no_new_privileges: self.no_new_privileges,
            seccomp_filter,
            pids_limit: self.pids_limit,
            rlimits,
            shm_size: self.shm_size,
            sysctls: self.sysctls.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(f: impl FnOnce(&mut SecurityOptions)) -> Result<SecurityConfig, BadSecurity> {
        let mut o = SecurityOptions::default();
        f(&mut o);
        SecurityConfig::from_options(&o, Path::new("/"))
    }

    #[test]
    fn defaults_are_dockers() {
        let c = opts(|_| {}).unwrap();
        assert_eq!(c.capabilities, CapSet::docker_default());
        assert_eq!(c.seccomp, SeccompChoice::Default);
        let g = c.guest().unwrap();
        assert!(!g.seccomp_filter.is_empty() && g.seccomp_filter.len() % 8 == 0);
        assert_eq!(g.user_capabilities, 0);
    }

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn flags_are_parsed() {
        let c = opts(|o| {
            o.cap_drop = vec!["ALL".into()];
            o.cap_add = vec!["net_bind_service".into()];
            o.security_opts = vec!["no-new-privileges".into(), "seccomp=unconfined".into()];
            o.pids_limit = Some(100);
            o.ulimits = vec!["nofile=1024:2048".into(), "core=-1".into()];
            o.sysctls = vec!["net.core.somaxconn=1024".into()];
        })
        .unwrap();
        let g = c.guest().unwrap();
        assert_eq!(g.capabilities, 1 << 10);
        assert_eq!(g.user_capabilities, 1 << 10);
        assert!(g.no_new_privileges && g.seccomp_filter.is_empty());
        assert_eq!(g.pids_limit, 100);
        assert_eq!(
            g.rlimits,
            vec![
                (libc::RLIMIT_NOFILE as u32, 1024, 2048),
                (libc::RLIMIT_CORE as u32, u64::MAX, u64::MAX)
            ]
        );
        assert_eq!(
            g.sysctls,
            vec![("net.core.somaxconn".into(), "1024".into())]
        );
        let p = opts(|o| o.privileged = true).unwrap().guest().unwrap();
        assert!(p.privileged && p.seccomp_filter.is_empty());
        assert_eq!(p.capabilities, CapSet::all().bits());
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for (f, want) in [
            (
                Box::new(|o: &mut SecurityOptions| o.cap_add = vec!["CAP_FOO".into()])
                    as Box<dyn Fn(&mut SecurityOptions)>,
                "CAP_FOO",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.security_opts = vec!["nonsense".into()]),
                "invalid --security-opt \"nonsense\"",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.security_opts = vec!["label=type:x".into()]),
                "no SELinux",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.ulimits = vec!["nofile=9:3".into()]),
                "soft limit is above",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.ulimits = vec!["files=3".into()]),
                "unknown limit \"files\"",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.sysctls = vec!["=3".into()]),
                "invalid --sysctl",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.sysctls = vec!["kernel/../x=3".into()]),
                "invalid --sysctl",
            ),
            (
                Box::new(|o: &mut SecurityOptions| o.sysctls = vec!["net..x=3".into()]),
                "invalid --sysctl",
            ),
            (
                Box::new(|o: &mut SecurityOptions| {
                    o.security_opts = vec!["seccomp=/nonexistent.json".into()]
                }),
                "/nonexistent.json",
            ),
        ] {
            let e = skiff_util::error::chain(&opts(|o| f(o)).unwrap_err());
            assert!(e.contains(want) && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_malformed_profile_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.json"), "{\"defaultAction\": ").unwrap();
        let e = SecurityConfig::from_options(
            &SecurityOptions {
                security_opts: vec!["seccomp=p.json".into()],
                ..Default::default()
            },
            dir.path(),
        )
        .unwrap_err();
        let e = skiff_util::error::chain(&e);
        assert!(
            e.contains("p.json") && e.contains("line 1") && !e.contains('\n'),
            "{e}"
        );
    }
}
