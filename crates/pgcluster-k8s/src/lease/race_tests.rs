//! Two members race for an expired Lease through [`KubeLeaseCoordinator`]
//! (tower-test) driven by the pure HA machine: the API server answers 409 to
//! the loser's replace; the loser never promotes and follows the winner.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;

use http::Method;
use pgcluster_core::timing::FailoverTimings;
use pgcluster_ha::machine::{
    Action, ActionKind, DataDir, LeaseOutcome, Lsn, MachineState, Millis, Observation,
    PgObservation, Phase, SystemId, TickObservation, Timeline, step,
};

use super::machine_fixtures::{LEASE, config, lease_object};
use super::*;
use crate::testing::api_server::{ApiServerVerifier, Reply, conflict};

const SYS: SystemId = SystemId(42);

/// A standby of `of` that has received WAL up to `lsn` on timeline 1.
fn standby(of: &str, lsn: u64) -> PgObservation {
    PgObservation {
        data: DataDir::Initialized(SYS),
        running: true,
        in_recovery: true,
        timeline: Timeline(1),
        received_lsn: Lsn(lsn),
        replayed_lsn: Lsn(lsn),
        flushed_lsn: Lsn(lsn),
        upstream: Some(MemberName::from(of)),
        streaming: true,
        ..PgObservation::empty()
    }
}

/// The Lease as the API server stores it: the record and its resourceVersion.
#[derive(Clone)]
struct Stored {
    lease: Lease,
    rv: u64,
}

/// One agent: the machine, its coordinator on its own scripted API server,
/// and a model of its PostgreSQL that follows the executed actions.
struct Agent {
    machine: MachineState,
    coord: KubeLeaseCoordinator,
    server: ApiServerVerifier,
    pg: PgObservation,
    outcome: Option<LeaseOutcome>,
    failed: Option<ActionKind>,
    /// Every action the executor carried out (a lost compare-and-swap ends
    /// the batch, as in `pgcluster_ha::agent::execute::Executor::run`).
    executed: Vec<(Millis, Action)>,
    /// What this agent's last read of the Lease returned.
    read: Option<Stored>,
}

impl Agent {
    fn new(me: &str, pg: PgObservation) -> Self {
        let (client, server) = ApiServerVerifier::new();
        Self {
            machine: MachineState::new(config(me, &["pg-0", "pg-1", "pg-2"]), Millis(0)),
            coord: KubeLeaseCoordinator::new(client, "db", &ClusterName::new("pg").unwrap()),
            server,
            pg,
            outcome: None,
            failed: None,
            executed: vec![],
            read: None,
        }
    }

    /// Observes (the Lease as `stored`, the member states in `members`) and
    /// steps the machine; returns the batch to execute.
    fn decide(
        &mut self,
        now: Millis,
        stored: &Stored,
        members: &BTreeMap<MemberName, MemberState>,
    ) -> Vec<Action> {
        self.read = Some(stored.clone());
        let tick = TickObservation {
            postgres: self.pg.clone(),
            view: Some(ClusterView {
                lease: Some(stored.lease.clone()),
                members: members.clone(),
                switchover: None,
            }),
            lease_outcome: self.outcome.take(),
            failed_action: self.failed.take(),
            failsafe_replies: vec![],
        };
        let (next, actions) = step(self.machine.clone(), now, Observation::Tick(Box::new(tick)));
        self.machine = next;
        actions
    }

    /// Executes `actions` against the API server holding `stored`; returns
    /// this member's published state, if it published one.
    async fn execute(
        &mut self,
        now: Millis,
        actions: Vec<Action>,
        stored: &mut Stored,
    ) -> Option<MemberState> {
        let mut published = None;
        for action in actions {
            if let Some((expected, record)) = action.lease_cas() {
                let lost = self.cas(expected, record.clone(), stored).await;
                self.executed.push((now, action.clone()));
                if lost {
                    self.failed = Some(ActionKind::Lease);
                    break;
                }
                continue;
            }
            self.executed.push((now, action.clone()));
            match action {
                Action::Promote { timeline } => {
                    self.pg.in_recovery = false;
                    self.pg.upstream = None;
                    self.pg.streaming = false;
                    self.pg.timeline = timeline;
                }
                Action::StartAsReplica { of } => {
                    self.pg.in_recovery = true;
                    self.pg.running = true;
                    self.pg.upstream = Some(of);
                    self.pg.streaming = true;
                }
                Action::PublishState(state) => published = Some(state),
                _ => {}
            }
        }
        published
    }

