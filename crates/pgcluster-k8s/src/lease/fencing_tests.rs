//! The Lease coordinator driven by the pure HA machine (tower-test): a
//! holder whose renewals start failing fences before its lease can expire,
//! and never takes the lease back while another holder's lease is valid.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use http::Method;
use pgcluster_core::timing::FailoverTimings;
use pgcluster_ha::machine::{
    Action, DataDir, LeaseOutcome, Lsn, MachineState, Millis, Observation, PgObservation, SystemId,
    TickObservation, Timeline, step,
};

use super::machine_fixtures::{LEASE, config, lease_object};
use super::*;
use crate::testing::api_server::{ApiServerVerifier, Reply};

/// How the scripted API server treats lease reads in one tick.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Reads and writes succeed.
    Healthy,
    /// Every call answers 500.
    Failing,
    /// The lease read hangs (the coordinator's own timeout fires).
    Hanging,
}

fn running_primary() -> PgObservation {
    PgObservation {
        data: DataDir::Initialized(SystemId(42)),
        running: true,
        timeline: Timeline(1),
        flushed_lsn: Lsn(0x100),
        ..PgObservation::empty()
    }
}

fn stopped() -> PgObservation {
    PgObservation {
        data: DataDir::Initialized(SystemId(42)),
        timeline: Timeline(1),
        flushed_lsn: Lsn(0x100),
        ..PgObservation::empty()
    }
}

/// One member's loop against the scripted API server: ticks every loop
/// interval, executes the machine's lease compare-and-swaps through
/// [`KubeLeaseCoordinator`], and records what matters for fencing.
struct Member {
    machine: MachineState,
    coord: KubeLeaseCoordinator,
    server: ApiServerVerifier,
    /// The Lease as the API server stores it (record + resourceVersion).
    stored: Option<(Lease, u64)>,
    outcome: Option<LeaseOutcome>,
    failed: Option<pgcluster_ha::machine::ActionKind>,
    pg: PgObservation,
    /// When the last renewal (or acquisition) that won was sent.
    last_won_at: Option<Millis>,
    fenced_at: Option<Millis>,
    watchdog_deadlines: Vec<(Millis, Millis)>,
    acquired_at: Vec<Millis>,
}

impl Member {
    fn new(me: &str) -> Self {
        let (client, server) = ApiServerVerifier::new();
        Self {
            machine: MachineState::new(config(me, &["pg-0", "pg-1"]), Millis(0)),
            coord: KubeLeaseCoordinator::new(client, "db", &ClusterName::new("pg").unwrap())
                .with_timeout(Duration::from_millis(100)),
            server,
            stored: None,
            outcome: None,
            failed: None,
            pg: PgObservation::empty(),
            last_won_at: None,
            fenced_at: None,
            watchdog_deadlines: vec![],
            acquired_at: vec![],
        }
    }

    async fn tick(&mut self, now: Millis, api: Api) {
        let view = (api == Api::Healthy).then(|| ClusterView {
            lease: self.stored.as_ref().map(|(l, _)| l.clone()),
            ..ClusterView::default()
        });
        let tick = TickObservation {
            postgres: self.pg.clone(),
            view,
            lease_outcome: self.outcome.take(),
            failed_action: self.failed.take(),
            failsafe_replies: vec![],
        };
        let (next, actions) = step(self.machine.clone(), now, Observation::Tick(Box::new(tick)));
        self.machine = next;
        for action in actions {
            if let Some((expected, record)) = action.lease_cas() {
                if matches!(action, Action::AcquireLease { .. }) {
                    self.acquired_at.push(now);
                }
                let ok = self.cas(expected, record.clone(), api).await;
                if !ok {
                    self.failed = Some(action.kind());
                    break;
                }
                if let Some(LeaseOutcome::Won(_)) = self.outcome {
                    self.last_won_at = Some(now);
                }
                continue;
            }
            match action {
                Action::Bootstrap => self.pg = running_primary(),
                Action::FenceWrites => {
                    self.fenced_at.get_or_insert(now);
                    self.pg = stopped();
                }
                Action::ArmWatchdog { deadline } => self.watchdog_deadlines.push((now, deadline)),
                _ => {}
            }
        }
    }

