//! Transitions of forced failover (`pgcluster failover --to I`) and of the
//! synchronous standby set a new primary starts with, driven through `step`
//! with hand-written observations.

mod machine_support;

use std::collections::BTreeSet;

use machine_support::*;
use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_ha::machine::*;

fn forced(to: &str) -> SwitchoverRequest {
    SwitchoverRequest::forced_failover(11, n(to))
}

/// The primary pg-0 (lease `rec`, version 3) is gone; pg-1 and pg-2 are
/// replicas at `lsn1` / `lsn2` with `request` pending. Returns the views
/// seen at the first sight of the lease and at a later tick.
fn views(
    rec: &LeaseRecord,
    lsn1: u64,
    lsn2: u64,
    request: Option<SwitchoverRequest>,
) -> (ClusterView, ClusterView) {
    let mut first = view(
        Some(lease(rec.clone(), 3)),
        vec![
            member("pg-0", MemberRole::Primary, 1000, 1, None),
            member("pg-1", MemberRole::Replica, lsn1, 7, Some("pg-0")),
            member("pg-2", MemberRole::Replica, lsn2, 7, Some("pg-0")),
        ],
    );
    first.switchover = request;
    let mut later = first.clone();
    for m in later.members.values_mut() {
        if m.name != n("pg-0") {
            // With the primary gone, nobody streams any more.
            m.heartbeat = 8;
            m.healthy = false;
        }
    }
    (first, later)
}

/// Ticks `me` (a replica at `my_lsn`) at local time 100 (first sight of the
/// lease) and again at `at`.
fn tick_twice(
    cfg: HaConfig,
    my_lsn: u64,
    first: ClusterView,
    later: ClusterView,
    at: u64,
) -> (MachineState, Vec<Action>) {
    let s = MachineState::new(cfg, Millis(0));
    let (s, _) = run(s, 100, tick(pg_replica("pg-0", my_lsn, 1), Some(first)));
    let mut pg = pg_replica("pg-0", my_lsn, 1);
    pg.streaming = false;
    run(s, at, tick(pg, Some(later)))
}

fn acquires(a: &[Action]) -> bool {
    has(a, |a| matches!(a, Action::AcquireLease { .. }))
}

/// Forced failover: once the lease expired, the named replica takes it over
/// and promotes (after the compare-and-swap) although another replica ranks
/// first.
#[test]
fn forced_request_lets_the_lower_ranked_replica_take_over_after_expiry() {
    let (first, later) = views(&record("pg-0", 1, 1), 900, 1000, Some(forced("pg-1")));
    let (s, a) = tick_twice(config("pg-1"), 900, first, later, 2150);
    let k = kinds(&a);
    let cas = k.iter().position(|k| *k == ActionKind::Lease);
    let promote = k.iter().position(|k| *k == ActionKind::Promote);
    assert!(cas.is_some() && cas < promote, "{a:?}");
    assert!(
        matches!(&a[cas.expect("checked")], Action::AcquireLease { expected: LeaseVersion(3), record }
            if record.holder == Some(n("pg-1")) && record.term == 2),
        "{a:?}"
    );
    assert_eq!(s.note(), None);
}

/// Forced failover: the request completes like a switchover: the new
/// primary clears it once it runs as primary.
#[test]
fn forced_request_is_cleared_by_the_new_primary() {
    let (first, _) = views(&record("pg-0", 1, 1), 900, 1000, Some(forced("pg-1")));
    let mut rec = record("pg-1", 2, 2);
    rec.history = vec![TimelineEnd {
        timeline: Timeline(1),
        end: Lsn(900),
    }];
    let mut v = first.clone();
    v.lease = Some(lease(rec.clone(), 4));
    let s = MachineState::new(config("pg-1"), Millis(0));
    let (s, a) = run(s, 100, tick(pg_primary(900, 2), Some(v.clone())));
    let won = lease(rec, 5);
    assert!(has(&a, |a| matches!(a, Action::RenewLease { .. })), "{a:?}");
    v.lease = Some(won.clone());
    let mut t = tick(pg_primary(900, 2), Some(v));
    t.lease_outcome = Some(LeaseOutcome::Won(won));
    let (_, a) = run(s, 350, t);
    assert!(
        has(&a, |a| *a == Action::ClearSwitchover { id: 11 }),
        "{a:?}"
    );
}