    /// One compare-and-swap. The server answers the way a real one would
    /// after the reads and writes so far: when the Lease changed since this
    /// agent's read in this tick, its replace carries the old
    /// resourceVersion and gets 409. Returns whether the swap was lost.
    async fn cas(
        &mut self,
        expected: LeaseVersion,
        record: LeaseRecord,
        stored: &mut Stored,
    ) -> bool {
        let read = self.read.clone().unwrap();
        let overrides = if read.rv == stored.rv {
            vec![
                (
                    Method::GET,
                    LEASE.to_owned(),
                    Reply::Ok(lease_object(stored.rv, &stored.lease)),
                ),
                (Method::PUT, LEASE.to_owned(), Reply::Echo),
            ]
        } else {
            vec![
                (
                    Method::GET,
                    LEASE.to_owned(),
                    Reply::Ok(lease_object(read.rv, &read.lease)),
                ),
                (Method::PUT, LEASE.to_owned(), conflict()),
                (
                    Method::GET,
                    LEASE.to_owned(),
                    Reply::Ok(lease_object(stored.rv, &stored.lease)),
                ),
            ]
        };
        let seen_before = self.server.seen.len();
        let result = self
            .server
            .serve_while(
                self.coord.compare_and_swap_lease(expected, record),
                overrides,
            )
            .await
            .unwrap();
        if read.rv != stored.rv {
            let calls: Vec<_> = self.server.calls()[seen_before..].to_vec();
            assert_eq!(
                calls.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
                ["GET", "PUT", "GET"],
                "the replace is sent with the stale resourceVersion, answered 409, then re-read"
            );
            let put = &self.server.seen[seen_before + 1];
            assert_eq!(put.body["metadata"]["resourceVersion"], read.rv.to_string());
        }
        match result {
            CasOutcome::Won(lease) => {
                *stored = Stored {
                    lease: lease.clone(),
                    rv: stored.rv + 1,
                };
                self.outcome = Some(LeaseOutcome::Won(lease));
                false
            }
            CasOutcome::Lost(current) => {
                self.outcome = Some(LeaseOutcome::Lost(current));
                true
            }
        }
    }

    fn promoted(&self) -> bool {
        self.executed
            .iter()
            .any(|(_, a)| matches!(a, Action::Promote { .. }))
    }
}

/// pg-2, the primary, is gone and its lease expires. pg-0 and pg-1 both
/// rank themselves first (pg-1 has not seen pg-0's state) and both acquire
/// in the same loop; pg-0's replace lands first and pg-1's gets 409. pg-1
/// reports the lost race to its machine, never promotes, never holds the
/// lease, and restarts as a standby of pg-0 (the winner, which promoted and
/// renews). A 409 is a lost race, never a second leader.
#[tokio::test]
async fn conflict_on_acquire_leaves_the_loser_a_replica_of_the_winner() {
    let timings = FailoverTimings::default();
    let loop_ms = timings.loop_interval.as_millis() as u64;
    let old = Lease {
        version: LeaseVersion(7),
        record: LeaseRecord {
            holder: Some(MemberName::from("pg-2")),
            term: 3,
            renewed_at: Millis(0),
            duration_ms: timings.lease_duration.as_millis() as u64,
            system_identifier: Some(SYS),
            timeline: Timeline(1),
            history: vec![],
            max_timeline: Timeline(1),
            primary_lsn: Lsn(0x200),
            sync_standbys: Default::default(),
        },
    };
    let mut stored = Stored { lease: old, rv: 10 };
    // pg-0 has more WAL than pg-1: it ranks first wherever both are seen.
    let mut agents = [
        Agent::new("pg-0", standby("pg-2", 0x200)),
        Agent::new("pg-1", standby("pg-2", 0x180)),
    ];
    let mut states: BTreeMap<MemberName, MemberState> = BTreeMap::new();
    let mut raced_at = None;
    let mut now = 0;
    while now < 20 * loop_ms + 4 * timings.lease_duration.as_millis() as u64 {
        let mut batches = vec![];
        for agent in &mut agents {
            let mut view = states.clone();
            // Until the race, pg-1 does not see pg-0's state (its publishes
            // were not visible yet), so both rank themselves first.
            if raced_at.is_none() && agent.machine.config().me.as_str() == "pg-1" {
                view.remove(&MemberName::from("pg-0"));
            }
            batches.push(agent.decide(Millis(now), &stored, &view));
        }
        let acquiring = batches
            .iter()
            .filter(|b| b.iter().any(|a| matches!(a, Action::AcquireLease { .. })))
            .count();
        if acquiring == 2 {
            raced_at.get_or_insert(Millis(now));
        }
        for (agent, batch) in agents.iter_mut().zip(batches) {
            if let Some(state) = agent.execute(Millis(now), batch, &mut stored).await {
                states.insert(state.name.clone(), state);
            }
        }
        now += loop_ms;
    }
    let raced_at = raced_at.expect("both members tried to acquire the expired lease in one loop");
    let [winner, loser] = &agents;
    assert!(winner.promoted(), "pg-0 won the lease and promoted");
    assert_eq!(stored.lease.record.holder, Some(MemberName::from("pg-0")));
    assert!(
        loser
            .executed
            .iter()
            .any(|(at, a)| *at == raced_at && matches!(a, Action::AcquireLease { .. })),
        "pg-1 sent its acquire in the racing loop"
    );
    assert!(
        !loser.promoted(),
        "pg-1 promoted after losing the race: {:?}",
        loser.executed
    );
    assert!(
        !loser
            .executed
            .iter()
            .any(|(at, a)| *at > raced_at && matches!(a, Action::AcquireLease { .. })),
        "pg-1 tried to take pg-0's valid lease"
    );
    assert!(loser.machine.held_lease().is_none());
    assert_eq!(loser.machine.phase(), Phase::Replica);
    assert_eq!(loser.pg.upstream, Some(MemberName::from("pg-0")));
    assert!(
        loser.executed.iter().any(|(at, a)| *at > raced_at
            && *a
                == Action::StartAsReplica {
                    of: MemberName::from("pg-0")
                }),
        "pg-1 restarted as a standby of the winner"
    );
    assert!(
        winner.machine.held_lease().is_some(),
        "the winner still holds (renews) the lease"
    );
}
