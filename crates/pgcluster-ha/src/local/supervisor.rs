//! Keeps a local cluster's agents running, the way systemd or a kubelet
//! would: an agent that died (crash, `kill -9`, OOM) is started again with
//! back-off, its restart counted in `cluster.json` and logged. The first
//! wait is two lease durations plus a loop ([`first_restart`]): a dead
//! primary's lease expires and a replica takes over first, so a restart
//! never races a failover (and a crash-looping primary cannot flap the
//! lease); then the wait doubles, to at least 30 s, reset after a minute up. The restarted agent re-joins its
//! server as a replica (rewind or re-clone) like any returning member.
//! Runs inside whatever process lives as long as the cluster: the
//! foreground `pgcluster up`, or the detached router. It sleeps until an
//! agent exits (a pidfd per agent becomes readable), a restart is due, or a
//! slow re-check of the record (every 10 s); it does not poll the agents,
//! so an idle cluster's router stays asleep.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;

use super::layout::{Layout, LayoutError};
use super::prepare::pid_is_ours;
use super::spawn::spawn_agent;

/// How often the record is read again with no agent exit in between: to
/// notice agents that someone else started or recorded.
const RECHECK: Duration = Duration::from_secs(10);
/// How often the agents are checked where a process cannot be watched
/// (no pidfd): each check reads the record and each agent's command line,
/// and the first restart waits seconds anyway.
const POLL_EVERY: Duration = Duration::from_secs(1);
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
    let mut exits = Exits::default();
    loop {
        let record = match layout.read_record() {
            Ok(r) => r,
            Err(LayoutError::NoCluster { .. }) => return,
            Err(error) => {
                tracing::warn!(%error, "supervisor: could not read the cluster record");
                let _ = exits.wait(POLL_EVERY).await;
                continue;
            }
        };
        let mut due = RECHECK;
        for m in record.members.iter().filter(|_| !record.stopping) {
            let w = watch.entry(m.name.clone()).or_default();
            let Some(pid) = m.agent_pid else {
                continue;
            };
            if pid_is_ours(pid, Some(layout.root())) {
                exits.watch(pid);
                w.down_since = None;
                if w.started.is_some_and(|s| s.elapsed() >= RESET_AFTER) {
                    w.in_a_row = 0;
                }
                continue;
            }
            let since = *w.down_since.get_or_insert_with(Instant::now);
            let wait = backoff(first, w.in_a_row);
            if let Some(left) = wait.checked_sub(since.elapsed()).filter(|l| !l.is_zero()) {
                due = due.min(left);
                continue;
            }
            match spawn_agent(&layout, &m.name, &exe) {
                Ok(new) => {
                    w.in_a_row += 1;
                    w.started = Some(Instant::now());
                    w.down_since = None;
                    exits.watch(new);
                    let restarts = m.restarts + 1;
                    let _ = layout.update_record(|r| {
                        if let Some(rec) = r.members.iter_mut().find(|x| x.name == m.name) {
                            rec.restarts = restarts;
                        }
                    });
                    tracing::warn!(member = %m.name, old_pid = pid, new_pid = new, restarts, next_backoff_s = backoff(first, w.in_a_row).as_secs(), "the agent had stopped; restarted it");
                }
                Err(error) => {
                    due = due.min(POLL_EVERY);
                    tracing::warn!(member = %m.name, %error, "could not restart the agent")
                }
            }
        }
        if !exits.supported {
            due = due.min(POLL_EVERY);
        }
        let _ = exits.wait(due).await;
    }
}

/// The agents watched for their exit, one pidfd each.
struct Exits {
    watched: BTreeSet<u32>,
    tasks: JoinSet<u32>,
    /// Whether this kernel gives pidfds (Linux 5.3 and later).
    supported: bool,
}

impl Default for Exits {
    fn default() -> Self {
        Self {
            watched: BTreeSet::new(),
            tasks: JoinSet::new(),
            supported: true,
        }
    }
}

impl Exits {
    /// Watches `pid` for its exit, once.
    fn watch(&mut self, pid: u32) {
        if self.watched.contains(&pid) {
            return;
        }
        match pidfd(pid) {
            Ok(fd) => {
                self.watched.insert(pid);
                self.tasks.spawn(async move {
                    // A pidfd becomes readable when its process exits.
                    let _ = fd.readable().await;
                    pid
                });
            }
            Err(error) => {
                if self.supported {
                    tracing::debug!(pid, %error, "cannot watch the agent's exit; polling");
                }
                self.supported = false;
            }
        }
    }

    /// Returns when a watched process exits (with its PID) or after
    /// `timeout` (`None`).
    async fn wait(&mut self, timeout: Duration) -> Option<u32> {
        let exited = async {
            match self.tasks.join_next().await {
                Some(Ok(pid)) => {
                    self.watched.remove(&pid);
                    Some(pid)
                }
                Some(Err(_)) => None,
                None => std::future::pending().await,
            }
        };
        tokio::time::timeout(timeout, exited).await.ok().flatten()
    }
}

fn pidfd(pid: u32) -> std::io::Result<AsyncFd<OwnedFd>> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK)?;
    // `AsyncFd::new` is deprecated because a wrapped type could close its
    // descriptor while registered; an `OwnedFd` keeps it open for the
    // AsyncFd's whole life, and `register` would need unsafe code, which
    // this workspace forbids (as in `coordinator::watch`).
    #[allow(deprecated)]
    AsyncFd::new(fd)
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

    /// A watched process's exit wakes the supervisor with its PID (the
    /// pidfd), long before the timeout; a process watched twice is one
    /// watch.
    #[tokio::test]
    async fn an_exit_wakes_the_supervisor() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep runs");
        let mut exits = Exits::default();
        exits.watch(child.id());
        exits.watch(child.id());
        assert!(exits.supported, "this kernel gives pidfds");
        assert_eq!(exits.watched.len(), 1);
        // Nothing exited yet: the wait ends by its timeout.
        assert_eq!(exits.wait(Duration::from_millis(50)).await, None);
        child.kill().expect("kill the child we started");
        child.wait().expect("reap it");
        assert_eq!(
            exits.wait(Duration::from_secs(60)).await,
            Some(child.id()),
            "the exit woke the wait"
        );
        assert!(exits.watched.is_empty());
    }

    /// The first restart waits out two leases and a loop (defaults: 4.25 s).
    #[test]
    fn first_restart_outlasts_a_failover() {
        let t = pgcluster_core::timing::FailoverTimings::default();
        assert_eq!(first_restart(&t), t.lease_duration * 2 + t.loop_interval);
        assert!(first_restart(&t) > t.lease_duration + t.loop_interval);
    }
}
