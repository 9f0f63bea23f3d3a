//! What a container was created with (`config.json`): written once by
//! `create`, read by everything after.

use std::collections::BTreeMap;
use std::path::Path;
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
    /// `--read-only`: the root filesystem is mounted read-only.
    #[serde(default)]
    pub readonly_root: bool,
    /// `--tmpfs` and `--mount type=tmpfs`, in order.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// `-v /host:/ctr[:ro]` and `--mount type=bind`, in order.
    #[serde(default)]
    pub binds: Vec<BindMount>,
    /// `-v NAME:/ctr[:ro]` and `--mount type=volume`, in order.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Capabilities, seccomp, limits.
    #[serde(default)]
    pub security: super::security_config::SecurityConfig,
    /// A build step: the root is an overlay over the image, and when the
    /// process exits 0 what it changed is written here as a layer tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_to: Option<std::path::PathBuf>,
}

/// A host directory in the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute, resolved when the container was created.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    pub readonly: bool,
}

/// A named volume in the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    pub name: String,
    /// Absolute path in the container.
    pub target: String,
    pub readonly: bool,
    /// `volume-nocopy`: an empty volume does not receive the image's files.
    #[serde(default)]
    pub nocopy: bool,
}

/// A `-v` or `--mount` of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    Tmpfs(TmpfsMount),
    Bind(BindMount),
    Volume(VolumeMount),
}

fn valid_target(dst: &str) -> Result<(), String> {
    if !dst.starts_with('/') || dst == "/" || dst.split('/').any(|p| p == "..") {
        return Err(format!(
            "the container path {dst:?} must be absolute, not /, and without .."
        ));
    }
    Ok(())
}

impl MountSpec {
    /// docker's `-v SRC:DST[:OPTS]`: SRC a host directory (absolute, or
    /// relative starting with `.`, resolved against `cwd`; it must exist) or
    /// a volume's name. OPTS: `ro`, `rw`, `nocopy`.
    pub fn parse_volume_flag(spec: &str, cwd: &Path) -> Result<Self, BadMount> {
        let bad = |why: &str| BadMount::Volume {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let mut parts = spec.splitn(3, ':');
        let (src, dst, opts) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        let Some(dst) = dst else {
            return Err(bad(
                "use HOST_DIR:CONTAINER_DIR[:ro] or VOLUME:CONTAINER_DIR[:ro] (anonymous volumes are not supported: name it)",
            ));
        };
        let host = src.starts_with('/') || src.starts_with('.');
        let (mut readonly, mut nocopy) = (None, false);
        for o in opts.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" | "rw" => {
                    let ro = o == "ro";
                    if readonly.is_some_and(|r| r != ro) {
                        return Err(bad("ro and rw conflict"));
                    }
                    readonly = Some(ro);
                }
                "nocopy" if !host => nocopy = true,
                // SELinux relabelling and propagation: nothing to do in a VM.
                "z" | "Z" | "rprivate" | "private" | "rslave" | "slave" | "shared" | "rshared" => {}
                _ => return Err(bad(&format!("unknown option {o:?} (use ro or rw)"))),
            }
        }
        let readonly = readonly.unwrap_or(false);
        if host {
            return BindMount::new(src, dst, readonly, cwd)
                .map(Self::Bind)
                .map_err(|why| bad(&why));
        }
        if !crate::volume::valid_name(src) {
            return Err(bad(&format!(
                "{src:?} is neither a host directory (/abs or ./rel) nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
            )));
        }
        valid_target(dst).map_err(|why| bad(&why))?;
        Ok(Self::Volume(VolumeMount {
            name: src.to_owned(),
            target: dst.to_owned(),
            readonly,
            nocopy,
        }))
    }
}

impl BindMount {
    fn new(src: &str, dst: &str, readonly: bool, cwd: &Path) -> Result<Self, String> {
        valid_target(dst)?;
        let path = cwd.join(src);
        let source = std::fs::canonicalize(&path)
            .map_err(|e| format!("the host path {}: {e}", path.display()))?;
        if !source.is_dir() {
            return Err(format!(
                "{} is not a directory: only directories can be shared",
                source.display()
            ));
        }
        Ok(Self {
            source: source.to_string_lossy().into_owned(),
            target: dst.to_owned(),
            readonly,
        })
    }
}