/// Forced failover: never before the lease expired by the target's own
/// observation, however the request insists.
#[test]
fn forced_request_waits_for_the_lease_to_expire() {
    let (first, later) = views(&record("pg-0", 1, 1), 900, 1000, Some(forced("pg-1")));
    let (_, a) = tick_twice(config("pg-1"), 900, first, later, 2000);
    assert!(!acquires(&a), "{a:?}");
    assert!(!has(&a, |a| matches!(a, Action::Promote { .. })));
}

/// Forced failover: the better-ranked replica leaves the lease to an
/// eligible named target instead of racing it.
#[test]
fn other_replicas_leave_the_lease_to_the_forced_target() {
    let (first, later) = views(&record("pg-0", 1, 1), 900, 1000, Some(forced("pg-1")));
    let (_, a) = tick_twice(config("pg-2"), 1000, first.clone(), later.clone(), 2150);
    assert!(!acquires(&a), "{a:?}");
    // Without the request pg-2 would have taken over.
    let (mut f, mut l) = (first, later);
    f.switchover = None;
    l.switchover = None;
    let (_, a) = tick_twice(config("pg-2"), 1000, f, l, 2150);
    assert!(acquires(&a), "{a:?}");
}

/// Ticks `me` (a replica at `my_lsn`) every loop from local time 100 (first
/// sight of the lease, `first`) to `until`, each later tick seeing `later`.
fn tick_every_loop(
    cfg: HaConfig,
    my_lsn: u64,
    first: ClusterView,
    later: ClusterView,
    until: u64,
) -> Vec<Action> {
    let s = MachineState::new(cfg, Millis(0));
    let (mut s, mut a) = run(s, 100, tick(pg_replica("pg-0", my_lsn, 1), Some(first)));
    let mut pg = pg_replica("pg-0", my_lsn, 1);
    pg.streaming = false;
    for now in (350..=until).step_by(250) {
        (s, a) = run(s, now, tick(pg.clone(), Some(later.clone())));
    }
    a
}

/// The views of [`views`] with a forced failover to pg-1, whose heartbeat
/// does not move after the first view.
fn target_stood_still() -> (ClusterView, ClusterView) {
    let (first, mut later) = views(&record("pg-0", 1, 1), 900, 1000, Some(forced("pg-1")));
    later
        .members
        .get_mut(&n("pg-1"))
        .expect("present")
        .heartbeat = 7;
    (first, later)
}

/// Forced failover: a stale target does not block the failover (the target
/// may be the one that is gone): its heartbeat stood still while we
/// watched, tick after tick.
#[test]
fn a_stale_forced_target_does_not_block_failover() {
    let (first, later) = target_stood_still();
    let a = tick_every_loop(config("pg-2"), 1000, first, later, 2100);
    assert!(acquires(&a), "{a:?}");
}

/// Forced failover: a target whose heartbeat stood still only while we
/// could not watch (our own loop stalled two seconds, as on a machine
/// whose disk holds everyone up) is not judged dead: we leave the lease to
/// it, as we do when it is seen alive.
#[test]
fn our_own_stall_does_not_make_the_forced_target_stale() {
    let (first, later) = target_stood_still();
    let (_, a) = tick_twice(config("pg-2"), 1000, first, later, 2150);
    assert!(!acquires(&a), "{a:?}");
}

/// Forced failover: the async lag limit does not apply (the operator
/// accepts losing the newest writes); automatic failover still respects it.
#[test]
fn forced_request_overrides_the_async_lag_limit() {
    // The last primary position is 1000, the limit 100: both replicas are too far behind.
    let (first, later) = views(&record("pg-0", 1, 1), 10, 5, Some(forced("pg-1")));
    let (_, a) = tick_twice(config("pg-1"), 10, first, later, 2150);
    assert!(acquires(&a), "{a:?}");
    let (first, later) = views(&record("pg-0", 1, 1), 10, 5, None);
    let (_, a) = tick_twice(config("pg-1"), 10, first, later, 2150);
    assert!(!acquires(&a), "{a:?}");
}

