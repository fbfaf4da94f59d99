//! The executor: carries out one batch of [`Action`]s in order, per the
//! contract in [`crate::machine::action`]: stop at the first failure or lost
//! compare-and-swap and report it ([`BatchOutcome`]) for the next tick.

use std::time::{Duration, Instant};

use super::AgentConfig;
use super::background::{Background, Op};
use super::client;
use super::http::{ProbeWire, ReplyWire};
use super::supervise::LocalPg;
use super::watchdog::Watchdog;
use crate::coordinator::{CasOutcome, Coordinator, CoordinatorError};
use crate::machine::{
    Action, ActionKind, FailsafeProbe, FailsafeReply, LeaseOutcome, MemberName, PgObservation,
    StopMode, SyncStandbys,
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
pub struct Executor<'a, C> {
    /// The agent's configuration.
    pub cfg: &'a AgentConfig,
    /// The coordinator.
    pub coord: &'a C,
    /// The local server.
    pub local: &'a mut LocalPg,
    /// The watchdog.
    pub watchdog: &'a Watchdog,
    /// The instant the machine's clock counts from.
    pub epoch: Instant,
    /// What was observed at the start of this tick.
    pub observed: &'a PgObservation,
    /// Timeout of each coordinator call.
    pub coord_timeout: Duration,
}

