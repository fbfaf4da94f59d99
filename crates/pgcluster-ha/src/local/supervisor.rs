//! Keeps a local cluster's agents running, the way systemd or a kubelet
//! would: an agent that died (crash, `kill -9`, OOM) is started again with
//! back-off (1 s, doubling to 30 s; reset after a minute up), its restart
//! counted in `cluster.json` and logged. The restarted agent re-joins its
//! server as a replica (rewind or re-clone) like any returning member.
//! Runs inside whatever process lives as long as the cluster: the
//! foreground `pgcluster up`, or the detached router.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::layout::{Layout, LayoutError};
use super::prepare::pid_is_ours;
use super::spawn::spawn_agent;

/// How often the agents are checked.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// A restart that stays up this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// The wait before the next restart after `in_a_row` restarts that did not
/// stay up: 1 s, 2 s, 4 s, ... at most 30 s.
pub fn backoff(in_a_row: u32) -> Duration {
    Duration::from_secs(1u64 << in_a_row.min(5)).min(Duration::from_secs(30))
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
pub async fn supervise(layout: Layout, exe: PathBuf) {
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
            let wait = backoff(w.in_a_row);
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
                    tracing::warn!(member = %m.name, old_pid = pid, new_pid = new, restarts, next_backoff_s = backoff(w.in_a_row).as_secs(), "the agent had stopped; restarted it");
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

    /// Back-off doubles from 1 s and stops at 30 s.
    #[test]
    fn backoff_doubles_to_a_cap() {
        let secs: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