impl MountSpec {
    /// docker's `--mount`: type=tmpfs as [`TmpfsMount::parse_mount`],
    /// `type=bind,src=HOST_DIR,dst=PATH[,readonly]` or
    /// `type=volume,src=NAME,dst=PATH[,readonly][,volume-nocopy]`.
    pub fn parse(spec: &str, cwd: &Path) -> Result<Self, BadMount> {
        let kind = spec.split(',').find_map(|f| f.strip_prefix("type="));
        if kind == Some("volume") {
            return Self::parse_volume_mount(spec);
        }
        if kind != Some("bind") {
            return TmpfsMount::parse_mount(spec).map(Self::Tmpfs);
        }
        let bad = |why: String| BadMount::Mount {
            spec: spec.to_owned(),
            why,
        };
        let (mut src, mut dst, mut readonly) = (None, None, false);
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            match k {
                "type" => {}
                "src" | "source" => src = Some(v),
                "dst" | "destination" | "target" => dst = Some(v),
                "readonly" | "ro" if v.is_empty() || v == "true" || v == "1" => readonly = true,
                "bind-propagation" => {}
                _ => return Err(bad(format!("unknown field {k:?}"))),
            }
        }
        let (Some(src), Some(dst)) = (src, dst) else {
            return Err(bad("type=bind needs src= and dst=".into()));
        };
        BindMount::new(src, dst, readonly, cwd)
            .map(Self::Bind)
            .map_err(bad)
    }

    fn parse_volume_mount(spec: &str) -> Result<Self, BadMount> {
        let bad = |why: String| BadMount::Mount {
            spec: spec.to_owned(),
            why,
        };
        let (mut src, mut dst, mut readonly, mut nocopy) = (None, None, false, false);
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            let yes = v.is_empty() || v == "true" || v == "1";
            match k {
                "type" => {}
                "src" | "source" => src = Some(v),
                "dst" | "destination" | "target" => dst = Some(v),
                "readonly" | "ro" if yes => readonly = true,
                "volume-nocopy" if yes => nocopy = true,
                _ => return Err(bad(format!("unknown field {k:?}"))),
            }
        }
        let (Some(src), Some(dst)) = (src, dst) else {
            return Err(bad(
                "type=volume needs src=NAME and dst= (anonymous volumes are not supported)".into(),
            ));
        };
        if !crate::volume::valid_name(src) {
            return Err(bad(format!(
                "{src:?} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
            )));
        }
        valid_target(dst).map_err(bad)?;
        Ok(Self::Volume(VolumeMount {
            name: src.to_owned(),
            target: dst.to_owned(),
            readonly,
            nocopy,
        }))
    }
}

/// A tmpfs in the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Absolute path in the container.
    pub target: String,
    /// mount(8) options: `size=…`, `mode=…`, `noexec`, …
    pub options: Vec<String>,
}

/// The least memory a VM boots with: Debian's cloud kernel panics at boot
/// with 64 MiB and leaves 45 MiB free with 80 (measured under TCG).
pub const MIN_MEMORY_MIB: u32 = 96;

#[derive(Debug, thiserror::Error)]
pub enum BadMount {
    #[error(
        "invalid --tmpfs {0:?}: use PATH[:OPTIONS], PATH absolute (e.g. /tmp:size=64m,mode=1777)"
    )]
    Tmpfs(String),
    #[error("invalid tmpfs option {option:?} in {spec:?}: use size=, mode=, uid=, gid=, nr_inodes=, ro, rw, exec, noexec, suid, nosuid, dev, nodev")]
    TmpfsOption { spec: String, option: String },
    #[error("invalid --mount {spec:?}: {why}")]
    Mount { spec: String, why: String },
    #[error("invalid --volume {spec:?}: {why}")]
    Volume { spec: String, why: String },
}

fn tmpfs_option_ok(o: &str) -> bool {
    match o.split_once('=') {
        Some(("size" | "nr_inodes", v)) => {
            let v = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
        }
        Some(("mode", v)) => {
            !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b))
        }
        Some(("uid" | "gid", v)) => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
        Some(_) => false,
        None => matches!(
            o,
            "ro" | "rw" | "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev"
        ),
    }
}

