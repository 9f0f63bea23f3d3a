//! `inspect`: a container as docker's `inspect` shows one, so that scripts
//! written for docker (`.State.Status`, `.Config.Env`, …) find their fields.

use serde_json::{json, Value};

use super::state::ContainerStatus;
use super::Container;

/// docker's HostConfig.SecurityOpt form of what was chosen.
fn security_opts(sec: &super::security_config::SecurityConfig) -> Vec<String> {
    use super::security_config::SeccompChoice;
    let mut opts = Vec::new();
    if sec.no_new_privileges {
        opts.push("no-new-privileges".to_owned());
    }
    match &sec.seccomp {
        SeccompChoice::Default => {}
        SeccompChoice::Unconfined => opts.push("seccomp=unconfined".into()),
        SeccompChoice::Profile { path, .. } => opts.push(format!("seccomp={path}")),
    }
    opts
}

pub fn inspect(c: &Container) -> Value {
    let cfg = &c.config;
    let sec = &cfg.security;
    let st = &c.state;
    let zero = "0001-01-01T00:00:00Z";
    let health = st.health.as_ref().map(|h| {
        json!({
            "Status": h.status.as_str(),
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|r| json!({
                "Start": r.start, "End": r.end, "ExitCode": r.exit_code, "Output": r.output,
            })).collect::<Vec<_>>(),
        })
    });
    let mut state = json!({
        "Status": match st.status {
            // docker's vocabulary: a booting VM counts as running.
            ContainerStatus::Starting | ContainerStatus::Stopping => "running",
            s => s.as_str(),
        },
        "Running": matches!(st.status, ContainerStatus::Running | ContainerStatus::Starting | ContainerStatus::Stopping),
        "Paused": false,
        "Restarting": st.status == ContainerStatus::Restarting,
        "OOMKilled": false,
        "Dead": false,
        "Pid": st.pid.unwrap_or(0),
        "ExitCode": st.exit_code.unwrap_or(0),
        "Error": st.error.clone().unwrap_or_default(),
        "StartedAt": st.started_at.clone().unwrap_or_else(|| zero.into()),
        "FinishedAt": st.finished_at.clone().unwrap_or_else(|| zero.into()),
        "MonitorPid": st.monitor_pid.unwrap_or(0),
        "SandboxPid": st.sandbox_pid.unwrap_or(0),
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let (path, args) = cfg
        .process
        .args
        .split_first()
        .map(|(p, a)| (p.clone(), a.to_vec()))
        .unwrap_or_default();
    let health_cfg = cfg.healthcheck.as_ref().map(|h| {
        json!({
            "Test": h.test,
            "Interval": h.interval.as_nanos() as u64,
            "Timeout": h.timeout.as_nanos() as u64,
            "StartPeriod": h.start_period.as_nanos() as u64,
            "Retries": h.retries,
        })
    });
    json!({
        "Id": cfg.id,
        "Created": cfg.created,
        "Path": path,
        "Args": args,
        "State": state,
        "Image": cfg.image_id,
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "Driver": "skiff-vm",
        "LogPath": c.log_path(),
        "HostConfig": {
            "RestartPolicy": {
                "Name": match cfg.restart {
                    super::config::RestartPolicy::OnFailure { .. } => "on-failure".to_string(),
                    p => p.to_string(),
                },
                "MaximumRetryCount": match cfg.restart {
                    super::config::RestartPolicy::OnFailure { max_retries } => max_retries,
                    _ => 0,
                },
            },
            "AutoRemove": cfg.auto_remove,
            "ReadonlyRootfs": cfg.readonly_root,
            "Tmpfs": cfg.tmpfs.iter().map(|t| (t.target.clone(), t.options.join(","))).collect::<std::collections::BTreeMap<_, _>>(),
            "NanoCpus": u64::from(cfg.cpus) * 1_000_000_000,
            "Memory": u64::from(cfg.memory_mib) << 20,
            "LogConfig": { "Type": "json-file", "Config": cfg.log_opts.iter().filter_map(|o| o.split_once('=')).collect::<std::collections::BTreeMap<_, _>>() },
            "Privileged": sec.privileged,
            "Capabilities": sec.capabilities.names(),
            "SecurityOpt": security_opts(sec),
            "PidsLimit": sec.pids_limit,
            "Ulimits": sec.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "ShmSize": if sec.shm_size == 0 { super::security_config::DEFAULT_SHM_SIZE } else { sec.shm_size },
            "Sysctls": sec.sysctls.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        },
        "Mounts": cfg.tmpfs.iter().map(|t| json!({
            "Type": "tmpfs",
            "Destination": t.target,
            "Options": t.options,
            "RW": !t.options.iter().any(|o| o == "ro"),
        })).chain(cfg.binds.iter().map(|b| json!({
            "Type": "bind",
            "Source": b.source,
            "Destination": b.target,
            "RW": !b.readonly,
        }))).chain(cfg.volumes.iter().map(|v| json!({
            "Type": "volume",
            "Name": v.name,
            "Source": crate::volume::load(&crate::Paths::of_container_dir(c.dir()), &v.name).map(|vol| vol.disk().display().to_string()).unwrap_or_default(),
            "Destination": v.target,
            "Driver": "local",
            "RW": !v.readonly,
        }))).collect::<Vec<_>>(),
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.process.user,
            "Tty": cfg.process.tty,
            "OpenStdin": cfg.process.open_stdin,
            "StdinOnce": cfg.process.stdin_once,
            "Env": cfg.process.env,
            "Cmd": cfg.process.args,
            "Image": cfg.image,
            "WorkingDir": cfg.process.cwd,
            "Labels": cfg.labels,
            "StopSignal": crate::signal::name(cfg.stop_signal),
            "StopTimeout": cfg.stop_timeout,
            "Healthcheck": health_cfg,
        },
        "ImageDigest": cfg.image_digest,
        "NetworkSettings": network_settings(c),
    })
}

