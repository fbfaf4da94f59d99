//! One scenario per transition of the state machine, driven through `step`
//! with hand-written observations.

mod machine_support;

use std::collections::BTreeSet;
use std::time::Duration;

use machine_support::*;
use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_core::timing::FailoverTimings;
use pgcluster_ha::machine::election::Candidate;
use pgcluster_ha::machine::*;

/// Bootstrap: a member with an empty data directory and no lease races for
/// the first lease and runs initdb only after winning it (same batch, after
/// the compare-and-swap).
#[test]
fn bootstrap_empty_member_races_for_the_first_lease_then_initialises() {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let (s, a) = run(
        s,
        10,
        tick(PgObservation::empty(), Some(ClusterView::default())),
    );
    let k = kinds(&a);
    let cas = k
        .iter()
        .position(|k| *k == ActionKind::Lease)
        .expect("acquires");
    let init = k
        .iter()
        .position(|k| *k == ActionKind::Bootstrap)
        .expect("bootstraps");
    assert!(cas < init);
    assert!(matches!(
        &a[cas],
        Action::AcquireLease {
            expected: LeaseVersion(0),
            ..
        }
    ));
    assert_eq!(s.phase(), Phase::Bootstrapping);
}

/// Bootstrap: the members that lost the race clone from the primary once it serves.
#[test]
fn bootstrap_loser_clones_from_the_serving_primary() {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let v = view(
        Some(lease(record("pg-0", 1, 1), 3)),
        vec![member("pg-0", MemberRole::Primary, 100, 1, None)],
    );
    let (_, a) = run(s, 10, tick(PgObservation::empty(), Some(v)));
    assert!(
        has(&a, |a| *a == Action::Reclone { from: n("pg-0") }),
        "{a:?}"
    );
}

/// Bootstrap: data but no lease (the coordinator lost its state) never initialises or takes over.
#[test]
fn data_without_any_lease_waits_instead_of_bootstrapping() {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let mut pg = pg_replica("pg-0", 10, 1);
    pg.running = false;
    let (s, a) = run(s, 10, tick(pg, Some(ClusterView::default())));
    assert!(!has(&a, |a| a.kind() == ActionKind::Lease
        || a.kind() == ActionKind::Bootstrap));
    assert_eq!(s.phase(), Phase::Waiting);
}

/// Steady state: the leader renews every tick, re-arms the watchdog from the
/// renewal's send time and publishes its state.
#[test]
fn leader_renews_arms_watchdog_and_publishes_every_tick() {
    let s = leader(config("pg-0"));
    let l = s.held_lease().expect("holds").clone();
    let (_, a) = run(
        s,
        1500,
        tick(pg_primary(1100, 1), Some(view(Some(l), vec![]))),
    );
    assert!(
        matches!(&a[0], Action::RenewLease { expected: LeaseVersion(5), record } if record.primary_lsn == Lsn(1100))
    );
    assert!(has(&a, |a| *a
        == Action::ArmWatchdog {
            deadline: Millis(1500 + 1200)
        }));
    assert!(has(
        &a,
        |a| matches!(a, Action::PublishState(m) if m.role == MemberRole::Primary)
    ));
}

/// Self-fencing: a primary that cannot renew stops writes at once when its
/// renew deadline (last confirmed renewal + renewDeadline) passes — never later.
#[test]
fn primary_that_cannot_renew_fences_at_its_renew_deadline() {
    let s = leader(config("pg-0"));
    assert_eq!(s.write_deadline(), Some(Millis(1000 + 1200)));
    let (s, a) = run(s, 2100, tick(pg_primary(1100, 1), None));
    assert!(
        !has(&a, |a| *a == Action::FenceWrites),
        "still inside the deadline"
    );
    assert!(has(&a, |a| matches!(a, Action::ProbePeers(_))));
    let (s, a) = run(s, 2200, tick(pg_primary(1100, 1), None));
    assert!(has(&a, |a| *a == Action::FenceWrites), "{a:?}");
    assert_eq!(s.phase(), Phase::Fenced);
}

