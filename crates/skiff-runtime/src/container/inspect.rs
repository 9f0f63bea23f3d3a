//! `inspect`: a container as docker's `inspect` shows one, so that scripts
//! written for docker (`.State.Status`, `.Config.Env`, …) find their fields.

use serde_json::{json, Value};

use super::state::ContainerStatus;
use super::Container;

pub fn inspect(c: &Container) -> Value {
    let cfg = &c.config;
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
            "NanoCpus": u64::from(cfg.cpus) * 1_000_000_000,
            "Memory": u64::from(cfg.memory_mib) << 20,
            "LogConfig": { "Type": "json-file", "Config": cfg.log_opts.iter().filter_map(|o| o.split_once('=')).collect::<std::collections::BTreeMap<_, _>>() },
        },
        "Mounts": [],
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
        "NetworkSettings": {},
    })
}
