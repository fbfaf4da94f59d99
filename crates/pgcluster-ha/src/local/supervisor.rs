//! Keeps a local cluster's agents running, the way systemd or a kubelet
//! would: an agent that died (crash, `kill -9`, OOM) is started again with
//! back-off, its restart counted in `cluster.json` and logged. The first
//! wait is two lease durations plus a loop ([`first_restart`]): a dead
//! primary's lease expires and a replica takes over first, so a restart
//! never races a failover (and a crash-looping primary cannot flap the
//! lease); then the wait doubles, to at least 30 s, reset after a minute up. The restarted agent re-joins its
//! server as a replica (rewind or re-clone) like any returning member.
//! Runs inside whatever process lives as long as the cluster: the
//! foreground `pgcluster up`, or the detached router.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::layout::{Layout, LayoutError};
use super::prepare::pid_is_ours;
use super::spawn::spawn_agent;

/// How often the agents are checked: each check reads the record and each
/// agent's command line, and the first restart waits seconds anyway.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A restart that stays up this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// The first wait before restarting an agent of a cluster with these
/// timings: two lease durations and a loop.
pub fn first_restart(timings: &pgcluster_core::timing::FailoverTimings) -> Duration {
    timings.lease_duration * 2 + timings.loop_interval
}

/// The wait before the next restart after `in_a_row` restarts that did not
/// stay up: `first`, doubling, at most 30 s (or `first` if that is longer).
pub fn backoff(first: Duration, in_a_row: u32) -> Duration {
    (first * (1u32 << in_a_row.min(6))).min(first.max(Duration::from_secs(30)))
}

#[derive(Default)]
struct Watch {
    in_a_row: u32,
    started: Option<Instant>,
    down_since: Option<Instant>,
}

/// Watches the agents of the cluster in `layout` until its record is gone;
/// restarts a recorded agent that no longer runs (never while `down` is
/// stopping the cluster). `exe` is the `pgcluster` binary.
pub async fn supervise(layout: Layout, exe: PathBuf, first: Duration) {
    let mut watch: BTreeMap<String, Watch> = BTreeMap::new();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let record = match layout.read_record() {
            Ok(r) => r,
            Err(LayoutError::NoCluster { .. }) => return,
            Err(error) => {
                tracing::warn!(%error, "supervisor: could not read the cluster record");
                continue;
            }
        };
        if record.stopping {
            continue;
        }
        for m in &record.members {
            let w = watch.entry(m.name.clone()).or_default();
            let Some(pid) = m.agent_pid else {
                continue;
            };
            if pid_is_ours(pid, Some(layout.root())) {
                w.down_since = None;
                if w.started.is_some_and(|s| s.elapsed() >= RESET_AFTER) {
                    w.in_a_row = 0;
                }
                continue;
            }
            let since = *w.down_since.get_or_insert_with(Instant::now);
            let wait = backoff(first, w.in_a_row);
            if since.elapsed() < wait {
                continue;
            }
            match spawn_agent(&layout, &m.name, &exe) {
                Ok(new) => {
                    w.in_a_row += 1;
                    w.started = Some(Instant::now());
                    w.down_since = None;
                    let restarts = m.restarts + 1;
                    let _ = layout.update_record(|r| {
                        if let Some(rec) = r.members.iter_mut().find(|x| x.name == m.name) {
                            rec.restarts = restarts;
                        }
                    });
                    tracing::warn!(member = %m.name, old_pid = pid, new_pid = new, restarts, next_backoff_s = backoff(first, w.in_a_row).as_secs(), "the agent had stopped; restarted it");
                }
                Err(error) => {
                    tracing::warn!(member = %m.name, %error, "could not restart the agent")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Back-off doubles from the first wait and stops at 30 s.
    #[test]
    fn backoff_doubles_to_a_cap() {
        let first = Duration::from_millis(4250);
        let ms: Vec<u128> = (0..5).map(|n| backoff(first, n).as_millis()).collect();
        assert_eq!(ms, [4250, 8500, 17000, 30000, 30000]);
        // A first wait past 30 s is the cap itself.
        assert_eq!(backoff(Duration::from_secs(45), 3), Duration::from_secs(45));
    }

    /// The first restart waits out two leases and a loop (defaults: 4.25 s).
    #[test]
    fn first_restart_outlasts_a_failover() {
        let t = pgcluster_core::timing::FailoverTimings::default();
        assert_eq!(first_restart(&t), t.lease_duration * 2 + t.loop_interval);
        assert!(first_restart(&t) > t.lease_duration + t.loop_interval);
    }
}
