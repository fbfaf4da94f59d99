//! The client side of switchover and failover against the in-memory
//! coordinator, with a task standing in for the agents' answers (the
//! agents' side is tested with real PostgreSQL in `pgcluster-cli`'s local
//! tests and on the Kubernetes node).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::coordinator::memory::MemoryCoordinator;
use crate::machine::{Lease, LeaseRecord, LeaseVersion, Lsn, MemberState, Millis, Timeline};

const WAIT: Wait = Wait {
    poll: Duration::from_millis(5),
    timeout: Duration::from_secs(5),
};

fn state(name: &str, role: MemberRole, heartbeat: u64) -> MemberState {
    MemberState {
        name: MemberName::from(name),
        role,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(0),
        replayed_lsn: Lsn(0),
        flushed_lsn: Lsn(0),
        system_identifier: None,
        following: None,
        sync_eligible: true,
        last_seen: Millis(0),
        heartbeat,
    }
}

fn record(holder: &str, term: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(MemberName::from(holder)),
        term,
        renewed_at: Millis(0),
        duration_ms: 200,
        system_identifier: None,
        timeline: Timeline(1),
        history: Vec::new(),
        max_timeline: Timeline(1),
        primary_lsn: Lsn(0),
        sync_standbys: Default::default(),
    }
}

/// pg-0 primary (holding the lease), pg-1 replica.
fn pair() -> Arc<MemoryCoordinator> {
    let coord = Arc::new(MemoryCoordinator::new());
    assert!(matches!(
        coord.cas_lease(LeaseVersion(0), record("pg-0", 1)),
        crate::coordinator::CasOutcome::Won(_)
    ));
    coord.publish(state("pg-0", MemberRole::Primary, 1));
    coord.publish(state("pg-1", MemberRole::Replica, 1));
    coord
}

fn current(coord: &MemoryCoordinator) -> Lease {
    coord.lease().expect("a lease")
}

/// Stands in for the agents: when a request appears, `answer` runs once.
fn agents(
    coord: &Arc<MemoryCoordinator>,
    answer: impl FnOnce(&MemoryCoordinator, SwitchoverRequest) + Send + 'static,
) {
    let coord = coord.clone();
    tokio::spawn(async move {
        loop {
            if let Some(request) = coord.view().switchover {
                answer(&coord, request);
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

/// The primary hands the lease to `to`, which then publishes itself primary.
fn hand_over(coord: &MemoryCoordinator, request: SwitchoverRequest, to: &str) {
    let lease = current(coord);
    coord.cas_lease(lease.version, record(to, lease.record.term + 1));
    coord.clear(request.id);
    coord.publish(state(to, MemberRole::Primary, 2));
    coord.publish(state("pg-0", MemberRole::Replica, 2));
}

/// A switchover returns once the target holds the lease and publishes
/// itself as a healthy primary, and names both sides.
#[tokio::test]
async fn a_switchover_waits_for_the_new_primary() {
    let coord = pair();
    agents(&coord, |c, r| {
        assert_eq!(r.target, Some(MemberName::from("pg-1")));
        assert!(!r.forced);
        hand_over(c, r, "pg-1");
    });
    let done = switchover(coord.as_ref(), Some("pg-1"), 7, WAIT)
        .await
        .unwrap();
    assert_eq!(done.from, Some(MemberName::from("pg-0")));
    assert_eq!(done.to, MemberName::from("pg-1"));
}

/// The lease moving is not enough: the wait goes on until the new holder
/// publishes itself as a primary.
#[tokio::test]
async fn a_holder_not_yet_serving_is_waited_for() {
    let coord = pair();
    agents(&coord, |c, r| {
        let lease = current(c);
        c.cas_lease(lease.version, record("pg-1", 2));
        c.clear(r.id);
    });
    let error = switchover(
        coord.as_ref(),
        None,
        8,
        Wait {
            poll: Duration::from_millis(5),
            timeout: Duration::from_millis(300),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error.category(), "timeout", "{error}");
}

/// A request the primary clears while keeping the lease is refused (not
/// waited on until the timeout), naming the primary.
#[tokio::test]
async fn a_cleared_request_is_refused() {
    let coord = pair();
    agents(&coord, |c, r| c.clear(r.id));
    let started = std::time::Instant::now();
    let error = switchover(coord.as_ref(), None, 9, WAIT).await.unwrap_err();
    assert_eq!(error.category(), "refused", "{error}");
    assert!(error.to_string().contains("pg-0"), "{error}");
    assert!(started.elapsed() < WAIT.timeout);
}

/// Unknown targets and the primary itself are refused before anything is written.
#[tokio::test]
async fn bad_targets_write_nothing() {
    let coord = pair();
    let error = switchover(coord.as_ref(), Some("pg-7"), 1, WAIT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "unknown_target");
    assert!(error.to_string().contains("pg-0, pg-1"), "{error}");
    let error = switchover(coord.as_ref(), Some("pg-0"), 1, WAIT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "already_primary");
    assert!(error.is_usage());
    assert_eq!(coord.view().switchover, None);
}

/// On timeout the request is withdrawn.
#[tokio::test]
async fn a_timeout_withdraws_the_request() {
    let coord = pair();
    let error = switchover(
        coord.as_ref(),
        Some("pg-1"),
        3,
        Wait {
            poll: Duration::from_millis(5),
            timeout: Duration::from_millis(100),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error.category(), "timeout");
    assert!(error.to_string().contains("was withdrawn"), "{error}");
    assert_eq!(coord.view().switchover, None);
}

/// A forced failover is refused while the primary renews its lease or
/// publishes heartbeats, without writing anything.
#[tokio::test]
async fn a_failover_is_refused_while_the_primary_lives() {
    let coord = pair();
    let beating = coord.clone();
    let beat = tokio::spawn(async move {
        for n in 2.. {
            beating.publish(state("pg-0", MemberRole::Primary, n));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let error = failover(coord.as_ref(), "pg-1", 4, WAIT).await.unwrap_err();
    beat.abort();
    assert_eq!(error.category(), "primary_healthy", "{error}");
    assert_eq!(coord.view().switchover, None);
}

/// A primary whose last state says healthy but which neither renews nor
/// beats for a lease duration is dead: the forced request is written and
/// the named replica's take-over is waited for.
#[tokio::test]
async fn a_failover_goes_ahead_when_the_primary_is_silent() {
    let coord = pair();
    agents(&coord, |c, r| {
        assert!(r.forced);
        assert_eq!(r.target, Some(MemberName::from("pg-1")));
        hand_over(c, r, "pg-1");
    });
    let done = failover(coord.as_ref(), "pg-1", 5, WAIT).await.unwrap();
    assert_eq!(done.to, MemberName::from("pg-1"));
}

/// A forced failover whose target is beaten to the lease by another member
/// is refused, naming the member that holds it now.
#[tokio::test]
async fn a_failover_taken_by_another_member_is_refused() {
    let coord = pair();
    coord.publish(state("pg-2", MemberRole::Replica, 1));
    agents(&coord, |c, r| {
        let lease = current(c);
        c.cas_lease(lease.version, record("pg-2", 2));
        c.clear(r.id);
        c.publish(state("pg-2", MemberRole::Primary, 2));
    });
    let error = failover(coord.as_ref(), "pg-1", 6, WAIT).await.unwrap_err();
    assert_eq!(error.category(), "refused", "{error}");
    assert!(error.to_string().contains("held by pg-2"), "{error}");
}