    /// One compare-and-swap through the coordinator; false when it failed.
    async fn cas(&mut self, expected: LeaseVersion, record: LeaseRecord, api: Api) -> bool {
        let mut overrides = vec![];
        match (api, &self.stored) {
            (Api::Failing, _) => {
                overrides.push((
                    Method::GET,
                    LEASE.to_owned(),
                    Reply::Status(500, "InternalError"),
                ));
            }
            (Api::Hanging, _) => {}
            (Api::Healthy, Some((lease, rv))) => {
                overrides.push((
                    Method::GET,
                    LEASE.to_owned(),
                    Reply::Ok(lease_object(*rv, lease)),
                ));
            }
            (Api::Healthy, None) => {}
        }
        let result = if api == Api::Hanging {
            let coord = self.coord.clone();
            let call =
                tokio::spawn(async move { coord.compare_and_swap_lease(expected, record).await });
            self.server.hang_next().await;
            call.await.unwrap()
        } else {
            let call = self.coord.compare_and_swap_lease(expected, record);
            self.server.serve_while(call, overrides).await
        };
        match result {
            Ok(CasOutcome::Won(lease)) => {
                let rv = self.stored.as_ref().map_or(1, |(_, rv)| rv + 1);
                self.stored = Some((lease.clone(), rv));
                self.outcome = Some(LeaseOutcome::Won(lease));
                true
            }
            Ok(CasOutcome::Lost(current)) => {
                self.outcome = Some(LeaseOutcome::Lost(current));
                true
            }
            Err(_) => {
                self.outcome = Some(LeaseOutcome::Failed);
                false
            }
        }
    }
}

/// The holder's renewals start failing (500s, then a hung API server): it
/// fences (stops writes) before lease duration minus the allowed clock drift
/// has passed since its last successful renewal, and every watchdog deadline
/// it arms lies within that bound too (the watchdog fences even if the loop
/// stalls).
#[tokio::test]
async fn failing_renewals_fence_before_the_lease_can_expire() {
    let timings = FailoverTimings::default();
    let loop_ms = timings.loop_interval.as_millis() as u64;
    let safe_ms = (timings.lease_duration - timings.max_clock_drift).as_millis() as u64;
    for failure in [Api::Failing, Api::Hanging] {
        let mut m = Member::new("pg-0");
        let mut now = 0;
        // Acquire on a fresh volume, bootstrap, lead with healthy renewals.
        while now < 3_000 {
            m.tick(Millis(now), Api::Healthy).await;
            now += loop_ms;
        }
        assert!(m.pg.is_primary(), "the member became a writable primary");
        assert!(m.fenced_at.is_none());
        let last_won = m
            .last_won_at
            .expect("renewals succeeded while the API was healthy");
        // The API server starts failing.
        while m.fenced_at.is_none() && now < 10_000 {
            m.tick(Millis(now), failure).await;
            now += loop_ms;
        }
        let fenced = m.fenced_at.expect("a holder that cannot renew fences");
        assert!(
            fenced.0 < last_won.0 + safe_ms,
            "fenced at {fenced:?}, last renewal won at {last_won:?}: not before lease - drift ({safe_ms} ms)"
        );
        assert!(
            m.last_won_at == Some(last_won),
            "no renewal won while failing"
        );
        for (at, deadline) in m
            .watchdog_deadlines
            .iter()
            .filter(|(at, _)| *at >= last_won)
        {
            assert!(
                deadline.0 <= last_won.0 + safe_ms,
                "watchdog armed at {at:?} for {deadline:?}, beyond the last renewal + lease - drift"
            );
        }
        assert!(!m.pg.is_primary());
    }
}

/// After fencing, another member holds the lease and renews it: the fenced
/// member never tries to acquire while that lease is valid; a 409 on its
/// acquire (another member won the race) leaves it without a lease.
#[tokio::test]
async fn a_fenced_member_does_not_take_a_valid_lease() {
    let timings = FailoverTimings::default();
    let loop_ms = timings.loop_interval.as_millis() as u64;
    let mut m = Member::new("pg-0");
    let mut now = 0;
    while now < 3_000 {
        m.tick(Millis(now), Api::Healthy).await;
        now += loop_ms;
    }
    while m.fenced_at.is_none() {
        m.tick(Millis(now), Api::Failing).await;
        now += loop_ms;
    }
    // pg-1 took over and renews every loop; the API is healthy again.
    let (mine, rv) = m.stored.clone().unwrap();
    let mut theirs = Lease {
        version: LeaseVersion(mine.version.0 + 1),
        record: LeaseRecord {
            holder: Some(MemberName::from("pg-1")),
            term: mine.record.term + 1,
            renewed_at: Millis(now),
            ..mine.record.clone()
        },
    };
    m.stored = Some((theirs.clone(), rv + 1));
    m.acquired_at.clear();
    let until = now + 5 * timings.lease_duration.as_millis() as u64;
    while now < until {
        theirs.version = LeaseVersion(theirs.version.0 + 1);
        theirs.record.renewed_at = Millis(now);
        let rv = m.stored.as_ref().unwrap().1 + 1;
        m.stored = Some((theirs.clone(), rv));
        m.tick(Millis(now), Api::Healthy).await;
        now += loop_ms;
    }
    assert!(
        m.acquired_at.is_empty(),
        "acquired at {:?} while pg-1's lease was valid",
        m.acquired_at
    );
    assert!(m.machine.held_lease().is_none());
}
