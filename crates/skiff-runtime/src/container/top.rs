//! `top`: the container's processes, as `ps -ef` shows them.

use std::time::{Duration, SystemTime};

use super::{Container, ContainerError, Result};
use crate::agent::ProcessInfo;
use crate::monitor::client;
use crate::monitor::protocol::{Event, Request};

/// A table: titles and one row per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

pub async fn top(c: &Container) -> Result<Top> {
    if !c.status().can_exec() {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    let Event::Top { processes, now } = client::call(c, &Request::Top).await? else {
        return Err(ContainerError::Monitor {
            name: c.name().to_owned(),
            message: "unexpected answer to top".into(),
        });
    };
    let wall_now = SystemTime::now();
    Ok(Top {
        titles: ["UID", "PID", "PPID", "STIME", "TTY", "TIME", "CMD"]
            .map(String::from)
            .to_vec(),
        processes: processes.iter().map(|p| row(p, now, wall_now)).collect(),
    })
}

fn row(p: &ProcessInfo, guest_now: Duration, wall_now: SystemTime) -> Vec<String> {
    let age = guest_now.saturating_sub(p.started);
    let started = wall_now.checked_sub(age).unwrap_or(wall_now);
    let (hour, minute) = crate::time::hour_minute(started);
    let t = p.cpu_time.as_secs();
    vec![
        if p.user.is_empty() {
            p.uid.to_string()
        } else {
            p.user.clone()
        },
        p.pid.to_string(),
        p.ppid.to_string(),
        format!("{hour:02}:{minute:02}"),
        if p.tty.is_empty() {
            "?".into()
        } else {
            p.tty.clone()
        },
        format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60),
        p.args.join(" "),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_as_ps_ef() {
        let p = ProcessInfo {
            pid: 7,
            ppid: 1,
            uid: 1000,
            user: String::new(),
            state: "S".into(),
            cpu_time: Duration::from_secs(3723),
            rss_bytes: 0,
            started: Duration::from_secs(5),
            args: vec!["sleep".into(), "100".into()],
            tty: String::new(),
        };
        let r = row(
            &p,
            Duration::from_secs(65),
            SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
        );
        assert_eq!(r, ["1000", "7", "1", "00:59", "?", "01:02:03", "sleep 100"]);
    }
}
