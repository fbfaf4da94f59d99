//! The executor: carries out one batch of [`Action`]s in order, per the
//! contract in [`crate::machine::action`]: stop at the first failure or lost
//! compare-and-swap and report it ([`BatchOutcome`]) for the next tick.

use std::time::Duration;

use super::background::Op;
use super::host::{Host, Reload};
use crate::coordinator::{CasOutcome, Coordinator, CoordinatorError};
use crate::machine::{
    Action, ActionKind, FailsafeReply, LeaseOutcome, MemberName, Millis, PgObservation, StopMode,
    SyncStandbys,
};
use crate::postgres::{self, PgError};

/// What the next tick must know about this batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The result of the batch's lease compare-and-swap, if it got that far.
    pub lease_outcome: Option<LeaseOutcome>,
    /// The first action that failed (the rest was skipped).
    pub failed_action: Option<ActionKind>,
    /// Its error, for logs and `/status`.
    pub error: Option<String>,
    /// Replies to this batch's failsafe probes.
    pub failsafe_replies: Vec<FailsafeReply>,
    /// The batch armed the watchdog.
    pub armed: bool,
    /// PostgreSQL's role or process changed: observe again at once.
    pub changed: bool,
    /// This member was promoted after taking an expired lease.
    pub failover: bool,
    /// This member was promoted after a hand-over (switchover).
    pub switchover: bool,
}

/// Why one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A PostgreSQL operation failed.
    #[error("failed to {action}")]
    Pg {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: Box<PgError>,
    },
    /// A coordinator call failed.
    #[error("failed to {action} in the coordinator")]
    Coordinator {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: CoordinatorError,
    },
    /// A coordinator call did not finish in time.
    #[error("failed to {action} in the coordinator within {timeout:?}")]
    CoordinatorTimeout {
        /// What was being done.
        action: &'static str,
        /// The time allowed.
        timeout: Duration,
    },
    /// A background operation ended abnormally.
    #[error("failed to finish the background operation {op}: {detail}")]
    Background {
        /// The operation.
        op: String,
        /// What happened to the task.
        detail: String,
    },
    /// An action that makes the server writable came after the fence's deadline.
    #[error(
        "refused to make PostgreSQL writable at {now}: the fence is armed until {deadline:?}; the lease may have expired, wait for the next tick"
    )]
    PastDeadline {
        /// The machine's clock.
        now: Millis,
        /// The armed deadline (`None`: not armed).
        deadline: Option<Millis>,
    },
    /// Promotion produced another timeline than the lease assigned.
    #[error(
        "failed to promote onto timeline {expected}: PostgreSQL chose {actual}; check pg_wal for stray history files"
    )]
    WrongTimeline {
        /// The lease's timeline.
        expected: u32,
        /// What PostgreSQL runs now.
        actual: u32,
    },
}

impl ExecError {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ExecError::Pg { source, .. } => source.category(),
            ExecError::Coordinator { source, .. } => source.category(),
            ExecError::CoordinatorTimeout { .. } => "coordinator_timeout",
            ExecError::WrongTimeline { .. } => "wrong_timeline",
            ExecError::Background { .. } => "background",
            ExecError::PastDeadline { .. } => "past_deadline",
        }
    }
}

fn pg(action: &'static str) -> impl FnOnce(PgError) -> ExecError {
    move |source| ExecError::Pg {
        action,
        source: Box::new(source),
    }
}

/// Everything the executor works on.
pub struct Executor<'a, C, H> {
    /// The coordinator.
    pub coord: &'a C,
    /// The local server and its surroundings.
    pub host: &'a mut H,
    /// What was observed at the start of this tick.
    pub observed: &'a PgObservation,
    /// Timeout of each coordinator call.
    pub coord_timeout: Duration,
}

/// Whether a batch takes an expired lease (its promotion is then a failover).
pub fn acquires(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::AcquireLease { .. }))
}

