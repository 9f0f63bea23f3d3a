//! `create`: a container from an image, not started. The image's base ext4 is
//! built once (cached) and the container gets a qcow2 overlay over it.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_oci::store::{ImageRecord, Store};

use super::config::{
    ContainerConfig, HealthConfig, MountSpec, ProcessConfig, RestartPolicy, TmpfsMount,
};
use super::state::ContainerState;
use super::{io, write_json, Container, ContainerError, Containers, Result, STATE_FILE};
use crate::image_config::{self, ImageHealthcheck, ImageProcess, Overrides};
use crate::network::ContainerNetwork;

/// What the user asked for, on top of the image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// The image as the user named it.
    pub image: String,
    pub overrides: Overrides,
    pub hostname: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub cpus: u32,
    pub memory_mib: u32,
    pub labels: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub health: HealthOptions,
    pub log_opts: Vec<String>,
    pub network: NetworkOptions,
    /// `--read-only`.
    pub readonly_root: bool,
    /// `--tmpfs PATH[:OPTS]`, as given.
    pub tmpfs: Vec<String>,
    /// `--mount …`, as given.
    pub mounts: Vec<String>,
    /// `-v HOST_DIR:DIR[:ro]`, as given.
    pub volumes: Vec<String>,
    /// `--privileged`, `--cap-*`, `--security-opt`, limits, as given.
    pub security: super::security_config::SecurityOptions,
    /// A build step: where the container's changes go (see
    /// [`ContainerConfig::changes_to`]).
    pub changes_to: Option<std::path::PathBuf>,
}

/// `--network`, `-p`, `-P`, `--dns*`, `--add-host`, as given.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// A network's name or id, `none`; None: the default network.
    pub network: Option<String>,
    pub aliases: Vec<String>,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `name:ip`.
    pub add_hosts: Vec<String>,
}

/// `--health-*` flags; unset ones come from the image's HEALTHCHECK.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u32>,
    pub disable: bool,
}

/// The container's network from the flags: checked now, so that a bad one
/// fails before anything is made.
fn network(
    paths: &crate::Paths,
    o: &NetworkOptions,
    image: &ImageProcess,
) -> Result<ContainerNetwork> {
    use crate::network::{ports, ExtraHost, NetworkMode, Networks, DEFAULT_NETWORK};
    let invalid = |m: String| ContainerError::Invalid(m);
    let mode = match o.network.as_deref() {
        Some("none") => NetworkMode::None,
        Some("host") => {
            return Err(invalid(
                "--network host is not available: each container has its own VM and kernel; publish ports with -p".into(),
            ))
        }
        Some(n) if n.starts_with("container:") => {
            return Err(invalid("--network container:… is not supported".into()))
        }
        Some("passt") | Some("pasta") => NetworkMode::User,
        Some("bridge") if rustix::process::geteuid().is_root() => NetworkMode::Bridge {
            network: DEFAULT_NETWORK.into(),
        },
        Some(n) if !rustix::process::geteuid().is_root() => {
            return Err(invalid(format!(
                "network {n}: skiff networks need root (a bridge and taps on the host); without root, containers get user-mode networking (--network passt, the default)"
            )))
        }
        Some(n) => {
            let found = Networks::new(paths)
                .find(n)
                .map_err(|e| invalid(e.to_string()))?;
            NetworkMode::Bridge {
                network: found.config.name,
            }
        }
        // Bridges and taps need root: a non-root user's containers get
        // user-mode networking, as with rootless podman.
        None if !rustix::process::geteuid().is_root() => NetworkMode::User,
        None => NetworkMode::Bridge {
            network: DEFAULT_NETWORK.into(),
        },
    };
    let mut mappings = Vec::new();
    for spec in &o.publish {
        mappings.extend(ports::parse_publish(spec).map_err(|e| invalid(e.to_string()))?);
    }
    if o.publish_all {
        for key in image.exposed_ports.iter().flat_map(|m| m.keys()) {
            for (port, protocol) in ports::parse_exposed(key).map_err(|e| invalid(e.to_string()))? {
                if !mappings
                    .iter()
                    .any(|m| m.container_port == port && m.protocol == protocol)
                {
                    mappings.push(ports::PortMapping {
                        host_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
                        host_port: 0,
                        container_port: port,
                        protocol,
                    });
                }
            }
        }
    }
    let user_network =
        matches!(&mode, NetworkMode::Bridge { network } if network != DEFAULT_NETWORK);
    if !o.aliases.is_empty() && !user_network {
        return Err(invalid(
            "--network-alias needs a user-defined network (skiff network create)".into(),
        ));
    }
    if !mappings.is_empty() && mode == NetworkMode::None {
        return Err(invalid(
            "published ports need a network: drop --network none".into(),
        ));
    }
    let mut extra_hosts = Vec::new();
    for h in &o.add_hosts {
        let (name, ip) = h
            .split_once(':')
            .filter(|(n, ip)| !n.is_empty() && ip.parse::<std::net::IpAddr>().is_ok())
            .ok_or_else(|| invalid(format!("invalid --add-host {h:?}: use name:ip")))?;
        extra_hosts.push(ExtraHost {
            name: name.to_owned(),
            ip: ip.to_owned(),
        });
    }
    for d in &o.dns {
        d.parse::<std::net::IpAddr>()
            .map_err(|_| invalid(format!("invalid --dns {d:?}: use an IP address")))?;
    }
    Ok(ContainerNetwork {
        mode,
        aliases: o.aliases.clone(),
        ports: mappings,
        dns: o.dns.clone(),
        dns_search: o.dns_search.clone(),
        dns_options: o.dns_options.clone(),
        extra_hosts,
    })
}

