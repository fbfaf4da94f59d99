//! Builders shared by the state-machine transition tests: configs, observations,
//! lease records, member states, and a confirmed leader.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeSet;

use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_core::timing::FailoverTimings;
use pgcluster_core::validated::ResolvedReplication;
use pgcluster_ha::machine::*;

pub const SYS: SystemId = SystemId(42);

pub fn replication(mode: ReplicationMode, policy: NoStandbyPolicy) -> ResolvedReplication {
    ResolvedReplication {
        mode,
        when_no_standby: policy,
        max_failover_lag_bytes: 100,
    }
}

pub fn config_with(me: &str, rep: ResolvedReplication) -> HaConfig {
    let members = ["pg-0", "pg-1", "pg-2"].map(MemberName::from);
    HaConfig::new(me.into(), members, FailoverTimings::default(), rep, true)
        .expect("default timings are safe")
}

pub fn config(me: &str) -> HaConfig {
    config_with(
        me,
        replication(ReplicationMode::Async, NoStandbyPolicy::Block),
    )
}

pub fn n(s: &str) -> MemberName {
    MemberName::from(s)
}

pub fn pg_primary(lsn: u64, tl: u32) -> PgObservation {
    PgObservation {
        data: DataDir::Initialized(SYS),
        running: true,
        in_recovery: false,
        timeline: Timeline(tl),
        received_lsn: Lsn(lsn),
        replayed_lsn: Lsn(lsn),
        flushed_lsn: Lsn(lsn),
        ..PgObservation::empty()
    }
}

pub fn pg_replica(of: &str, lsn: u64, tl: u32) -> PgObservation {
    PgObservation {
        in_recovery: true,
        upstream: Some(n(of)),
        streaming: true,
        ..pg_primary(lsn, tl)
    }
}

pub fn record(holder: &str, term: u64, tl: u32) -> LeaseRecord {
    LeaseRecord {
        holder: Some(n(holder)),
        term,
        renewed_at: Millis(0),
        duration_ms: 2000,
        system_identifier: Some(SYS),
        timeline: Timeline(tl),
        history: Vec::new(),
        max_timeline: Timeline(tl),
        primary_lsn: Lsn(1000),
        sync_standbys: BTreeSet::new(),
    }
}

pub fn lease(rec: LeaseRecord, version: u64) -> Lease {
    Lease {
        version: LeaseVersion(version),
        record: rec,
    }
}

pub fn member(
    name: &str,
    role: MemberRole,
    lsn: u64,
    heartbeat: u64,
    following: Option<&str>,
) -> MemberState {
    MemberState {
        name: n(name),
        role,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(lsn),
        replayed_lsn: Lsn(lsn),
        flushed_lsn: Lsn(lsn),
        system_identifier: Some(SYS),
        following: following.map(n),
        sync_eligible: following.is_some(),
        last_seen: Millis(0),
        heartbeat,
    }
}

pub fn view(lease: Option<Lease>, members: Vec<MemberState>) -> ClusterView {
    ClusterView {
        lease,
        members: members.into_iter().map(|m| (m.name.clone(), m)).collect(),
        switchover: None,
    }
}

pub fn tick(postgres: PgObservation, view: Option<ClusterView>) -> TickObservation {
    TickObservation {
        postgres,
        view,
        lease_outcome: None,
        failed_action: None,
        failsafe_replies: Vec::new(),
    }
}

pub fn run(state: MachineState, now: u64, t: TickObservation) -> (MachineState, Vec<Action>) {
    step(state, Millis(now), Observation::Tick(Box::new(t)))
}

pub fn has(actions: &[Action], f: impl Fn(&Action) -> bool) -> bool {
    actions.iter().any(f)
}

pub fn kinds(actions: &[Action]) -> Vec<ActionKind> {
    actions.iter().map(Action::kind).collect()
}

/// A pg-0 that holds the lease (version 5, term 1) confirmed at local time 1000.
pub fn leader(cfg: HaConfig) -> MachineState {
    let l = lease(record("pg-0", 1, 1), 4);
    let s = MachineState::new(cfg, Millis(0));
    let (s, a) = run(
        s,
        1000,
        tick(pg_primary(1000, 1), Some(view(Some(l.clone()), vec![]))),
    );
    assert!(has(&a, |a| matches!(a, Action::RenewLease { .. })), "{a:?}");
    let mut won = l.clone();
    won.version = LeaseVersion(5);
    let mut t = tick(pg_primary(1000, 1), Some(view(Some(won.clone()), vec![])));
    t.lease_outcome = Some(LeaseOutcome::Won(won));
    let (s, _) = run(s, 1250, t);
    assert_eq!(s.phase(), Phase::Primary);
    s
}