/// A renewal whose answer was lost (a coordinator timing out a request that
/// did land) counts once a read shows exactly the record written: validity
/// from its send time and the watchdog re-armed first thing, so a run of lost
/// answers does not fence a healthy primary. A record that differs in any
/// field proves nothing.
#[test]
fn lost_renewal_answer_counts_once_the_view_shows_the_record() {
    let s = leader(config("pg-0"));
    let l = s.held_lease().expect("holds").clone();
    let (s, a) = run(
        s,
        1500,
        tick(pg_primary(1100, 1), Some(view(Some(l.clone()), vec![]))),
    );
    let written = a
        .iter()
        .find_map(|a| match a {
            Action::RenewLease { record, .. } => Some(record.clone()),
            _ => None,
        })
        .expect("renews");
    let landed = lease(written.clone(), 6);
    let mut other = written.clone();
    other.renewed_at = Millis(1499);

    // The answer was lost; the read shows something else: nothing confirmed.
    let mut t = tick(
        pg_primary(1100, 1),
        Some(view(Some(lease(other, 6)), vec![])),
    );
    t.lease_outcome = Some(LeaseOutcome::Failed);
    let (unproven, a) = run(s.clone(), 1750, t);
    assert_eq!(unproven.write_deadline(), Some(Millis(1000 + 1200)));
    assert_ne!(kinds(&a).first(), Some(&ActionKind::ArmWatchdog));

    // The read shows the record as written: valid from 1500.
    let mut t = tick(pg_primary(1100, 1), Some(view(Some(landed), vec![])));
    t.lease_outcome = Some(LeaseOutcome::Failed);
    let (s, a) = run(s, 1750, t);
    assert_eq!(s.write_deadline(), Some(Millis(1500 + 1200)));
    assert_eq!(
        a.first(),
        Some(&Action::ArmWatchdog {
            deadline: Millis(2700)
        })
    );
    assert!(
        matches!(
            &a[1],
            Action::RenewLease {
                expected: LeaseVersion(6),
                ..
            }
        ),
        "{a:?}"
    );
    assert!(!has(&a, |a| *a == Action::FenceWrites));
}

fn confirm(from: &str, sent: u64) -> FailsafeReply {
    FailsafeReply {
        from: n(from),
        to: n("pg-0"),
        term: 1,
        probe_sent_at: Millis(sent),
        confirmed: true,
        following: Some(n("pg-0")),
    }
}

/// Failsafe: with the coordinator unreachable, the primary keeps serving while
/// every replica confirms directly; its deadline runs from the oldest
/// confirmed probe.
#[test]
fn failsafe_keeps_the_primary_while_every_replica_confirms() {
    let s = leader(config("pg-0"));
    let mut t = tick(pg_primary(1100, 1), None);
    t.failsafe_replies = vec![confirm("pg-1", 2000), confirm("pg-2", 2000)];
    let (s, a) = run(s, 2250, t);
    assert!(!has(&a, |a| *a == Action::FenceWrites));
    assert_eq!(s.write_deadline(), Some(Millis(2000 + 1200)));
    assert!(has(&a, |a| *a
        == Action::ArmWatchdog {
            deadline: Millis(3200)
        }));
}

