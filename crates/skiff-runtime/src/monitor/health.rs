//! The healthcheck: the configured command, exec'd in the container every
//! interval, with docker's rules for what makes it healthy or unhealthy.

use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use crate::agent::{Agent, ProcessSpec};
use crate::container::config::HealthConfig;
use crate::container::state::{Health, HealthResult, HealthStatus};
use crate::signal::SIGKILL;
use crate::time::now_rfc3339;

/// Results kept in the state, as docker keeps five.
const KEEP: usize = 5;
/// Output kept per result.
const MAX_OUTPUT: usize = 4096;

/// Runs until aborted (the process exited).
pub(crate) async fn run(shared: Arc<Shared>, agent: Agent, cfg: HealthConfig) {
    let started = Instant::now();
    shared.update(|s| {
        s.health = Some(Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        })
    });
    loop {
        tokio::time::sleep(cfg.interval).await;
        let start = now_rfc3339();
        let id = format!("health-{}", shared.next());
        let (exit_code, output) = probe(&shared, &agent, &cfg, &id).await;
        let in_start_period = started.elapsed() < cfg.start_period;
        let result = HealthResult {
            start,
            end: now_rfc3339(),
            exit_code,
            output,
        };
        shared.update(|s| {
            let h = s.health.get_or_insert(Health {
                status: HealthStatus::Starting,
                failing_streak: 0,
                log: Vec::new(),
            });
            judge(h, exit_code == 0, in_start_period, cfg.retries);
            h.log.push(result);
            let excess = h.log.len().saturating_sub(KEEP);
            h.log.drain(..excess);
        });
    }
}

/// docker's rules: a pass is healthy at once; a failure counts unless it
/// falls in the start period, and `retries` of them in a row are unhealthy.
fn judge(h: &mut Health, passed: bool, in_start_period: bool, retries: u32) {
    if passed {
        h.failing_streak = 0;
        h.status = HealthStatus::Healthy;
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = HealthStatus::Unhealthy;
        }
    }
}

/// One run of the check: exit code (-1 when it could not run or timed out)
/// and the start of its output.
async fn probe(shared: &Shared, agent: &Agent, cfg: &HealthConfig, id: &str) -> (i32, String) {
    let p = &shared.config.process;
    let spec = ProcessSpec {
        id: id.to_owned(),
        args: cfg.test.clone(),
        env: p.env.clone(),
        cwd: p.cwd.clone(),
        user: p.user.clone(),
        tty: false,
        stdin: false,
        tty_size: None,
    };
    if let Err(e) = agent.create_process(&spec).await {
        return (-1, e.to_string());
    }
    let mut output = match agent.stdio(id, None).await {
        Ok(o) => o,
        Err(e) => return (-1, e.to_string()),
    };
    if let Err(e) = agent.start_process(id).await {
        return (-1, e.to_string());
    }
    let run = async {
        let mut text = Vec::new();
        while let Ok(Some((_, data))) = output.next().await {
            let room = MAX_OUTPUT.saturating_sub(text.len());
            text.extend_from_slice(&data[..data.len().min(room)]);
        }
        let code = agent.wait(id).await.map(|s| s.code).unwrap_or(-1);
        (code, String::from_utf8_lossy(&text).into_owned())
    };
    match tokio::time::timeout(cfg.timeout, run).await {
        Ok(r) => r,
        Err(_) => {
            let _ = agent.signal(id, SIGKILL).await;
            (
                -1,
                format!("Health check exceeded timeout ({:?})", cfg.timeout),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    #[test]
    fn passes_failures_and_the_start_period() {
        let mut h = health();
        judge(&mut h, false, true, 2);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        judge(&mut h, false, false, 2);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        judge(&mut h, false, false, 2);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        judge(&mut h, true, false, 2);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        judge(&mut h, false, false, 2);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
        let mut h = health();
        judge(&mut h, true, true, 3);
        assert_eq!(
            h.status,
            HealthStatus::Healthy,
            "a pass counts in the start period"
        );
    }
}
