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
}

/// Stops a local cluster: SIGTERM to every recorded PID that is still ours
/// (the agents stop PostgreSQL with a fast shutdown), waits up to `timeout`,
/// then SIGKILLs what is left (and SIGQUITs the postmasters those agents
/// left). Clears the PIDs in `cluster.json`. Never signals anything else.
pub async fn stop(layout: &Layout, timeout: Duration) -> Result<StopReport, LocalError> {
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
    };
    for pid in &left {
        signal(*pid, Signal::SIGKILL);
        report.killed.push(*pid);
    }
    if !left.is_empty() {
        // Their postmasters may still run: fence them by the PID in their own pid file.
        for m in &record.members {
            let pidfile = layout
                .member_layout(&m.name)
                .data_dir
                .join("postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
            {
                let data = layout.member_layout(&m.name).data_dir;
                if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c).contains(data.to_string_lossy().as_ref())
                }) {
                    signal(pid, Signal::SIGQUIT);
                }
            }
        }
    }
    layout.update_record(|r| {
        for m in &mut r.members {
            m.agent_pid = None;
        }
        r.router_pid = None;
        r.up_pid = None;
    })?;
    // Every agent is gone: the runtime copy of the lease would only be stale
    // by the next `up` (which starts from the durable copy).
    layout.clear_runtime()?;
    Ok(report)
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
