//! Stopping a local cluster by its recorded PIDs only: SIGTERM, a bounded
//! wait, SIGKILL for what is left and SIGQUIT for postmasters those left.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::error::LocalError;
use super::layout::Layout;
use super::prepare::live_pids;

/// What [`stop`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// PIDs that got SIGTERM and exited.
    pub stopped: Vec<u32>,
    /// PIDs that had to be killed.
    pub killed: Vec<u32>,
    /// Postmasters that ran without their agent and were stopped by `down` itself.
    pub servers: Vec<u32>,
}

/// Stops a local cluster: SIGTERM to every recorded PID that is still ours
/// (the agents stop PostgreSQL with a fast shutdown), waits up to `timeout`,
/// then SIGKILLs what is left; then stops every postmaster of the cluster's
/// data directories that still runs, agent or not. Clears the PIDs in
/// `cluster.json`. Never signals anything else.
pub async fn stop(layout: &Layout, timeout: Duration) -> Result<StopReport, LocalError> {
    // Nothing may restart an agent while the cluster stops.
    layout.update_record(|r| r.stopping = true)?;
    let record = layout.read_record()?;
    let pids = live_pids(layout, &record);
    for pid in &pids {
        signal(*pid, Signal::SIGTERM);
    }
    let started = Instant::now();
    let mut left = pids.clone();
    while !left.is_empty() && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left.retain(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p));
    }
    let mut report = StopReport {
        stopped: pids.iter().copied().filter(|p| !left.contains(p)).collect(),
        killed: Vec::new(),
        servers: Vec::new(),
    };
    for pid in &left {
        signal(*pid, Signal::SIGKILL);
        report.killed.push(*pid);
    }
    // Every server of the cluster that still runs (its agent was killed,
    // hung, or never answered SIGTERM): a fast shutdown, then immediate.
    for m in &record.members {
        let data = layout.member_layout(&m.name).data_dir;
        if let Some(pid) = crate::agent::supervise::postmaster_of(&data) {
            stop_server(pid, &data).await;
            report.servers.push(pid);
        }
    }
    layout.update_record(|r| {
        for m in &mut r.members {
            m.agent_pid = None;
        }
        r.router_pid = None;
        r.up_pid = None;
        r.stopping = false;
    })?;
    // Every agent is gone: the runtime copy of the lease would only be stale
    // by the next `up` (which starts from the durable copy).
    layout.clear_runtime()?;
    Ok(report)
}

/// Stops a postmaster found by its own pid file: SIGINT (fast shutdown),
/// SIGQUIT after 10 s. Its fencer, if stopped, is continued so it can exit.
async fn stop_server(pid: u32, data: &Path) {
    tracing::warn!(pid, data_dir = %data.display(), "stopping a server that runs without its agent");
    signal(pid, Signal::SIGINT);
    let fencer = crate::fence::fencer::parent_of(i32::try_from(pid).unwrap_or(i32::MAX))
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"fence"))
        });
    let started = Instant::now();
    let mut quit = false;
    while crate::agent::supervise::postmaster_of(data) == Some(pid)
        && started.elapsed() < Duration::from_secs(20)
    {
        if !quit && started.elapsed() >= Duration::from_secs(10) {
            signal(pid, Signal::SIGQUIT);
            quit = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(f) = fencer {
        signal(f, Signal::SIGCONT);
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}