impl TmpfsMount {
    /// docker's `--tmpfs PATH[:OPTIONS]`; without options, docker's
    /// `noexec,nosuid,nodev`.
    pub fn parse_flag(spec: &str) -> Result<Self, BadMount> {
        let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
        if !target.starts_with('/') || target.contains("/../") || target.ends_with("/..") {
            return Err(BadMount::Tmpfs(spec.to_owned()));
        }
        let mut options = vec!["noexec".to_owned(), "nosuid".into(), "nodev".into()];
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            if !tmpfs_option_ok(o) {
                return Err(BadMount::TmpfsOption {
                    spec: spec.to_owned(),
                    option: o.to_owned(),
                });
            }
            options.push(o.to_owned());
        }
        Ok(Self {
            target: target.to_owned(),
            options,
        })
    }

    /// docker's `--mount type=tmpfs,dst=PATH[,tmpfs-size=N][,tmpfs-mode=OCTAL][,readonly]`.
    pub fn parse_mount(spec: &str) -> Result<Self, BadMount> {
        let bad = |why: &str| BadMount::Mount {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        match spec.split(',').find_map(|f| f.strip_prefix("type=")) {
            Some("tmpfs") => {}
            _ => return Err(bad("type=tmpfs or type=bind is required")),
        }
        let mut target = None;
        let mut options = vec!["nosuid".to_owned(), "nodev".into()];
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            match k {
                "type" => {}
                "dst" | "destination" | "target" => target = Some(v),
                "tmpfs-size" => {
                    let o = format!("size={v}");
                    if !tmpfs_option_ok(&o) {
                        return Err(bad("tmpfs-size takes a size (e.g. 64m)"));
                    }
                    options.push(o);
                }
                "tmpfs-mode" => {
                    let o = format!("mode={v}");
                    if !tmpfs_option_ok(&o) {
                        return Err(bad("tmpfs-mode takes an octal mode (e.g. 1777)"));
                    }
                    options.push(o);
                }
                "readonly" | "ro" if v.is_empty() || v == "true" || v == "1" => {
                    options.push("ro".into())
                }
                _ => return Err(bad(&format!("unknown field {k:?}"))),
            }
        }
        let target = target
            .filter(|t| t.starts_with('/'))
            .ok_or_else(|| bad("dst=/absolute/path is required"))?;
        Ok(Self {
            target: target.to_owned(),
            options,
        })
    }
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
    fn tmpfs_flags_parse_as_docker() {
        let t = TmpfsMount::parse_flag("/tmp:size=32m,mode=1777").unwrap();
        assert_eq!(t.target, "/tmp");
        assert_eq!(
            t.options,
            ["noexec", "nosuid", "nodev", "size=32m", "mode=1777"]
        );
        assert_eq!(
            TmpfsMount::parse_flag("/run").unwrap().options,
            ["noexec", "nosuid", "nodev"]
        );
        let m =
            TmpfsMount::parse_mount("type=tmpfs,dst=/data,tmpfs-size=16m,tmpfs-mode=700").unwrap();
        assert_eq!(
            (m.target.as_str(), m.options.clone()),
            (
                "/data",
                vec![
                    "nosuid".into(),
                    "nodev".into(),
                    "size=16m".into(),
                    "mode=700".into()
                ]
            )
        );
        for bad in [
            "tmp",
            "/a:size=x",
            "/a:uid=root",
            "/a:bogus",
            "/a/..:size=1m",
        ] {
            assert!(TmpfsMount::parse_flag(bad).is_err(), "{bad}");
        }
        let cwd = Path::new("/");
        assert_eq!(
            MountSpec::parse("type=volume,src=pgdata,dst=/b,readonly,volume-nocopy", cwd).unwrap(),
            MountSpec::Volume(VolumeMount {
                name: "pgdata".into(),
                target: "/b".into(),
                readonly: true,
                nocopy: true
            })
        );
        assert_eq!(
            MountSpec::parse_volume_flag("data:/var/lib/db", cwd).unwrap(),
            MountSpec::Volume(VolumeMount {
                name: "data".into(),
                target: "/var/lib/db".into(),
                readonly: false,
                nocopy: false
            })
        );
        for bad in [
            "type=volume,dst=/b",
            "type=volume,src=a,dst=/b",
            "type=volume,src=ok,dst=rel",
            "type=volume,src=ok,dst=/x,bogus",
        ] {
            assert!(MountSpec::parse(bad, cwd).is_err(), "{bad}");
        }
        let b = MountSpec::parse("type=bind,src=/tmp,dst=/b,readonly", cwd).unwrap();
        assert_eq!(
            b,
            MountSpec::Bind(BindMount {
                source: std::fs::canonicalize("/tmp")
                    .unwrap()
                    .to_string_lossy()
                    .into(),
                target: "/b".into(),
                readonly: true
            })
        );
        let v = MountSpec::parse_volume_flag("./tmp:/t:ro", cwd).unwrap();
        assert!(
            matches!(&v, MountSpec::Bind(b) if b.readonly && b.target == "/t"),
            "{v:?}"
        );
        for bad in [
            "/tmp",
            "/tmp:rel",
            "/tmp:/",
            "a:/x",
            "-v:/x",
            "vol:/x:ro,rw",
            "/tmp:/x:nocopy",
            "/tmp:/x:rx",
            "/tmp:/x/../y",
            "/no-such-dir:/x",
        ] {
            assert!(MountSpec::parse_volume_flag(bad, cwd).is_err(), "{bad}");
        }
        assert!(TmpfsMount::parse_mount("type=tmpfs").is_err());
        assert!(TmpfsMount::parse_mount("type=tmpfs,dst=/x,tmpfs-mode=999").is_err());
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