/// docker's default stop timeout.
const DEFAULT_STOP_TIMEOUT: u32 = 10;

/// Makes the container: its config, state and overlay. `build_progress` sees
/// the base filesystem being written when it is not cached yet.
pub fn create(
    containers: &Containers,
    store: &Store,
    record: &ImageRecord,
    o: &CreateOptions,
    build_progress: &mut dyn FnMut(u64, u64),
) -> Result<Container> {
    let id = skiff_util::id::random_hex::<32>();
    if let Some(name) = &o.name {
        if !valid_name(name) {
            return Err(ContainerError::BadName(name.clone()));
        }
        // Early, so that a taken name fails before any work; checked again below.
        check_name_free(containers, name)?;
    }
    let blob = store
        .read_small_blob(&record.config)
        .map_err(|e| ContainerError::Invalid(format!("reading the image config: {e}")))?;
    let image = ImageProcess::parse_runnable(&blob)
        .map_err(|e| ContainerError::Invalid(format!("{}: {e}", o.image)))?;
    let process = image_config::merge(&image, &o.overrides, &|k| std::env::var(k).ok())
        .map_err(|e| ContainerError::Invalid(format!("the command to run in {}: {e}", o.image)))?;
    let stop_signal = match o.stop_signal.as_deref().or(image.stop_signal.as_deref()) {
        Some(s) => crate::signal::parse(s).map_err(|e| ContainerError::Invalid(e.to_string()))?,
        None => crate::signal::SIGTERM,
    };
    crate::logs::LogOptions::parse(&o.log_opts)
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    let healthcheck = healthcheck(&o.health, image.healthcheck.as_ref())?;
    let network = network(containers.paths(), &o.network, &image)?;
    if o.memory_mib < super::config::MIN_MEMORY_MIB {
        return Err(ContainerError::Invalid(format!(
            "--memory is too little: a container's VM needs at least {}M",
            super::config::MIN_MEMORY_MIB
        )));
    }
    let mut tmpfs = Vec::new();
    for t in &o.tmpfs {
        tmpfs.push(TmpfsMount::parse_flag(t).map_err(|e| ContainerError::Invalid(e.to_string()))?);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let (mut binds, mut volumes) = (Vec::new(), Vec::new());
    let specs = o
        .volumes
        .iter()
        .map(|v| MountSpec::parse_volume_flag(v, &cwd))
        .chain(o.mounts.iter().map(|m| MountSpec::parse(m, &cwd)));
    for spec in specs {
        match spec.map_err(|e| ContainerError::Invalid(e.to_string()))? {
            MountSpec::Tmpfs(t) => tmpfs.push(t),
            MountSpec::Bind(b) => binds.push(b),
            MountSpec::Volume(v) => volumes.push(v),
        }
    }
    let mut targets = std::collections::BTreeSet::new();
    for t in tmpfs
        .iter()
        .map(|t| &t.target)
        .chain(binds.iter().map(|b| &b.target))
        .chain(volumes.iter().map(|v| &v.target))
    {
        if !targets.insert(t.trim_end_matches('/')) {
            return Err(ContainerError::Invalid(format!(
                "duplicate mount point {t}: give each mount its own container path"
            )));
        }
    }
    let mut volume_names = std::collections::BTreeSet::new();
    for v in &volumes {
        if !volume_names.insert(&v.name) {
            return Err(ContainerError::Invalid(format!(
                "volume {} is mounted twice: an ext4 volume has one mount point per container",
                v.name
            )));
        }
    }
    // As docker: naming a volume that does not exist creates it.
    for v in &volumes {
        crate::volume::ensure(
            containers.paths(),
            &v.name,
            crate::volume::DEFAULT_SIZE,
            &Default::default(),
        )
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    }
    if !binds.is_empty() && !rustix::process::geteuid().is_root() {
        return Err(ContainerError::Invalid(
            "host directories (-v, --mount type=bind) need root for now: virtiofsd runs as root"
                .into(),
        ));
    }
    let security = super::security_config::SecurityConfig::from_options(&o.security, &cwd)
        .map_err(|e| ContainerError::Invalid(skiff_util::error::chain(&e)))?;
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(o.labels.clone());

    let (base, _) = crate::rootfs::cached(store, record, &Default::default(), build_progress)
        .map_err(|e| {
            ContainerError::Invalid(format!("building the base filesystem of {}: {e}", o.image))
        })?;

    let config = ContainerConfig {
        id: id.clone(),
        name: String::new(),
        image: record.name.clone().unwrap_or_else(|| o.image.clone()),
        image_digest: record.digest.to_string(),
        image_id: record.config.to_string(),
        process: ProcessConfig {
            args: process.args,
            env: process.env,
            cwd: process.cwd,
            user: process.user,
            tty: o.tty,
            open_stdin: o.open_stdin,
            stdin_once: o.stdin_once,
        },
        hostname: o.hostname.clone().unwrap_or_else(|| id[..12].to_owned()),
        cpus: o.cpus.max(1),
        memory_mib: o.memory_mib,
        labels,
        restart: o.restart,
        auto_remove: o.auto_remove,
        stop_signal,
        stop_timeout: o.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        healthcheck,
        log_opts: o.log_opts.clone(),
        created: crate::time::now_rfc3339(),
        network,
        readonly_root: o.readonly_root,
        tmpfs,
        binds,
        volumes,
        security,
        changes_to: o.changes_to.clone(),
    };

    let _names = containers.names_lock()?;
    let all = containers.list()?;
    let name = match &o.name {
        Some(n) => {
            if let Some(other) = all.iter().find(|c| c.name() == n) {
                return Err(ContainerError::NameInUse {
                    name: n.clone(),
                    id: other.short_id().to_owned(),
                });
            }
            n.clone()
        }
        None => unique_default_name(&id, &all),
    };
    let config = ContainerConfig { name, ..config };
    let dir = containers.dir.join(&id);
    std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
    let made = (|| {
        crate::overlay::create(&base, &dir.join("overlay.qcow2"))
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        write_json(&dir.join(STATE_FILE), &ContainerState::created())?;
        // Last: a directory without config.json is not a container yet.
        write_json(&dir.join("config.json"), &config)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Container::load(&dir)
}

fn check_name_free(containers: &Containers, name: &str) -> Result<()> {
    match containers.list()?.into_iter().find(|c| c.name() == name) {
        Some(other) => Err(ContainerError::NameInUse {
            name: name.to_owned(),
            id: other.short_id().to_owned(),
        }),
        None => Ok(()),
    }
}

pub(crate) fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && n.len() <= 128
}

/// A name like docker's: adjective_noun, from the id.
pub fn default_name(id: &str) -> String {
    const A: [&str; 16] = [
        "brave", "calm", "eager", "jolly", "keen", "lucid", "quiet", "swift", "bold", "crisp",
        "deft", "fond", "gentle", "happy", "nimble", "proud",
    ];
    const N: [&str; 16] = [
        "otter", "heron", "lynx", "orca", "wren", "ibex", "puffin", "seal", "badger", "crane",
        "finch", "gecko", "marten", "newt", "raven", "stoat",
    ];
    let n = u32::from_str_radix(&id[..id.len().min(6)], 16).unwrap_or(0) as usize;
    format!("{}_{}", A[n % 16], N[(n / 16) % 16])
}

fn unique_default_name(id: &str, all: &[Container]) -> String {
    let base = default_name(id);
    let taken = |n: &str| all.iter().any(|c| c.name() == n);
    if !taken(&base) {
        return base;
    }
    (4..=id.len())
        .map(|k| format!("{base}_{}", &id[..k]))
        .find(|n| !taken(n))
        .unwrap_or_else(|| id.to_owned())
}

/// The healthcheck: the flags, else the image's, else none.
fn healthcheck(
    o: &HealthOptions,
    image: Option<&ImageHealthcheck>,
) -> Result<Option<HealthConfig>> {
    if o.disable {
        return Ok(None);
    }
    let from_image = image.filter(|h| !h.test.is_empty());
    let test = match (&o.cmd, from_image) {
        (Some(cmd), _) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
        (None, Some(h)) => match h.test.first().map(String::as_str) {
            Some("NONE") => return Ok(None),
            Some("CMD") => h.test[1..].to_vec(),
            Some("CMD-SHELL") => {
                vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")]
            }
            _ => {
                return Err(ContainerError::Invalid(format!(
                    "the image's HEALTHCHECK test {:?} is neither NONE, CMD nor CMD-SHELL",
                    h.test
                )))
            }
        },
        (None, None) => return Ok(None),
    };
    if test.is_empty() {
        return Ok(None);
    }
    let ns = |v: u64| (v > 0).then(|| Duration::from_nanos(v));
    let mut h = HealthConfig::with_defaults(test);
    if let Some(i) = from_image {
        h.interval = ns(i.interval).unwrap_or(h.interval);
        h.timeout = ns(i.timeout).unwrap_or(h.timeout);
        h.start_period = ns(i.start_period).unwrap_or(h.start_period);
        if i.retries > 0 {
            h.retries = i.retries;
        }
    }
    h.interval = o.interval.unwrap_or(h.interval);
    h.timeout = o.timeout.unwrap_or(h.timeout);
    h.start_period = o.start_period.unwrap_or(h.start_period);
    h.retries = o.retries.unwrap_or(h.retries).max(1);
    if h.interval.is_zero() || h.timeout.is_zero() {
        return Err(ContainerError::Invalid(
            "--health-interval and --health-timeout must be more than 0".into(),
        ));
    }
    Ok(Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        for bad in ["", "-x", "_x", "a b", "a/b", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
        let id = "0123456789abcdef".repeat(4);
        assert!(valid_name(&default_name(&id)));
    }

    #[test]
    fn healthcheck_from_flags_image_and_none() {
        let img = ImageHealthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            interval: 5_000_000_000,
            timeout: 0,
            start_period: 0,
            retries: 2,
        };
        let h = healthcheck(&HealthOptions::default(), Some(&img))
            .unwrap()
            .unwrap();
        assert_eq!(h.test, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(h.interval, Duration::from_secs(5));
        assert_eq!(h.timeout, Duration::from_secs(30));
        assert_eq!(h.retries, 2);
        let flags = HealthOptions {
            cmd: Some("true".into()),
            interval: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let h = healthcheck(&flags, Some(&img)).unwrap().unwrap();
        assert_eq!(h.test, ["/bin/sh", "-c", "true"]);
        assert_eq!((h.interval, h.retries), (Duration::from_secs(2), 2));
        let none = ImageHealthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert!(healthcheck(&HealthOptions::default(), Some(&none))
            .unwrap()
            .is_none());
        let cmd = ImageHealthcheck {
            test: vec!["CMD".into(), "/bin/check".into(), "-q".into()],
            ..Default::default()
        };
        assert_eq!(
            healthcheck(&HealthOptions::default(), Some(&cmd))
                .unwrap()
                .unwrap()
                .test,
            ["/bin/check", "-q"]
        );
        let off = HealthOptions {
            disable: true,
            ..Default::default()
        };
        assert!(healthcheck(&off, Some(&img)).unwrap().is_none());
        assert!(healthcheck(&HealthOptions::default(), None)
            .unwrap()
            .is_none());
    }
}