/// Failsafe: confirmations fed as they arrive (after the probing batch)
/// re-arm the fence at once with the deadline they extend; partial or
/// stale ones arm nothing later than the machine would.
#[test]
fn failsafe_replies_re_arm_the_fence_as_they_arrive() {
    let s = leader(config("pg-0"));
    // The deadline from the last renewal, before any confirmation.
    let before = s.write_deadline();
    let (s, a) = step(
        s,
        Millis(2250),
        Observation::FailsafeReplies(vec![confirm("pg-1", 2000)]),
    );
    assert_eq!(
        s.write_deadline(),
        before,
        "one of two peers extends nothing"
    );
    assert!(
        a.iter().all(|a| matches!(a, Action::ArmWatchdog { .. })),
        "{a:?}"
    );
    let (s, a) = step(
        s,
        Millis(2260),
        Observation::FailsafeReplies(vec![confirm("pg-2", 2000)]),
    );
    assert_eq!(s.write_deadline(), Some(Millis(2000 + 1200)));
    assert_eq!(
        a,
        vec![Action::ArmWatchdog {
            deadline: Millis(3200)
        }]
    );
    // Past the deadline: nothing to arm (the fencer has fired).
    let (_, a) = step(
        s,
        Millis(3300),
        Observation::FailsafeReplies(vec![confirm("pg-1", 2000)]),
    );
    assert!(a.is_empty(), "{a:?}");
}

/// Failsafe: one replica that does not confirm is enough to fence.
#[test]
fn failsafe_fences_when_one_replica_does_not_confirm() {
    let s = leader(config("pg-0"));
    let mut t = tick(pg_primary(1100, 1), None);
    t.failsafe_replies = vec![confirm("pg-1", 2000)];
    let (_, a) = run(s, 2250, t);
    assert!(has(&a, |a| *a == Action::FenceWrites), "{a:?}");
}

fn replica_seeing(holder_version: u64, now: u64) -> MachineState {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let v = view(
        Some(lease(record("pg-0", 1, 1), holder_version)),
        vec![member("pg-0", MemberRole::Primary, 1000, 1, None)],
    );
    run(s, now, tick(pg_replica("pg-0", 1000, 1), Some(v))).0
}

fn probe(sent: u64) -> Observation {
    Observation::FailsafeProbe(FailsafeProbe {
        from: n("pg-0"),
        term: 1,
        timeline: Timeline(1),
        sent_at: Millis(sent),
    })
}

/// Failsafe: a replica that confirms promises not to take the lease until a
/// full lease duration after its answer.
#[test]
fn confirming_a_probe_is_a_promise_not_to_promote_for_a_lease_duration() {
    let s = replica_seeing(3, 100);
    let (s, a) = step(s, Millis(500), probe(480));
    assert!(
        matches!(&a[..], [Action::AnswerProbe(r)] if r.confirmed && r.probe_sent_at == Millis(480))
    );
    assert_eq!(s.no_acquire_before(), Millis(500 + 2000));
}

/// Failsafe: a replica that reads the coordinator and sees the lease
/// unrenewed for a lease duration refuses, so an isolated primary fences.
#[test]
fn replica_refuses_the_probe_once_the_lease_looks_expired() {
    let s = replica_seeing(3, 100);
    let (_, a) = step(s, Millis(2200), probe(2190));
    assert!(matches!(&a[..], [Action::AnswerProbe(r)] if !r.confirmed));
}

/// Failover: a replica that cannot reach the coordinator never promotes,
/// however long the primary is silent.
#[test]
fn replica_without_coordinator_never_promotes() {
    let mut s = replica_seeing(3, 100);
    for now in (350..20_000).step_by(250) {
        let (next, a) = run(s, now, tick(pg_replica("pg-0", 1000, 1), None));
        assert!(!has(&a, |a| matches!(
            a,
            Action::AcquireLease { .. } | Action::Promote { .. }
        )));
        s = next;
    }
}

fn expired_view(me_lsn: u64, other_lsn: u64) -> ClusterView {
    view(
        Some(lease(record("pg-0", 1, 1), 3)),
        vec![
            member("pg-0", MemberRole::Primary, 1000, 1, None),
            member("pg-2", MemberRole::Replica, other_lsn, 7, Some("pg-0")),
            member("pg-1", MemberRole::Replica, me_lsn, 7, Some("pg-0")),
        ],
    )
}

