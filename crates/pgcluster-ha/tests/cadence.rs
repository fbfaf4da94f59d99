//! When the next tick is due (`machine::cadence`): a loop interval while
//! anything moves, the idle interval while a member is steady, and a
//! replica's tick at the moment the lease would expire.

mod machine_support;

use machine_support::*;
use pgcluster_ha::machine::*;

/// The idle interval with the default timings: renew deadline 1200 ms minus
/// a hanging write (600 ms) minus a loop (250 ms).
const IDLE: u64 = 350;
const LOOP: u64 = 250;

/// The next renewal of a confirmed leader, answered with `outcome`.
fn renewal(outcome: Option<LeaseOutcome>) -> u64 {
    let s = leader(config("pg-0"));
    let mut won = lease(record("pg-0", 1, 1), 5);
    won.record.renewed_at = Millis(1250);
    let t = tick(
        pg_primary(1000, 1),
        Some(view(
            Some(won),
            vec![member("pg-1", MemberRole::Replica, 1000, 1, Some("pg-0"))],
        )),
    );
    let (s, actions) = run(s, 1500, t);
    assert!(
        has(&actions, |a| matches!(a, Action::RenewLease { .. })),
        "{actions:?}"
    );
    next_tick(&s, Millis(1500), &actions).after(outcome.as_ref())
}

#[test]
fn a_steady_primary_renews_at_the_idle_interval() {
    let mut won = lease(record("pg-0", 1, 1), 6);
    won.record.renewed_at = Millis(1500);
    assert_eq!(renewal(Some(LeaseOutcome::Won(won))), IDLE);
}

#[test]
fn a_renewal_not_won_is_retried_a_loop_later() {
    assert_eq!(renewal(Some(LeaseOutcome::Failed)), LOOP);
    assert_eq!(renewal(Some(LeaseOutcome::Lost(None))), LOOP);
    // The executor did not get to the write.
    assert_eq!(renewal(None), LOOP);
}

#[test]
fn a_primary_that_could_not_read_the_coordinator_probes_every_loop() {
    let s = leader(config("pg-0"));
    let (s, actions) = run(s, 1500, tick(pg_primary(1000, 1), None));
    assert!(
        has(&actions, |a| matches!(a, Action::ProbePeers(_))),
        "{actions:?}"
    );
    assert_eq!(next_tick(&s, Millis(1500), &actions).after(None), LOOP);
}

/// A replica that saw lease version 5 first at 1000 ms: expiry at 3000 ms.
fn replica_at(now: u64) -> (Phase, u64) {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let v = view(
        Some(lease(record("pg-0", 1, 1), 5)),
        vec![member("pg-0", MemberRole::Primary, 1000, 1, None)],
    );
    let (s, _) = run(s, 1000, tick(pg_replica("pg-0", 1000, 1), Some(v.clone())));
    let (s, actions) = run(s, now, tick(pg_replica("pg-0", 1000, 1), Some(v)));
    (s.phase(), next_tick(&s, Millis(now), &actions).after(None))
}

#[test]
fn a_steady_replica_ticks_at_the_idle_interval_and_at_the_lease_expiry() {
    assert_eq!(replica_at(1300), (Phase::Replica, IDLE));
    // 3000 - 2800: woken exactly when the unchanged lease expires.
    assert_eq!(replica_at(2800), (Phase::Replica, 200));
    assert_eq!(replica_at(2999), (Phase::Replica, 1));
}

#[test]
fn a_replica_that_finds_the_lease_expired_takes_over_at_the_loop_cadence() {
    assert_eq!(replica_at(3000), (Phase::Promoting, LOOP));
}

#[test]
fn anything_but_routine_work_keeps_the_loop_interval() {
    let s = MachineState::new(config("pg-1"), Millis(0));
    let v = view(
        Some(lease(record("pg-0", 1, 1), 5)),
        vec![member("pg-0", MemberRole::Primary, 1000, 1, None)],
    );
    // A stopped replica is started: not steady.
    let mut pg = pg_replica("pg-0", 1000, 1);
    pg.running = false;
    pg.streaming = false;
    let (s, actions) = run(s, 1000, tick(pg, Some(v)));
    assert!(!actions.iter().all(cadence::routine), "{actions:?}");
    assert_eq!(next_tick(&s, Millis(1000), &actions).after(None), LOOP);
}
