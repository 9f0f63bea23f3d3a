//! `exec`: another process in the running container, with its own stdio or
//! terminal and exit code.

use super::attach::{Session, SessionEvent};
use super::{Container, ContainerError, Result};
use crate::agent::ProcessSpec;
use crate::monitor::client;
use crate::monitor::protocol::Request;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// KEY=VALUE on top of the container's environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub tty_size: Option<(u16, u16)>,
    /// Start it and return (`exec -d`).
    pub detach: bool,
}

/// Starts the process; the session ends with its exit. A command that cannot
/// run is an error with its exit code (126/127).
pub async fn exec(c: &Container, o: &ExecOptions) -> Result<(Session, u32)> {
    if !c.status().can_exec() {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    if o.args.is_empty() {
        return Err(ContainerError::Invalid("exec needs a command".into()));
    }
    let p = &c.config.process;
    let mut env = p.env.clone();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let process = ProcessSpec {
        id: String::new(),
        args: o.args.clone(),
        env,
        cwd: o.workdir.clone().unwrap_or_else(|| p.cwd.clone()),
        user: o.user.clone().unwrap_or_else(|| p.user.clone()),
        tty: o.tty,
        stdin: o.stdin,
        tty_size: o.tty_size,
    };
    let (r, w) = client::request(
        c,
        &Request::Exec {
            process,
            detach: o.detach,
        },
    )
    .await?;
    let mut session = Session::new(c, r, w, false);
    match session.next().await? {
        Some(SessionEvent::Started(pid)) => Ok((session, pid)),
        _ => Err(ContainerError::Monitor {
            name: c.name().to_owned(),
            message: "the exec ended before it started".into(),
        }),
    }
}