/// Tick pg-1 at 100 (first sight of the lease) and again after it expired,
/// with pg-2's heartbeat fresh.
fn after_expiry(cfg: HaConfig, me_lsn: u64, other_lsn: u64) -> Vec<Action> {
    let s = MachineState::new(cfg, Millis(0));
    let (s, _) = run(
        s,
        100,
        tick(
            pg_replica("pg-0", me_lsn, 1),
            Some(expired_view(me_lsn, other_lsn)),
        ),
    );
    let mut v = expired_view(me_lsn, other_lsn);
    let other = v.members.get_mut(&n("pg-2")).expect("present");
    other.heartbeat = 8;
    // With the primary gone, nobody streams any more.
    other.healthy = false;
    let mut pg = pg_replica("pg-0", me_lsn, 1);
    pg.streaming = false;
    run(s, 2150, tick(pg, Some(v))).1
}

/// Failover: once the lease expired, the best-ranked replica acquires it
/// (next term, next timeline) and promotes in the same batch, after the
/// compare-and-swap.
#[test]
fn best_replica_takes_over_an_expired_lease_and_promotes() {
    let a = after_expiry(config("pg-1"), 1000, 900);
    let k = kinds(&a);
    let cas = k
        .iter()
        .position(|k| *k == ActionKind::Lease)
        .expect("acquires");
    let promote = k
        .iter()
        .position(|k| *k == ActionKind::Promote)
        .expect("promotes");
    assert!(cas < promote);
    assert!(
        matches!(&a[cas], Action::AcquireLease { expected: LeaseVersion(3), record }
        if record.term == 2 && record.timeline == Timeline(2) && record.holder == Some(n("pg-1")))
    );
    assert!(has(&a, |a| *a
        == Action::Promote {
            timeline: Timeline(2)
        }));
}

/// Failover: a replica that ranks below another eligible one waits.
#[test]
fn lower_ranked_replica_leaves_the_lease_to_the_better_one() {
    let a = after_expiry(config("pg-1"), 900, 1000);
    assert!(
        !has(&a, |a| matches!(a, Action::AcquireLease { .. })),
        "{a:?}"
    );
}

/// Failover: not before the lease expired by this member's own observation.
#[test]
fn no_takeover_before_the_lease_expires() {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let (s, _) = run(
        s,
        100,
        tick(pg_replica("pg-0", 1000, 1), Some(expired_view(1000, 900))),
    );
    let (_, a) = run(
        s,
        2000,
        tick(pg_replica("pg-0", 1000, 1), Some(expired_view(1000, 900))),
    );
    assert!(!has(&a, |a| matches!(a, Action::AcquireLease { .. })));
}

/// Ranking: healthy first, then received LSN, then replayed LSN, then name.
#[test]
fn ranking_is_one_total_order_with_name_as_tie_break() {
    let c = |name: &str, healthy, rx, rp| Candidate {
        name: n(name),
        healthy,
        received_lsn: Lsn(rx),
        replayed_lsn: Lsn(rp),
    };
    let mut v = [
        c("pg-3", true, 10, 10),
        c("pg-2", true, 10, 10),
        c("pg-1", false, 99, 99),
        c("pg-4", true, 10, 11),
        c("pg-0", true, 9, 99),
    ];
    v.sort_by(Candidate::rank);
    let names: Vec<&str> = v.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["pg-4", "pg-2", "pg-3", "pg-0", "pg-1"]);
}

/// Lag limit: in async mode a replica too far behind the last known primary
/// position never promotes automatically.
#[test]
fn async_replica_beyond_the_lag_limit_never_promotes() {
    let a = after_expiry(config("pg-1"), 10, 5);
    assert!(
        !has(&a, |a| matches!(a, Action::AcquireLease { .. })),
        "{a:?}"
    );
}

/// Sync mode: only a member published as synchronous standby may promote.
#[test]
fn sync_mode_only_a_synchronous_standby_promotes() {
    let cfg = config_with(
        "pg-1",
        replication(ReplicationMode::Sync, NoStandbyPolicy::Block),
    );
    let a = after_expiry(cfg, 1000, 900);
    assert!(
        !has(&a, |a| matches!(a, Action::AcquireLease { .. })),
        "not a sync standby: {a:?}"
    );
}