impl<C: Coordinator, H: Host> Executor<'_, C, H> {
    /// Executes `actions` in order, stopping at the first failure or lost
    /// compare-and-swap.
    pub async fn run(mut self, actions: Vec<Action>) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let acquired = acquires(&actions);
        for action in actions {
            if !self.next(action, acquired, &mut out).await {
                break;
            }
        }
        out
    }

    /// Executes one action of a batch (`acquired`: see [`acquires`]) into
    /// `out`; `false` when the rest of the batch must be skipped.
    pub async fn next(&mut self, action: Action, acquired: bool, out: &mut BatchOutcome) -> bool {
        let kind = action.kind();
        let result = self.one(action, acquired, out).await;
        self.host.track_postmaster();
        if let Err(error) = result {
            tracing::warn!(action = ?kind, category = error.category(), error = %error_chain(&error), "action failed; skipping the rest of the batch");
            out.failed_action = Some(kind);
            out.error = Some(error_chain(&error));
            return false;
        }
        if matches!(out.lease_outcome, Some(LeaseOutcome::Lost(_))) && kind == ActionKind::Lease {
            tracing::info!("lease compare-and-swap lost; skipping the rest of the batch");
            out.failed_action = Some(kind);
            return false;
        }
        true
    }

    async fn coordinator<T>(
        &self,
        action: &'static str,
        call: impl std::future::Future<Output = Result<T, CoordinatorError>>,
    ) -> Result<T, ExecError> {
        match tokio::time::timeout(self.coord_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ExecError::Coordinator { action, source }),
            Err(_) => Err(ExecError::CoordinatorTimeout {
                action,
                timeout: self.coord_timeout,
            }),
        }
    }

    async fn one(
        &mut self,
        action: Action,
        acquired: bool,
        out: &mut BatchOutcome,
    ) -> Result<(), ExecError> {
        // A switchover's hand-over: a span timing the lease write (traces).
        let _hand_over = match &action {
            Action::HandOverLease { to, record, .. } => {
                tracing::info_span!("hand_over_lease", %to, term = %record.term)
            }
            _ => tracing::Span::none(),
        };
        if let Some((expected, record)) = action.lease_cas() {
            let call = self.coord.compare_and_swap_lease(expected, record.clone());
            let result = self.coordinator("write the lease", call).await;
            out.lease_outcome = Some(match &result {
                Ok(CasOutcome::Won(lease)) => LeaseOutcome::Won(lease.clone()),
                Ok(CasOutcome::Lost(current)) => LeaseOutcome::Lost(current.clone()),
                Err(_) => LeaseOutcome::Failed,
            });
            return result.map(drop);
        }
        if matches!(
            action,
            Action::Bootstrap | Action::StartAsPrimary | Action::Promote { .. }
        ) {
            // The batch may run late (a paused agent, a slow call before
            // this action): never make the server writable once the fence's
            // deadline has passed, or with no deadline armed at all.
            let now = self.host.now();
            match self.host.armed_until() {
                Some(deadline) if now < deadline => {}
                deadline => return Err(ExecError::PastDeadline { now, deadline }),
            }
        }
        match action {
            Action::Bootstrap => self.spawn(Op::Bootstrap, out)?,
            Action::StartAsPrimary => {
                if self.host.has_postmaster() && self.observed.running && !self.observed.in_recovery
                {
                    return Ok(());
                }
                if self.host.running_op().is_some() {
                    return Ok(());
                }
                tracing::info!("starting PostgreSQL as primary");
                self.host.set_standby_of(None);
                self.spawn(Op::Start, out)?;
            }
            Action::StartAsReplica { of } => self.start_as_replica(of, out).await?,
            Action::Promote { timeline } => {
                if self.host.running_op().is_some() {
                    return Ok(());
                }
                let current = self.observed.timeline;
                self.host.set_standby_of(None);
                self.spawn(
                    Op::Promote {
                        timeline,
                        current,
                        failover: acquired,
                    },
                    out,
                )?;
            }
            Action::Demote { mode } => match mode {
                StopMode::Fast => {
                    if self.host.running_op().is_some_and(Op::stopping) {
                        // Stopping already; the lease is renewed meanwhile.
                        return Ok(());
                    }
                    self.host.abort_op().await;
                    if !self.host.has_postmaster() {
                        return Ok(());
                    }
                    tracing::info!("demoting: stopping PostgreSQL cleanly (in the background)");
                    let checkpoint = self.observed.running && !self.observed.in_recovery;
                    self.spawn(Op::CleanStop { checkpoint }, out)?;
                    // Until it has stopped, the server is what we last saw.
                    self.host.hold_last_seen(self.observed);
                }
                StopMode::Immediate => {
                    self.host.abort_op().await;
                    if self.host.has_postmaster() {
                        tracing::info!(mode = "immediate", "demoting: stopping PostgreSQL");
                        out.changed = true;
                    }
                    self.host
                        .stop(postgres::StopMode::Immediate)
                        .await
                        .map_err(pg("stop PostgreSQL (demote)"))?;
                }
            },
            Action::FenceWrites => {
                self.host.abort_op().await;
                if self.host.has_postmaster() {
                    tracing::warn!("fencing: immediate stop of PostgreSQL");
                    out.changed = true;
                }
                self.host
                    .stop(postgres::StopMode::Immediate)
                    .await
                    .map_err(pg("fence PostgreSQL (immediate stop)"))?;
            }
            Action::Rewind { from } => {
                if self.host.running_op().is_some() {
                    return Ok(());
                }
                self.host.set_standby_of(Some(from.clone()));
                self.spawn(Op::Rewind { from }, out)?;
            }
            Action::Reclone { from } => {
                if self.host.running_op().is_some() {
                    return Ok(());
                }
                self.host.set_standby_of(Some(from.clone()));
                self.host.forget_data();
                self.spawn(Op::Reclone { from }, out)?;
            }
            Action::SetSyncStandbys(sync) => self.set_sync(sync).await?,
            Action::PublishState(state) => {
                let call = self.coord.publish_member(state);
                self.coordinator("publish this member's state", call)
                    .await?;
            }
            Action::SetRoleLabel { member, role } => self.host.set_role_label(&member, role),
            Action::ArmWatchdog { deadline } => {
                self.host.arm(deadline);
                out.armed = true;
            }
            Action::ProbePeers(probe) => {
                out.failsafe_replies = self.host.probe_peers(&probe).await;
            }
            // Probes are answered by the driver as they arrive (`driver::answer`);
            // a tick's batch never holds one.
            Action::AnswerProbe(_) => {}
            Action::ClearSwitchover { id } => {
                let call = self.coord.clear_switchover(id);
                self.coordinator("clear the switchover request", call)
                    .await?;
            }
            Action::AcquireLease { .. }
            | Action::RenewLease { .. }
            | Action::ReleaseLease { .. }
            | Action::HandOverLease { .. } => {
                unreachable!("lease actions are handled above because lease_cas() is Some")
            }
        }
        Ok(())
    }

    async fn start_as_replica(
        &mut self,
        of: MemberName,
        out: &mut BatchOutcome,
    ) -> Result<(), ExecError> {
        let running = self.host.has_postmaster() && self.observed.running;
        if running && self.observed.in_recovery {
            if self.host.standby_of() == Some(&of) {
                return Ok(());
            }
            // primary_conninfo is reloadable: no restart needed.
            tracing::info!(%of, "following a new primary (reload)");
            self.host.set_standby_of(Some(of));
            self.host.reload(Reload::Follow).await?;
            out.changed = true;
            return Ok(());
        }
        if self.host.running_op().is_some() {
            return Ok(());
        }
        tracing::info!(%of, "starting PostgreSQL as a replica");
        self.host.set_standby_of(Some(of));
        self.spawn(Op::Start, out)?;
        Ok(())
    }

    /// Starts a slow operation in the background with the current
    /// configuration; a no-op while another one runs.
    fn spawn(&mut self, op: Op, out: &mut BatchOutcome) -> Result<(), ExecError> {
        if self.host.running_op().is_some() {
            return Ok(());
        }
        self.host.start_op(op)?;
        out.changed = true;
        Ok(())
    }

    async fn set_sync(&mut self, sync: SyncStandbys) -> Result<(), ExecError> {
        if *self.host.sync() == sync && self.observed.sync_standbys == sync {
            return Ok(());
        }
        tracing::info!(value = %sync.to_setting(), "setting synchronous_standby_names");
        let nudge = !self.observed.in_recovery && !sync.names().is_empty();
        self.host.set_sync(sync);
        if self.host.running_op().is_some() || !self.host.has_data() {
            // Written by the running operation or at bootstrap; re-checked next tick.
            return Ok(());
        }
        self.host.reload(Reload::Sync { nudge }).await
    }
}

