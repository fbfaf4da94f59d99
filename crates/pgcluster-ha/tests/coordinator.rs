//! The memory coordinator's contract, through the `Coordinator` trait.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use pgcluster_ha::coordinator::memory::MemoryCoordinator;
use pgcluster_ha::coordinator::{CasOutcome, Coordinator, CoordinatorError};
use pgcluster_ha::machine::*;

/// Runs a future that never waits (the memory coordinator's).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory coordinator never waits"),
    }
}

fn record(holder: &str, term: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(MemberName::from(holder)),
        term,
        renewed_at: Millis(0),
        duration_ms: 2000,
        system_identifier: None,
        timeline: Timeline(1),
        history: Vec::new(),
        max_timeline: Timeline(1),
        primary_lsn: Lsn(0),
        sync_standbys: Default::default(),
    }
}

/// Compare-and-swap: exactly one of two racing writers wins; the loser gets
/// `Lost` with the current lease, not an error.
#[test]
fn lease_cas_has_exactly_one_winner_and_a_lost_result_for_the_other() {
    let c = MemoryCoordinator::new();
    let a = now(c.compare_and_swap_lease(LeaseVersion(0), record("pg-0", 1))).expect("reachable");
    let b = now(c.compare_and_swap_lease(LeaseVersion(0), record("pg-1", 1))).expect("reachable");
    let CasOutcome::Won(won) = a else {
        panic!("first writer wins")
    };
    assert_eq!(won.version, LeaseVersion(1));
    assert_eq!(b, CasOutcome::Lost(Some(won.clone())));
    let renewed =
        now(c.compare_and_swap_lease(LeaseVersion(1), record("pg-0", 1))).expect("reachable");
    assert!(matches!(renewed, CasOutcome::Won(l) if l.version == LeaseVersion(2)));
}

/// The view carries published states and the one pending switchover request.
#[test]
fn view_has_members_and_one_pending_switchover() {
    let c = MemoryCoordinator::new();
    let state = MemberState {
        name: MemberName::from("pg-0"),
        role: MemberRole::Primary,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(1),
        replayed_lsn: Lsn(1),
        flushed_lsn: Lsn(1),
        system_identifier: None,
        following: None,
        sync_eligible: false,
        last_seen: Millis(5),
        heartbeat: 1,
    };
    now(c.publish_member(state.clone())).expect("reachable");
    now(c.request_switchover(SwitchoverRequest {
        id: 1,
        target: None,
        forced: false,
    }))
    .expect("first request");
    let e = now(c.request_switchover(SwitchoverRequest {
        id: 2,
        target: None,
        forced: false,
    }))
    .expect_err("one pending");
    assert!(matches!(
        e,
        CoordinatorError::SwitchoverPending { pending: 1 }
    ));
    assert_eq!(e.category(), "switchover_pending");
    let v = now(c.read_view()).expect("reachable");
    assert_eq!(v.members.get(&state.name), Some(&state));
    now(c.clear_switchover(1)).expect("reachable");
    assert_eq!(now(c.read_view()).expect("reachable").switchover, None);
}

fn member(name: &str, heartbeat: u64) -> MemberState {
    MemberState {
        name: MemberName::from(name),
        role: MemberRole::Replica,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(heartbeat),
        replayed_lsn: Lsn(heartbeat),
        flushed_lsn: Lsn(heartbeat),
        system_identifier: None,
        following: None,
        sync_eligible: false,
        last_seen: Millis(heartbeat),
        heartbeat,
    }
}

/// Local coordinator: member publishes (frequent, not fsynced) never touch
/// the durable lease record: after many publishes from several handles the
/// lease file is byte for byte what the last compare-and-swap wrote, and a
/// reopened coordinator reads the lease and every member's latest state.
#[tokio::test]
async fn local_publish_never_rewrites_or_loses_the_lease() {
    use pgcluster_ha::coordinator::local::LocalCoordinator;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let open = || LocalCoordinator::open(dir.path(), Duration::from_secs(2)).expect("open");
    let c = open();
    let won = c
        .compare_and_swap_lease(LeaseVersion(0), record("pg-0", 1))
        .await
        .expect("reachable");
    assert!(matches!(won, CasOutcome::Won(_)));
    let lease_file =
        || std::fs::read(dir.path().join("coordinator.json")).expect("the lease file exists");
    let before = lease_file();
    let others = [open(), open()];
    for hb in 1..=20 {
        for (i, h) in others.iter().enumerate() {
            h.publish_member(member(&format!("pg-{}", i + 1), hb))
                .await
                .expect("publish");
        }
    }
    assert_eq!(lease_file(), before, "a publish rewrote the lease file");
    let v = open().read_view().await.expect("read");
    let lease = v.lease.expect("the lease survives publishes");
    assert_eq!(lease.version, LeaseVersion(1));
    assert_eq!(lease.record.holder, Some(MemberName::from("pg-0")));
    assert_eq!(v.members.len(), 2);
    assert!(v.members.values().all(|m| m.heartbeat == 20));
    // And a lease write keeps the members (they live beside it).
    let renewed = c
        .compare_and_swap_lease(LeaseVersion(1), record("pg-0", 1))
        .await
        .expect("reachable");
    assert!(matches!(renewed, CasOutcome::Won(_)));
    assert_eq!(open().read_view().await.expect("read").members.len(), 2);
}

/// Local coordinator: a lost compare-and-swap and clearing a request that is
/// not there change nothing, so they leave the lease file alone (no rewrite,
/// no fsync under the lock); a won one rewrites it.
#[tokio::test]
async fn local_noop_updates_do_not_rewrite_the_lease_file() {
    use pgcluster_ha::coordinator::local::LocalCoordinator;
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let c = LocalCoordinator::open(dir.path(), Duration::from_secs(2)).expect("open");
    let won = c
        .compare_and_swap_lease(LeaseVersion(0), record("pg-0", 1))
        .await
        .expect("reachable");
    assert!(matches!(won, CasOutcome::Won(_)));
    // Every write renames a new file into place, so the inode tells writes apart.
    let inode = || {
        std::fs::metadata(dir.path().join("coordinator.json"))
            .expect("the lease file exists")
            .ino()
    };
    let first = inode();
    let lost = c
        .compare_and_swap_lease(LeaseVersion(0), record("pg-1", 2))
        .await
        .expect("reachable");
    assert!(matches!(lost, CasOutcome::Lost(_)));
    c.clear_switchover(424_242).await.expect("reachable");
    assert_eq!(inode(), first, "a no-op update rewrote the lease file");
    let renewed = c
        .compare_and_swap_lease(LeaseVersion(1), record("pg-0", 1))
        .await
        .expect("reachable");
    assert!(matches!(renewed, CasOutcome::Won(_)));
    assert_ne!(inode(), first, "a won compare-and-swap is written");
}