/// Forced failover: a target whose WAL diverged from the lineage refuses,
/// clears the request so the requester learns at once, and says why in
/// its status.
#[test]
fn ineligible_forced_target_refuses_with_a_reason() {
    let mut rec = record("pg-0", 3, 3);
    rec.history = vec![
        TimelineEnd {
            timeline: Timeline(1),
            end: Lsn(500),
        },
        TimelineEnd {
            timeline: Timeline(2),
            end: Lsn(800),
        },
    ];
    // pg-1 is on timeline 1 at 900: past where timeline 1 ended.
    let (first, later) = views(&rec, 900, 1000, Some(forced("pg-1")));
    let (s, a) = tick_twice(config("pg-1"), 900, first, later, 2150);
    assert!(!acquires(&a), "{a:?}");
    assert!(
        has(&a, |a| *a == Action::ClearSwitchover { id: 11 }),
        "{a:?}"
    );
    let note = s.note().expect("a reason");
    assert!(
        note.contains("refused") && note.contains("diverged"),
        "{note}"
    );
}

/// Forced failover in sync mode: a member that is not a synchronous
/// standby may lack acknowledged commits, so it refuses (like Patroni).
#[test]
fn sync_mode_forced_target_must_be_a_synchronous_standby() {
    let cfg = |me: &str| {
        config_with(
            me,
            replication(ReplicationMode::Sync, NoStandbyPolicy::Block),
        )
    };
    let mut rec = record("pg-0", 1, 1);
    rec.sync_standbys = [n("pg-2")].into();
    let (first, later) = views(&rec, 900, 1000, Some(forced("pg-1")));
    let (s, a) = tick_twice(cfg("pg-1"), 900, first, later, 2150);
    assert!(!acquires(&a), "{a:?}");
    assert!(has(&a, |a| *a == Action::ClearSwitchover { id: 11 }));
    assert!(s.note().is_some_and(|n| n.contains("synchronous")));
    // As a synchronous standby it takes over although pg-2 ranks first.
    rec.sync_standbys = [n("pg-1"), n("pg-2")].into();
    let (first, later) = views(&rec, 900, 1000, Some(forced("pg-1")));
    let (_, a) = tick_twice(cfg("pg-1"), 900, first, later, 2150);
    assert!(acquires(&a), "{a:?}");
}

/// Sync mode: a replica taking over an expired lease lists the previous
/// term's synchronous standbys (minus itself) before promoting, and the new
/// term's record carries them, so commits are protected as soon as one is back.
#[test]
fn failover_seeds_synchronous_standbys_from_the_lease() {
    let cfg = config_with(
        "pg-1",
        replication(ReplicationMode::Sync, NoStandbyPolicy::Block),
    );
    let mut rec = record("pg-0", 1, 1);
    rec.sync_standbys = [n("pg-1"), n("pg-2")].into();
    let (first, later) = views(&rec, 1000, 900, None);
    let (_, a) = tick_twice(cfg, 1000, first, later, 2150);
    let pg2: BTreeSet<MemberName> = [n("pg-2")].into();
    let k = kinds(&a);
    let sync = k
        .iter()
        .position(|k| *k == ActionKind::SetSyncStandbys)
        .expect("sets the standbys");
    let promote = k
        .iter()
        .position(|k| *k == ActionKind::Promote)
        .expect("promotes");
    assert!(sync < promote);
    assert_eq!(
        a[sync],
        Action::SetSyncStandbys(SyncStandbys::AllOf(pg2.clone()))
    );
    assert!(
        has(
            &a,
            |a| matches!(a, Action::AcquireLease { record, .. } if record.sync_standbys == pg2)
        ),
        "{a:?}"
    );
}