/// An error with its sources, `: `-separated (for logs and `/status`).
pub use pgcluster_core::error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::memory::MemoryCoordinator;
    use crate::machine::Timeline;
    use crate::sim::host::{Effect, SimHost, SimLocal};
    use crate::sim::pg::{Data, SimPg};

    fn standby() -> SimPg {
        SimPg {
            data: Some(Data {
                sysid: 1,
                wal: vec![1],
                history: vec![(Timeline(1), 0)],
                standby: true,
            }),
            running: true,
            ..SimPg::default()
        }
    }

    /// Runs `action` at `now` with the fence armed until `armed`; whether an
    /// operation started, and the failed action if any.
    fn promote_at(now: u64, armed: Option<u64>) -> (bool, Option<ActionKind>) {
        let coord = MemoryCoordinator::new();
        let mut local = SimLocal {
            armed: armed.map(Millis),
            ..SimLocal::default()
        };
        let mut pg = standby();
        let names = [MemberName::new("pg-0")];
        let mut host = SimHost {
            now: Millis(now),
            local: &mut local,
            pg: &mut pg,
            names: &names,
            effects: Vec::new(),
            latency: 0,
        };
        let observed = pg_observed();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime builds");
        let out = rt.block_on(
            Executor {
                coord: &coord,
                host: &mut host,
                observed: &observed,
                coord_timeout: Duration::from_millis(50),
            }
            .run(vec![Action::Promote {
                timeline: Timeline(2),
            }]),
        );
        let started = host
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Started { .. }));
        (started, out.failed_action)
    }

    fn pg_observed() -> PgObservation {
        let mut o = standby().observe(&[MemberName::new("pg-0")], Vec::new());
        o.running = true;
        o
    }

    #[test]
    fn never_makes_the_server_writable_past_the_fence_deadline() {
        assert_eq!(promote_at(1_000, Some(1_500)), (true, None));
        assert_eq!(
            promote_at(1_500, Some(1_500)),
            (false, Some(ActionKind::Promote))
        );
        assert_eq!(
            promote_at(2_000, Some(1_500)),
            (false, Some(ActionKind::Promote))
        );
        assert_eq!(promote_at(1_000, None), (false, Some(ActionKind::Promote)));
    }
}