/// The published ports in docker's shape: `{"80/tcp": [{HostIp, HostPort}]}`.
pub fn ports_json(ports: &[crate::network::PortMapping]) -> Value {
    let mut out = serde_json::Map::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = out.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({
                "HostIp": p.host_ip.to_string(),
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
            }));
        }
    }
    Value::Object(out)
}

fn network_settings(c: &Container) -> Value {
    let spec = &c.config.network;
    let paths = crate::Paths::of_container_dir(c.dir());
    let lease = crate::network::lease_of(&paths, c.id(), spec);
    let running = c.status().is_active();
    // Bound ports while it runs (what `port` shows); as asked otherwise.
    let ports = if running {
        ports_json(&super::port::ports(c))
    } else {
        ports_json(&spec.ports)
    };
    let mut networks = serde_json::Map::new();
    let (mut ip, mut prefix, mut gateway, mut mac) =
        (String::new(), 0, String::new(), String::new());
    if let Some((net, l)) = &lease {
        ip = l.ip.to_string();
        prefix = net.subnet.prefix_len();
        gateway = net.gateway.to_string();
        mac = l.mac.clone();
        networks.insert(
            net.name.clone(),
            json!({
                "NetworkID": net.id,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "Gateway": gateway,
                "MacAddress": mac,
                "Aliases": spec.aliases,
                "DNSNames": l.names,
            }),
        );
    }
    if spec.mode == crate::network::NetworkMode::User {
        networks.insert(
            "passt".into(),
            json!({
                "IPAddress": crate::network::passt::GUEST_IP.to_string(),
                "IPPrefixLen": 24,
                "Gateway": crate::network::passt::GATEWAY.to_string(),
                "Private": true,
                "Note": "user-mode networking (passt): this address is private to the container's VM; reach it through published ports",
            }),
        );
    }
    json!({
        "NetworkMode": spec.mode_name(),
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "Gateway": gateway,
        "MacAddress": mac,
        "Ports": ports,
        "Networks": networks,
    })
}