impl<C: Coordinator> Executor<'_, C> {
    /// Executes `actions` in order, stopping at the first failure or lost
    /// compare-and-swap.
    pub async fn run(mut self, actions: Vec<Action>) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let acquired = actions
            .iter()
            .any(|a| matches!(a, Action::AcquireLease { .. }));
        for action in actions {
            let kind = action.kind();
            let result = self.one(action, acquired, &mut out).await;
            self.watchdog.set_pid(self.local.pid());
            if let Err(error) = result {
                tracing::warn!(action = ?kind, category = error.category(), error = %error_chain(&error), "action failed; skipping the rest of the batch");
                out.failed_action = Some(kind);
                out.error = Some(error_chain(&error));
                break;
            }
            if matches!(out.lease_outcome, Some(LeaseOutcome::Lost(_))) && kind == ActionKind::Lease
            {
                tracing::info!("lease compare-and-swap lost; skipping the rest of the batch");
                out.failed_action = Some(kind);
                break;
            }
        }
        out
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
            return match tokio::time::timeout(self.coord_timeout, call).await {
                Ok(Ok(CasOutcome::Won(lease))) => {
                    out.lease_outcome = Some(LeaseOutcome::Won(lease));
                    Ok(())
                }
                Ok(Ok(CasOutcome::Lost(current))) => {
                    out.lease_outcome = Some(LeaseOutcome::Lost(current));
                    Ok(())
                }
                Ok(Err(source)) => {
                    out.lease_outcome = Some(LeaseOutcome::Failed);
                    Err(ExecError::Coordinator {
                        action: "write the lease",
                        source,
                    })
                }
                Err(_) => {
                    out.lease_outcome = Some(LeaseOutcome::Failed);
                    Err(ExecError::CoordinatorTimeout {
                        action: "write the lease",
                        timeout: self.coord_timeout,
                    })
                }
            };
        }
        match action {
            Action::Bootstrap => self.spawn(Op::Bootstrap, out)?,
            Action::StartAsPrimary => {
                if self.local.postmaster.is_some()
                    && self.observed.running
                    && !self.observed.in_recovery
                {
                    return Ok(());
                }
                if self.local.background.is_some() {
                    return Ok(());
                }
                tracing::info!("starting PostgreSQL as primary");
                self.local.standby_of = None;
                self.spawn(Op::Start, out)?;
            }
            Action::StartAsReplica { of } => self.start_as_replica(of, out).await?,
            Action::Promote { timeline } => {
                if self.local.background.is_some() {
                    return Ok(());
                }
                let current = self.observed.timeline;
                self.local.standby_of = None;
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
                    if self.local.background.as_ref().is_some_and(|b| b.stopping()) {
                        // Stopping already; the lease is renewed meanwhile.
                        return Ok(());
                    }
                    self.abort_background().await;
                    if self.local.postmaster.is_none() {
                        return Ok(());
                    }
                    tracing::info!("demoting: stopping PostgreSQL cleanly (in the background)");
                    let checkpoint = self.observed.running && !self.observed.in_recovery;
                    let seen = self.observed.clone();
                    self.spawn(Op::CleanStop { checkpoint }, out)?;
                    // Until it has stopped, the server is what we last saw.
                    self.local.last_running = seen.running.then_some(seen);
                }
                StopMode::Immediate => {
                    self.abort_background().await;
                    if self.local.postmaster.is_some() {
                        tracing::info!(mode = "immediate", "demoting: stopping PostgreSQL");
                        out.changed = true;
                    }
                    self.local
                        .stop(postgres::StopMode::Immediate, self.stop_writes())
                        .await
                        .map_err(pg("stop PostgreSQL (demote)"))?;
                }
            },
            Action::FenceWrites => {
                self.abort_background().await;
                if self.local.postmaster.is_some() {
                    tracing::warn!("fencing: immediate stop of PostgreSQL");
                    out.changed = true;
                }
                self.local
                    .stop(postgres::StopMode::Immediate, self.stop_writes())
                    .await
                    .map_err(pg("fence PostgreSQL (immediate stop)"))?;
            }
            Action::Rewind { from } => {
                if self.local.background.is_some() {
                    return Ok(());
                }
                self.local.standby_of = Some(from.clone());
                self.spawn(Op::Rewind { from }, out)?;
            }
            Action::Reclone { from } => {
                if self.local.background.is_some() {
                    return Ok(());
                }
                self.local.standby_of = Some(from.clone());
                self.local.system_id = None;
                self.spawn(Op::Reclone { from }, out)?;
            }
            Action::SetSyncStandbys(sync) => self.set_sync(sync).await?,
            Action::PublishState(state) => {
                let call = self.coord.publish_member(state);
                match tokio::time::timeout(self.coord_timeout, call).await {
                    Ok(Ok(())) => {}
                    Ok(Err(source)) => {
                        return Err(ExecError::Coordinator {
                            action: "publish this member's state",
                            source,
                        });
                    }
                    Err(_) => {
                        return Err(ExecError::CoordinatorTimeout {
                            action: "publish this member's state",
                            timeout: self.coord_timeout,
                        });
                    }
                }
            }
            Action::SetRoleLabel { member, role } => match &self.cfg.role_labels {
                Some(labels) => labels.set(&member, role),
                // Local mode has no pod labels: the router follows the lease.
                None => tracing::debug!(%member, ?role, "role label (no-op in local mode)"),
            },
            Action::ArmWatchdog { deadline } => {
                self.watchdog.set_pid(self.local.pid());
                self.watchdog
                    .arm(self.epoch + Duration::from_millis(deadline.0));
                out.armed = true;
            }
            Action::ProbePeers(probe) => {
                out.failsafe_replies = self.probe_peers(&probe).await;
            }
            // Probes are answered by the driver as they arrive (`driver::answer`);
            // a tick's batch never holds one.
            Action::AnswerProbe(_) => {}
            Action::ClearSwitchover { id } => {
                let call = self.coord.clear_switchover(id);
                match tokio::time::timeout(self.coord_timeout, call).await {
                    Ok(Ok(())) => {}
                    Ok(Err(source)) => {
                        return Err(ExecError::Coordinator {
                            action: "clear the switchover request",
                            source,
                        });
                    }
                    Err(_) => {
                        return Err(ExecError::CoordinatorTimeout {
                            action: "clear the switchover request",
                            timeout: self.coord_timeout,
                        });
                    }
                }
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

    fn stop_writes(&self) -> Duration {
        self.cfg
            .ha
            .timings
            .stop_writes_timeout
            .max(Duration::from_secs(2))
    }

    async fn start_as_replica(
        &mut self,
        of: MemberName,
        out: &mut BatchOutcome,
    ) -> Result<(), ExecError> {
        let cfg = self.cfg;
        let running = self.local.postmaster.is_some() && self.observed.running;
        if running && self.observed.in_recovery {
            if self.local.standby_of.as_ref() == Some(&of) {
                return Ok(());
            }
            // primary_conninfo is reloadable: no restart needed.
            tracing::info!(%of, "following a new primary (reload)");
            self.local.standby_of = Some(of);
            self.local
                .write_config(cfg)
                .map_err(pg("write the standby configuration"))?;
            let client = self
                .local
                .client(cfg)
                .await
                .map_err(pg("connect to reload the configuration"))?;
            postgres::reload(client)
                .await
                .map_err(pg("reload the configuration"))?;
            out.changed = true;
            return Ok(());
        }
        if self.local.background.is_some() {
            return Ok(());
        }
        tracing::info!(%of, "starting PostgreSQL as a replica");
        self.local.standby_of = Some(of);
        self.spawn(Op::Start, out)?;
        Ok(())
    }

    /// Starts a slow operation in the background with the current
    /// configuration; a no-op while another one runs.
    fn spawn(&mut self, op: Op, out: &mut BatchOutcome) -> Result<(), ExecError> {
        if self.local.background.is_some() {
            return Ok(());
        }
        let config = self
            .local
            .managed_config(self.cfg)
            .map_err(pg("render the configuration"))?;
        let postmaster = self.local.postmaster.take();
        self.local.client = None;
        self.local.last_running = None;
        self.local.background = Some(Background::spawn(
            op,
            self.cfg,
            config,
            postmaster,
            self.local.wake.clone(),
        ));
        out.changed = true;
        Ok(())
    }

    /// Aborts a running slow operation and stops any postmaster it started.
    async fn abort_background(&mut self) {
        let Some(bg) = self.local.background.take() else {
            return;
        };
        tracing::warn!(op = ?bg.op.kind(), "aborting a running operation");
        bg.abort();
        if let Some(pid) = super::supervise::orphan_postmaster(self.cfg) {
            super::supervise::stop_orphan(pid).await;
        }
    }

    async fn set_sync(&mut self, sync: SyncStandbys) -> Result<(), ExecError> {
        let cfg = self.cfg;
        if self.local.sync == sync && self.observed.sync_standbys == sync {
            return Ok(());
        }
        tracing::info!(value = %sync.to_setting(), "setting synchronous_standby_names");
        let nudge = !self.observed.in_recovery && !sync.names().is_empty();
        self.local.sync = sync;
        if self.local.background.is_some()
            || !cfg.instance.layout.data_dir.join("PG_VERSION").exists()
        {
            // Written by the running operation or at bootstrap; re-checked next tick.
            return Ok(());
        }
        self.local
            .write_config(cfg)
            .map_err(pg("write synchronous_standby_names"))?;
        if self.local.postmaster.is_some() {
            let client = self
                .local
                .client(cfg)
                .await
                .map_err(pg("connect to reload synchronous_standby_names"))?;
            postgres::reload(client)
                .await
                .map_err(pg("reload synchronous_standby_names"))?;
            if nudge {
                // Commits already waiting are released by the next standby
                // reply; make it come now rather than at the standby's next
                // status interval.
                let nudged = postgres::nudge_sync_standbys(client, Duration::from_millis(100))
                    .await
                    .map_err(pg("nudge the synchronous standbys"))?;
                tracing::debug!(nudged, "nudged the synchronous standbys");
            }
        }
        Ok(())
    }

    async fn probe_peers(&self, probe: &FailsafeProbe) -> Vec<FailsafeReply> {
        let body = serde_json::to_string(&ProbeWire::from(probe))
            .expect("a probe serializes because it is plain data");
        let timeout = self.cfg.loop_interval().max(Duration::from_millis(100)) / 2;
        let calls = self
            .cfg
            .ha
            .peers()
            .filter_map(|p| self.cfg.peers.get(p))
            .map(|p| {
                let target = (p.host.clone(), p.api_port);
                let body = body.clone();
                tokio::spawn(async move {
                    // A dead peer's DNS name may not resolve: no reply from it.
                    let resolve = tokio::net::lookup_host(target);
                    let addr = tokio::time::timeout(timeout, resolve)
                        .await
                        .ok()?
                        .ok()?
                        .next()?;
                    client::post_json(addr, "/failsafe", &body, timeout)
                        .await
                        .ok()
                })
            })
            .collect::<Vec<_>>();
        let mut replies = Vec::new();
        for call in calls {
            if let Ok(Some((200, text))) = call.await
                && let Ok(wire) = serde_json::from_str::<ReplyWire>(&text)
            {
                replies.push(wire.into());
            }
        }
        replies
    }
}

/// An error with its sources, `: `-separated (for logs and `/status`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
