//! What a container was created with (`config.json`): written once by
//! `create`, read by everything after.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The process the container runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub tty: bool,
    /// Keep stdin open for attachers (`-i`).
    pub open_stdin: bool,
    /// Close the process's stdin when the first attacher's input ends (`run -i`
    /// in the foreground, as docker's StdinOnce).
    pub stdin_once: bool,
}

/// When the monitor starts the container's process again (`--restart`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// After a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid restart policy {0:?}: use no, on-failure[:N], always or unless-stopped")]
pub struct BadRestartPolicy(String);

impl std::str::FromStr for RestartPolicy {
    type Err = BadRestartPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRestartPolicy(s.to_owned());
        Ok(match s.split_once(':') {
            None => match s {
                "no" | "" => Self::No,
                "on-failure" => Self::OnFailure { max_retries: 0 },
                "always" => Self::Always,
                "unless-stopped" => Self::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => Self::OnFailure {
                max_retries: n.parse().map_err(|_| bad())?,
            },
            Some(_) => return Err(bad()),
        })
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::No => f.write_str("no"),
            Self::OnFailure { max_retries: 0 } => f.write_str("on-failure"),
            Self::OnFailure { max_retries } => write!(f, "on-failure:{max_retries}"),
            Self::Always => f.write_str("always"),
            Self::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

/// A healthcheck: a command run in the container every `interval`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthConfig {
    /// argv to exec (`CMD-SHELL` forms are already `["/bin/sh", "-c", …]`).
    pub test: Vec<String>,
    #[serde(with = "duration_ns")]
    pub interval: Duration,
    #[serde(with = "duration_ns")]
    pub timeout: Duration,
    #[serde(with = "duration_ns")]
    pub start_period: Duration,
    /// Consecutive failures that make the container unhealthy.
    pub retries: u32,
}

impl HealthConfig {
    /// docker's defaults: every 30 s, 30 s timeout, 3 retries, no start period.
    pub fn with_defaults(test: Vec<String>) -> Self {
        Self {
            test,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            start_period: Duration::ZERO,
            retries: 3,
        }
    }
}

/// Durations as nanoseconds, as docker's configs keep them.
mod duration_ns {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_nanos().min(u64::MAX as u128) as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_nanos(u64::deserialize(d)?))
    }
}

/// Everything `create` decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and what it resolved to.
    pub image: String,
    pub image_digest: String,
    pub image_id: String,
    pub process: ProcessConfig,
    pub hostname: String,
    pub cpus: u32,
    pub memory_mib: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--rm`: removed when it stops.
    #[serde(default)]
    pub auto_remove: bool,
    /// Signal number `stop` sends first.
    pub stop_signal: i32,
    /// Seconds `stop` waits before SIGKILL.
    pub stop_timeout: u32,
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
    /// `--log-opt` values, checked at create.
    #[serde(default)]
    pub log_opts: Vec<String>,
    /// RFC 3339.
    pub created: String,
    /// The network it joins, its published ports, names and resolver.
    #[serde(default)]
    pub network: crate::network::ContainerNetwork,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_print_as_docker() {
        for (s, p) in [
            ("no", RestartPolicy::No),
            ("on-failure", RestartPolicy::OnFailure { max_retries: 0 }),
            ("on-failure:3", RestartPolicy::OnFailure { max_retries: 3 }),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
        ] {
            assert_eq!(s.parse::<RestartPolicy>().unwrap(), p);
            assert_eq!(p.to_string(), s);
        }
        for bad in ["sometimes", "on-failure:x", "always:2", "on-failure:-1"] {
            let e = bad.parse::<RestartPolicy>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn config_round_trips() {
        let h = HealthConfig::with_defaults(vec!["true".into()]);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["interval"], 30_000_000_000u64);
        assert_eq!(serde_json::from_value::<HealthConfig>(v).unwrap(), h);
        let p = serde_json::to_value(RestartPolicy::OnFailure { max_retries: 2 }).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"name": "on-failure", "max_retries": 2})
        );
    }
}