/// Fencing: a primary that sees someone else's lease stops writes at once.
#[test]
fn primary_seeing_another_holder_fences_and_demotes_immediately() {
    let s = MachineState::new(config("pg-0"), Millis(0));
    let v = view(Some(lease(record("pg-1", 2, 2), 9)), vec![]);
    let (_, a) = run(s, 10, tick(pg_primary(1000, 1), Some(v)));
    assert_eq!(a[0], Action::FenceWrites);
    assert_eq!(
        a[1],
        Action::Demote {
            mode: StopMode::Immediate
        }
    );
}

fn rejoin(end: u64, failed: Option<ActionKind>) -> Vec<Action> {
    let s = MachineState::new(config("pg-0"), Millis(0));
    let mut rec = record("pg-1", 2, 2);
    rec.history = vec![TimelineEnd {
        timeline: Timeline(1),
        end: Lsn(800),
    }];
    let mut primary = member("pg-1", MemberRole::Primary, 1200, 1, None);
    primary.timeline = Timeline(2);
    let v = view(Some(lease(rec, 9)), vec![primary]);
    let mut pg = pg_primary(end, 1);
    pg.running = false;
    let mut t = tick(pg, Some(v));
    t.failed_action = failed;
    run(s, 10, t).1
}

/// Re-join: an old primary whose WAL went past the fork point rewinds from
/// the new primary; if rewind fails it re-clones.
#[test]
fn diverged_old_primary_rewinds_then_reclones_if_rewind_fails() {
    assert!(has(&rejoin(1000, None), |a| *a
        == Action::Rewind { from: n("pg-1") }));
    assert!(has(&rejoin(1000, Some(ActionKind::Rewind)), |a| *a
        == Action::Reclone { from: n("pg-1") }));
}

/// Re-join: an old primary whose WAL is a prefix of the new lineage just follows.
#[test]
fn old_primary_on_the_lineage_rejoins_as_a_replica_without_rewind() {
    let a = rejoin(800, None);
    assert!(
        has(&a, |a| *a == Action::StartAsReplica { of: n("pg-1") }),
        "{a:?}"
    );
    assert!(!has(&a, |a| matches!(a, Action::Rewind { .. })));
}

/// A member whose data has another system identifier refuses to join.
#[test]
fn foreign_system_identifier_refuses_to_join() {
    let s = MachineState::new(config("pg-2"), Millis(0));
    let mut pg = pg_replica("pg-0", 10, 1);
    pg.data = DataDir::Initialized(SystemId(7));
    let v = view(
        Some(lease(record("pg-0", 1, 1), 3)),
        vec![member("pg-0", MemberRole::Primary, 1, 1, None)],
    );
    let (s, a) = run(s, 10, tick(pg, Some(v)));
    assert_eq!(s.phase(), Phase::Refused);
    assert!(has(&a, |a| matches!(a, Action::Demote { .. })));
    assert!(has(
        &a,
        |a| matches!(a, Action::PublishState(m) if m.role == MemberRole::Refused)
    ));
    assert!(!has(&a, |a| matches!(
        a,
        Action::StartAsReplica { .. } | Action::Reclone { .. }
    )));
}

