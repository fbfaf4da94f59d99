//! Readiness of a local cluster: every member in its role from the
//! coordinator's view, and a writable primary through the rw endpoint;
//! progress lines while waiting, the agent's log when one dies.

use std::time::{Duration, Instant};

use pgcluster_core::names::SUPERUSER_ROLE;

use super::app_objects::connect;
use super::error::LocalError;
use super::layout::ClusterRecord;
use super::prepare::{Prepared, pid_is_ours};
use super::targets::coordinator;
use crate::machine::{ClusterView, MemberName, MemberRole};

/// The cluster is ready: the lease holder is a healthy primary, every other
/// member a healthy replica following it. Returns a one-line progress text
/// otherwise.
pub fn readiness(view: &ClusterView, record: &ClusterRecord) -> Result<String, String> {
    let holder = view.lease.as_ref().and_then(|l| l.record.holder.clone());
    let mut parts = Vec::new();
    let mut ready = holder.is_some();
    for m in &record.members {
        let state = view.members.get(&MemberName::new(m.name.clone()));
        let text = match state {
            None => {
                ready = false;
                "starting".to_owned()
            }
            Some(s) => {
                let is_holder = holder.as_ref() == Some(&s.name);
                let ok = if is_holder {
                    s.role == MemberRole::Primary && s.healthy
                } else {
                    s.role == MemberRole::Replica && s.healthy && s.following == holder
                };
                ready &= ok;
                let role = format!("{:?}", s.role).to_lowercase();
                if ok {
                    role
                } else if is_holder {
                    format!("{role} (becoming primary)")
                } else {
                    format!("{role} (catching up)")
                }
            }
        };
        parts.push(format!("{}: {text}", m.name));
    }
    let line = parts.join(", ");
    if ready { Ok(line) } else { Err(line) }
}

/// Waits until [`readiness`] holds and a writable primary answers through
/// the rw port; `progress` gets a line whenever the state changes. Fails
/// when an agent dies or `timeout` passes.
pub async fn wait_ready(
    prepared: &Prepared,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), LocalError> {
    let layout = &prepared.layout;
    let record = layout.read_record()?;
    let coord = coordinator(layout, Duration::from_millis(500))?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        for m in &record.members {
            if let Some(pid) = m.agent_pid
                && !pid_is_ours(pid, Some(layout.root()))
            {
                let log = layout.agent_log(&m.name);
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                return Err(LocalError::AgentDied {
                    member: m.name.clone(),
                    log,
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
        }
        let line = match coord.read_now() {
            Ok(view) => match readiness(&view, &record) {
                Ok(line) => {
                    if rw_is_writable(record.rw_port, &prepared.superuser_password).await {
                        progress(&line);
                        return Ok(());
                    }
                    format!("{line} (waiting for the rw endpoint)")
                }
                Err(line) => line,
            },
            Err(e) => format!("coordinator: {e}"),
        };
        if line != last {
            progress(&line);
            last = line.clone();
        }
        if started.elapsed() > timeout {
            return Err(LocalError::NotReady {
                waited: timeout,
                detail: format!(
                    "{line}; see the agent logs in {}",
                    layout.root().join("members/*/agent.log").display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rw_is_writable(port: u16, password: &str) -> bool {
    let Ok(client) = connect(port, SUPERUSER_ROLE, password, "postgres").await else {
        return false;
    };
    matches!(
        client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map(|r| r.get::<_, bool>(0)),
        Ok(false)
    )
}