/// Sync mode: a switchover target (finding itself holder of a handed-over
/// lease) seeds the standbys from the record before promoting.
#[test]
fn switchover_target_seeds_synchronous_standbys() {
    let cfg = config_with(
        "pg-1",
        replication(ReplicationMode::Sync, NoStandbyPolicy::Block),
    );
    let mut rec = record("pg-1", 2, 2);
    rec.history = vec![TimelineEnd {
        timeline: Timeline(1),
        end: Lsn(1120),
    }];
    rec.sync_standbys = [n("pg-1"), n("pg-2")].into();
    let s = MachineState::new(cfg, Millis(0));
    let (_, a) = run(
        s,
        10,
        tick(
            pg_replica("pg-0", 1120, 1),
            Some(view(Some(lease(rec, 9)), vec![])),
        ),
    );
    let pg2: BTreeSet<MemberName> = [n("pg-2")].into();
    assert!(
        has(&a, |a| *a
            == Action::SetSyncStandbys(SyncStandbys::AllOf(pg2.clone()))),
        "{a:?}"
    );
}

/// Sync mode with `fallbackToAsync`: a new primary waits up to a lease
/// duration for the standbys it was seeded with (their agents alive) before
/// going unprotected.
#[test]
fn new_primary_gives_seeded_standbys_a_grace_period_before_falling_back() {
    let cfg = config_with(
        "pg-1",
        replication(ReplicationMode::Sync, NoStandbyPolicy::FallbackToAsync),
    );
    let mut rec = record("pg-1", 2, 2);
    rec.history = vec![TimelineEnd {
        timeline: Timeline(1),
        end: Lsn(1120),
    }];
    rec.sync_standbys = [n("pg-2")].into();
    let pg2 = |hb| member("pg-2", MemberRole::Stopped, 1120, hb, None);
    let s = MachineState::new(cfg, Millis(0));
    let (s, _) = run(
        s,
        10,
        tick(
            pg_replica("pg-0", 1120, 1),
            Some(view(Some(lease(rec.clone(), 9)), vec![pg2(1)])),
        ),
    );
    let won = lease(rec, 10);
    let mut pg = pg_primary(1120, 2);
    pg.sync_standbys = SyncStandbys::AllOf([n("pg-2")].into());
    let mut t = tick(pg.clone(), Some(view(Some(won.clone()), vec![pg2(2)])));
    t.lease_outcome = Some(LeaseOutcome::Won(won.clone()));
    let (s, a) = run(s, 260, t);
    assert!(
        !has(&a, |a| *a == Action::SetSyncStandbys(SyncStandbys::Off)),
        "{a:?}"
    );
    assert!(
        has(
            &a,
            |a| matches!(a, Action::RenewLease { record, .. } if record.sync_standbys.contains(&n("pg-2")))
        ),
        "{a:?}"
    );
    // pg-2's agent keeps publishing but its server never comes back: once
    // the grace (a lease duration from the promotion at 10) is over, the
    // primary unpublishes it (renewals won every tick meanwhile).
    let (mut s, mut a, mut version) = (s, a, 10);
    for now in (510..=2510).step_by(250) {
        let record = a
            .iter()
            .find_map(|a| match a {
                Action::RenewLease { record, .. } => Some(record.clone()),
                _ => None,
            })
            .expect("renews every tick");
        // `record` was decided at now - 250.
        assert!(
            record.sync_standbys.contains(&n("pg-2")) || now - 250 >= 2010,
            "unpublished at {} within the grace",
            now - 250
        );
        version += 1;
        let won = lease(record, version);
        let mut t = tick(
            pg.clone(),
            Some(view(Some(won.clone()), vec![pg2(version)])),
        );
        t.lease_outcome = Some(LeaseOutcome::Won(won));
        (s, a) = run(s, now, t);
    }
    assert!(
        has(
            &a,
            |a| matches!(a, Action::RenewLease { record, .. } if record.sync_standbys.is_empty())
        ),
        "{a:?}"
    );
}
