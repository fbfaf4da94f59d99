//! The coordinator of a local cluster and the router's targets derived from
//! it: rw to the lease holder once it is a healthy primary, ro to healthy
//! replicas; followed through the coordinator's change notifications.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use super::error::LocalError;
use super::layout::{ClusterRecord, Layout};
use super::router::RouteTargets;
use crate::coordinator::CoordinatorError;
use crate::coordinator::local::{ChangeWatch, LocalCoordinator};
use crate::machine::{ClusterView, MemberName, MemberRole};

/// The local coordinator of a cluster: durable state in the data
/// directory, runtime state on tmpfs where there is one.
pub fn coordinator(layout: &Layout, timeout: Duration) -> Result<LocalCoordinator, LocalError> {
    let dir = layout.coordinator_dir();
    let opened = match layout.runtime_dir() {
        Some(run) => LocalCoordinator::open_split(&dir, run, timeout),
        None => LocalCoordinator::open(&dir, timeout),
    };
    opened.map_err(|source| LocalError::Coordinator { dir, source })
}

/// Where the router should send connections, from one coordinator view:
/// the lease holder once it publishes itself as a healthy primary; replicas
/// that publish themselves as healthy.
pub fn targets_of(view: &ClusterView, record: &ClusterRecord) -> RouteTargets {
    let addr = |name: &MemberName| {
        record
            .member(name.as_str())
            .map(|m| SocketAddr::from(([127, 0, 0, 1], m.pg_port)))
    };
    let holder = view.lease.as_ref().and_then(|l| l.record.holder.clone());
    let primary = holder
        .as_ref()
        .filter(|h| {
            view.members
                .get(*h)
                .is_some_and(|m| m.role == MemberRole::Primary && m.healthy)
        })
        .and_then(addr);
    let replicas = view
        .members
        .values()
        .filter(|m| m.role == MemberRole::Replica && m.healthy && Some(&m.name) != holder.as_ref())
        .filter_map(|m| addr(&m.name))
        .collect();
    RouteTargets { primary, replicas }
}

/// Follows the coordinator and publishes the router's targets: woken by
/// inotify when the lease or a member state changes (renewals and
/// heartbeats do not wake it), with a read every `RECHECK` (5 s) besides; where
/// inotify is unavailable, by reading the coordinator every `every`.
pub fn route_targets(
    layout: &Layout,
    record: &ClusterRecord,
    every: Duration,
) -> Result<(watch::Receiver<RouteTargets>, tokio::task::JoinHandle<()>), LocalError> {
    let coord = coordinator(layout, Duration::from_millis(500))?;
    let record = record.clone();
    let initial = coord
        .read_now()
        .map(|v| targets_of(&v, &record))
        .unwrap_or_default();
    let (tx, rx) = watch::channel(initial);
    let mut changes = match coord.watch(true) {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::warn!(%error, ?every, "cannot watch the coordinator; polling it");
            None
        }
    };
    let every = if changes.is_some() { RECHECK } else { every };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = next_change(&mut changes) => {
                    if let Err(error) = changed {
                        tracing::warn!(%error, "watching the coordinator failed; polling it every 50 ms");
                        changes = None;
                        tick = tokio::time::interval(Duration::from_millis(50));
                    }
                }
                () = tx.closed() => return,
            }
            if let Ok(view) = coord.read_now() {
                let next = targets_of(&view, &record);
                tx.send_if_modified(|cur| {
                    if *cur != next {
                        tracing::info!(primary = ?next.primary, replicas = ?next.replicas, "route targets changed");
                        *cur = next;
                        true
                    } else {
                        false
                    }
                });
            }
        }
    });
    Ok((rx, task))
}

/// How often the router re-reads the coordinator while it also watches it:
/// a safety net, not the way it learns of changes.
pub const RECHECK: Duration = Duration::from_secs(5);

async fn next_change(changes: &mut Option<ChangeWatch>) -> Result<(), CoordinatorError> {
    match changes {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::local::ready::readiness;
    use crate::machine::{Lease, LeaseRecord, LeaseVersion, Lsn, MemberState, Millis, Timeline};

    fn record() -> ClusterRecord {
        ClusterRecord::demo(2)
    }

    fn member(name: &str, role: MemberRole, following: Option<&str>) -> MemberState {
        MemberState {
            name: name.into(),
            role,
            healthy: true,
            timeline: Timeline(1),
            received_lsn: Lsn(1),
            replayed_lsn: Lsn(1),
            flushed_lsn: Lsn(1),
            system_identifier: None,
            following: following.map(MemberName::from),
            sync_eligible: true,
            last_seen: Millis(0),
            heartbeat: 1,
        }
    }

    fn view(holder: &str, states: Vec<MemberState>) -> ClusterView {
        ClusterView {
            lease: Some(Lease {
                version: LeaseVersion(1),
                record: LeaseRecord {
                    holder: Some(holder.into()),
                    term: 1,
                    renewed_at: Millis(0),
                    duration_ms: 1,
                    system_identifier: None,
                    timeline: Timeline(1),
                    history: vec![],
                    max_timeline: Timeline(1),
                    primary_lsn: Lsn(0),
                    sync_standbys: Default::default(),
                },
            }),
            members: states.into_iter().map(|s| (s.name.clone(), s)).collect(),
            switchover: None,
        }
    }

    /// rw goes to the lease holder only once it is a healthy primary; ro to healthy replicas.
    #[test]
    fn targets_follow_the_lease_holder() {
        let rec = record();
        let v = view(
            "demo-1",
            vec![
                member("demo-0", MemberRole::Primary, None),
                member("demo-1", MemberRole::Replica, Some("demo-0")),
            ],
        );
        // The holder has not promoted yet: no rw target, and never the old primary.
        let t = targets_of(&v, &rec);
        assert_eq!(t.primary, None);
        let v = view(
            "demo-0",
            vec![
                member("demo-0", MemberRole::Primary, None),
                member("demo-1", MemberRole::Replica, Some("demo-0")),
            ],
        );
        let t = targets_of(&v, &rec);
        assert_eq!(t.primary, Some(SocketAddr::from(([127, 0, 0, 1], 20000))));
        assert_eq!(t.replicas, vec![SocketAddr::from(([127, 0, 0, 1], 20001))]);
        assert!(readiness(&v, &rec).is_ok());
    }
}