/// Switchover: the primary stops cleanly, waits for the target to flush the
/// final WAL position, then hands the lease over and clears the request.
#[test]
fn switchover_stops_cleanly_then_hands_over_to_the_caught_up_target() {
    let s = leader(config("pg-0"));
    let l = s.held_lease().expect("holds").clone();
    let mut v = view(
        Some(l.clone()),
        vec![member("pg-1", MemberRole::Replica, 1100, 1, Some("pg-0"))],
    );
    v.switchover = Some(SwitchoverRequest {
        id: 7,
        target: Some(n("pg-1")),
        forced: false,
    });
    let mut pg = pg_primary(1100, 1);
    pg.replicas = vec![ReplicaProgress {
        name: n("pg-1"),
        flushed_lsn: Lsn(1100),
    }];
    let (s, a) = run(s, 1300, tick(pg.clone(), Some(v.clone())));
    assert!(
        has(&a, |a| *a
            == Action::Demote {
                mode: StopMode::Fast
            }),
        "{a:?}"
    );
    assert_eq!(s.phase(), Phase::SwitchingOver);
    // Stopped at 1120; the target has only 1100: keep the lease, wait.
    pg.running = false;
    pg.flushed_lsn = Lsn(1120);
    pg.received_lsn = Lsn(1120);
    pg.replayed_lsn = Lsn(1120);
    v.members.get_mut(&n("pg-1")).expect("present").heartbeat = 2;
    let (s, a) = run(s, 1550, tick(pg.clone(), Some(v.clone())));
    assert!(has(&a, |a| matches!(a, Action::RenewLease { .. })));
    assert!(!has(&a, |a| matches!(a, Action::HandOverLease { .. })));
    let target = v.members.get_mut(&n("pg-1")).expect("present");
    target.flushed_lsn = Lsn(1120);
    target.heartbeat = 3;
    let (_, a) = run(s, 1800, tick(pg, Some(v)));
    assert!(
        matches!(&a[0], Action::HandOverLease { to, record, .. } if *to == n("pg-1") && record.term == 2)
    );
    assert!(has(&a, |a| *a == Action::ClearSwitchover { id: 7 }));
}

/// A switchover to pg-1 (streaming, caught up at 1100) requested of pg-0
/// holding `l`: the clean stop at 1300, then the tick at 1550 that hands
/// over. Returns that tick's state and actions, and pg-0's stopped server.
fn stop_and_hand_over(
    s: MachineState,
    l: Lease,
    sync: SyncStandbys,
) -> (MachineState, Vec<Action>, PgObservation) {
    let mut v = view(
        Some(l),
        vec![member("pg-1", MemberRole::Replica, 1100, 1, Some("pg-0"))],
    );
    v.switchover = Some(SwitchoverRequest {
        id: 7,
        target: Some(n("pg-1")),
        forced: false,
    });
    let mut pg = pg_primary(1100, 1);
    pg.replicas = vec![ReplicaProgress {
        name: n("pg-1"),
        flushed_lsn: Lsn(1100),
    }];
    pg.sync_standbys = sync;
    let (s, _) = run(s, 1300, tick(pg.clone(), Some(v.clone())));
    pg.running = false;
    v.members.get_mut(&n("pg-1")).expect("present").heartbeat = 2;
    let (s, a) = run(s, 1550, tick(pg.clone(), Some(v)));
    (s, a, pg)
}

/// Switchover: once the hand-over is sent, the old primary never serves on
/// the old lease again, even when it never learns whether the write happened
/// and then loses the coordinator (found by the simulator, seed 19063).
#[test]
fn hand_over_with_unknown_outcome_never_restarts_as_primary() {
    let s = leader(config("pg-0"));
    let l = s.held_lease().expect("holds").clone();
    let (s, a, pg) = stop_and_hand_over(s, l, SyncStandbys::Off);
    assert!(has(&a, |a| matches!(a, Action::HandOverLease { .. })));
    assert_eq!(s.write_deadline(), None);
    let mut t = tick(pg, None);
    t.lease_outcome = Some(LeaseOutcome::Failed);
    let (_, a) = run(s, 1800, t);
    assert!(
        !has(&a, |a| matches!(
            a,
            Action::StartAsPrimary | Action::Promote { .. }
        )),
        "{a:?}"
    );
}

/// The synchronous standbys a sync-mode (`block`) primary writes into its
/// hand-over to pg-1 when the lease lists `listed`.
fn hand_over_sync_set(listed: &[&str]) -> BTreeSet<MemberName> {
    let s = sync_leader(NoStandbyPolicy::Block);
    let mut l = s.held_lease().expect("holds").clone();
    l.version = LeaseVersion(6);
    l.record.sync_standbys = listed.iter().copied().map(n).collect();
    let configured = SyncStandbys::AllOf(listed.iter().copied().map(n).collect());
    let (_, a, _) = stop_and_hand_over(s, l, configured);
    a.iter()
        .find_map(|a| match a {
            Action::HandOverLease { record, .. } => Some(record.sync_standbys.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no hand-over: {a:?}"))
}

/// Sync mode: a switchover that would leave the new primary without a
/// synchronous standby names the cleanly stopped old primary (it holds
/// exactly what the target has), so the target's commits wait for it from
/// the start and it stays promotable; another listed standby is kept as is.
#[test]
fn sync_hand_over_names_the_old_primary_when_no_other_standby_is_listed() {
    let set = |names: &[&str]| names.iter().copied().map(n).collect::<BTreeSet<_>>();
    assert_eq!(hand_over_sync_set(&["pg-1"]), set(&["pg-0"]));
    assert_eq!(hand_over_sync_set(&[]), set(&["pg-0"]));
    assert_eq!(hand_over_sync_set(&["pg-1", "pg-2"]), set(&["pg-2"]));
}

/// Switchover: the target, finding itself holder, renews and promotes in one batch.
#[test]
fn switchover_target_renews_then_promotes() {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let mut rec = record("pg-1", 2, 2);
    rec.history = vec![TimelineEnd {
        timeline: Timeline(1),
        end: Lsn(1120),
    }];
    let (_, a) = run(
        s,
        10,
        tick(
            pg_replica("pg-0", 1120, 1),
            Some(view(Some(lease(rec, 9)), vec![])),
        ),
    );
    let k = kinds(&a);
    assert_eq!(k[0], ActionKind::Lease);
    assert!(has(&a, |a| *a
        == Action::Promote {
            timeline: Timeline(2)
        }));
}

fn sync_leader(policy: NoStandbyPolicy) -> MachineState {
    leader(config_with(
        "pg-0",
        replication(ReplicationMode::Sync, policy),
    ))
}

fn renew_set(a: &[Action]) -> BTreeSet<MemberName> {
    a.iter()
        .find_map(|a| match a {
            Action::RenewLease { record, .. } => Some(record.sync_standbys.clone()),
            _ => None,
        })
        .expect("renews")
}

/// Sync mode (`fallbackToAsync`): a standby is added to
/// synchronous_standby_names first and published as promotable only after it
/// flushed past the point where it was added.
#[test]
fn sync_standby_is_published_only_after_catching_up() {
    let s = sync_leader(NoStandbyPolicy::FallbackToAsync);
    let l = s.held_lease().expect("holds").clone();
    let v = Some(view(Some(l), vec![]));
    let mut pg = pg_primary(1000, 1);
    pg.sync_standbys = SyncStandbys::AllOf(BTreeSet::new());
    pg.replicas = vec![ReplicaProgress {
        name: n("pg-1"),
        flushed_lsn: Lsn(900),
    }];
    let (s, a) = run(s, 1500, tick(pg.clone(), v.clone()));
    let pg1: BTreeSet<MemberName> = [n("pg-1")].into();
    assert!(
        has(&a, |a| *a
            == Action::SetSyncStandbys(SyncStandbys::AllOf(pg1.clone()))),
        "{a:?}"
    );
    assert!(renew_set(&a).is_empty());
    pg.sync_standbys = SyncStandbys::AllOf(pg1.clone());
    pg.flushed_lsn = Lsn(1050);
    let (s, a) = run(s, 1750, tick(pg.clone(), v.clone()));
    assert!(renew_set(&a).is_empty(), "added at 1050, flushed 900");
    pg.replicas[0].flushed_lsn = Lsn(1050);
    let (_, a) = run(s, 2000, tick(pg, v));
    assert_eq!(renew_set(&a), pg1);
}

/// Sync mode (`block`) with nobody published: the primary waits (commits
/// block) until the standby has flushed everything it has, then publishes and
/// configures it in the same step, so there is never a moment where a
/// standby acknowledges commits while the lease names nobody (a crash then
/// would leave no member eligible).
#[test]
fn sync_block_publishes_and_configures_the_first_standby_together() {
    let s = sync_leader(NoStandbyPolicy::Block);
    let l = s.held_lease().expect("holds").clone();
    let v = Some(view(Some(l), vec![]));
    let mut pg = pg_primary(1000, 1);
    pg.sync_standbys = SyncStandbys::AllOf(BTreeSet::new());
    pg.replicas = vec![ReplicaProgress {
        name: n("pg-1"),
        flushed_lsn: Lsn(900),
    }];
    let (s, a) = run(s, 1500, tick(pg.clone(), v.clone()));
    assert!(
        !has(&a, |a| matches!(a, Action::SetSyncStandbys(_))),
        "behind: not configured yet: {a:?}"
    );
    assert!(renew_set(&a).is_empty());
    pg.replicas[0].flushed_lsn = Lsn(1000);
    let (_, a) = run(s, 1750, tick(pg, v));
    let pg1: BTreeSet<MemberName> = [n("pg-1")].into();
    assert!(
        has(&a, |a| *a
            == Action::SetSyncStandbys(SyncStandbys::AllOf(pg1.clone()))),
        "{a:?}"
    );
    assert_eq!(renew_set(&a), pg1, "published in the same step");
}

/// Sync mode without a healthy standby: `fallbackToAsync` first unpublishes
/// the standby set, then turns synchronous commit off; `block` keeps waiting.
#[test]
fn sync_mode_without_standbys_falls_back_only_when_allowed() {
    for (policy, expect_off) in [
        (NoStandbyPolicy::FallbackToAsync, true),
        (NoStandbyPolicy::Block, false),
    ] {
        let s = sync_leader(policy);
        let l = s.held_lease().expect("holds").clone();
        let mut pg = pg_primary(1000, 1);
        pg.sync_standbys = SyncStandbys::AllOf(BTreeSet::new());
        let (_, a) = run(s, 1500, tick(pg, Some(view(Some(l), vec![]))));
        assert_eq!(
            has(&a, |a| *a == Action::SetSyncStandbys(SyncStandbys::Off)),
            expect_off,
            "{policy:?}: {a:?}"
        );
    }
}

/// A lost renewal (someone else wrote the lease) ends the leadership at once.
#[test]
fn lost_renewal_ends_leadership() {
    let s = leader(config("pg-0"));
    let mut t = tick(
        pg_primary(1100, 1),
        Some(view(Some(lease(record("pg-1", 2, 2), 6)), vec![])),
    );
    t.lease_outcome = Some(LeaseOutcome::Lost(None));
    let (s, a) = run(s, 1500, t);
    assert!(s.held_lease().is_none());
    assert_eq!(a[0], Action::FenceWrites);
}

/// Configuration: unsafe timings and unknown members are refused.
#[test]
fn config_refuses_unsafe_timings_and_unknown_members() {
    let rep = replication(ReplicationMode::Async, NoStandbyPolicy::Block);
    let members = ["pg-0", "pg-1"].map(MemberName::from);
    let unsafe_timings = FailoverTimings {
        renew_deadline: Duration::from_millis(1900),
        ..FailoverTimings::default()
    };
    let e =
        HaConfig::new(n("pg-0"), members.clone(), unsafe_timings, rep, true).expect_err("unsafe");
    assert_eq!(e.category(), "unsafe_timings");
    let e = HaConfig::new(n("pg-9"), members, FailoverTimings::default(), rep, true)
        .expect_err("unknown");
    assert_eq!(e.category(), "unknown_member");
}
