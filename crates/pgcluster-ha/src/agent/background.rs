//! Slow PostgreSQL operations (initdb, start, promote, pg_rewind,
//! pg_basebackup) run as one background task at a time, so the agent loop
//! keeps renewing the lease and publishing its state while they run. A stop
//! or fence aborts the task and stops whatever postmaster it left, by the PID
//! in the data directory's own `postmaster.pid`.
//!
//! ```text
//! executor --spawn(op, postmaster moved in)--> task --> BgResult{postmaster back, result}
//! driver tick --poll()--> installs the postmaster, reports a failure as failed_action
//!                          (a failure first waits out a retry backoff: [`Background::hold`])
//! ```

use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::AgentConfig;
use super::execute::ExecError;
use super::supervise::{hba, upstream};
use crate::machine::{ActionKind, MemberName, Timeline};
use crate::postgres::{self, AuthMethod, ManagedConfig, PgError, Postmaster, SlotMode, StopMode};

/// One slow operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// initdb and start as primary.
    Bootstrap,
    /// (Re)start on the given configuration (primary or standby).
    Start,
    /// Start if needed, then promote onto `timeline`.
    Promote {
        /// The lease's timeline.
        timeline: Timeline,
        /// The timeline the standby runs now.
        current: Timeline,
        /// After taking an expired lease (failover) rather than a hand-over.
        failover: bool,
    },
    /// pg_rewind from `from`.
    Rewind {
        /// The source.
        from: MemberName,
    },
    /// pg_basebackup from `from` (moving the old directory aside if any).
    Reclone {
        /// The source.
        from: MemberName,
    },
    /// A clean stop (demote, switchover): `CHECKPOINT` first when the
    /// server is a primary, then a fast shutdown; immediate if that hangs.
    /// In the background so that the lease keeps being renewed meanwhile.
    CleanStop {
        /// Run `CHECKPOINT` first (a primary: the shutdown checkpoint, during
        /// which no write is taken, then has little left to write).
        checkpoint: bool,
    },
}

impl Op {
    /// Whether the operation is a clean stop.
    pub fn stopping(&self) -> bool {
        matches!(self, Op::CleanStop { .. })
    }

    /// The action kind reported when it fails.
    pub fn kind(&self) -> ActionKind {
        match self {
            Op::Bootstrap => ActionKind::Bootstrap,
            Op::Start => ActionKind::StartAsPrimary,
            Op::Promote { .. } => ActionKind::Promote,
            Op::Rewind { .. } => ActionKind::Rewind,
            Op::Reclone { .. } => ActionKind::Reclone,
            Op::CleanStop { .. } => ActionKind::Demote,
        }
    }
}

/// What a finished operation hands back.
#[derive(Debug)]
pub struct BgResult {
    /// The postmaster after the operation (the one moved in, or a new one).
    pub postmaster: Option<Postmaster>,
    /// Whether it worked.
    pub result: Result<(), ExecError>,
}

/// A running operation.
#[derive(Debug)]
pub struct Background {
    /// Which.
    pub op: Op,
    /// Since when.
    pub started: Instant,
    task: JoinHandle<BgResult>,
    /// A failed result waiting out its retry backoff ([`Background::hold`]).
    held: bool,
}

impl Background {
    /// Starts `op` with the current postmaster (moved in) and configuration;
    /// `wake` is notified once the server is promoted and when `op` ends.
    pub fn spawn(
        op: Op,
        cfg: &AgentConfig,
        config: ManagedConfig,
        postmaster: Option<Postmaster>,
        wake: Arc<Notify>,
    ) -> Self {
        let cfg = cfg.clone();
        let task_op = op.clone();
        let task = tokio::spawn(async move {
            let result = run(task_op, cfg, config, postmaster, &wake).await;
            wake.notify_one();
            result
        });
        Self {
            op,
            started: Instant::now(),
            task,
            held: false,
        }
    }

    /// Holds the failed result `done` of `op` back for `delay`: until then
    /// the slot stays taken (no operation is spawned, so the machine's next
    /// request for the same operation is not a retry at once) and whatever
    /// postmaster the operation left stays with it, exactly as while it
    /// ran; then `wake` is notified and [`Background::poll`] hands `done`
    /// over. An abort (stop, fence) ends the wait like it ends a running
    /// operation.
    pub fn hold(op: Op, done: BgResult, delay: Duration, wake: Arc<Notify>) -> Self {
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
            done
        });
        Self {
            op,
            started: Instant::now(),
            task,
            held: true,
        }
    }

    /// Whether this is a failed result waiting out its backoff.
    pub fn held(&self) -> bool {
        self.held
    }

    /// Whether the operation keeps (or brings up) a running server the
    /// agent can query meanwhile: a promotion or a (re)start, not a rewind
    /// or re-clone, which stop it.
    pub fn serves(&self) -> bool {
        matches!(self.op, Op::Bootstrap | Op::Start | Op::Promote { .. })
    }

    /// Whether the operation is a clean stop: the server counts as running
    /// (as last seen) until it has stopped, so the machine waits for it.
    pub fn stopping(&self) -> bool {
        self.op.stopping()
    }

    /// The result once finished.
    pub async fn poll(&mut self) -> Option<BgResult> {
        if !self.task.is_finished() {
            return None;
        }
        match (&mut self.task).await {
            Ok(r) => Some(r),
            Err(join) => Some(BgResult {
                postmaster: None,
                result: Err(ExecError::Background {
                    op: format!("{:?}", self.op.kind()),
                    detail: join.to_string(),
                }),
            }),
        }
    }

    /// Aborts the operation (its postmaster, if any, must then be stopped
    /// through the data directory's pid file).
    pub fn abort(self) {
        self.task.abort();
    }
}

fn pg(action: &'static str) -> impl FnOnce(PgError) -> ExecError {
    move |source| ExecError::Pg {
        action,
        source: Box::new(source),
    }
}

/// One span per promote, rewind, re-clone, bootstrap or start (a trace's
/// view of a failover); `otel.name` names it after the operation.
#[tracing::instrument(name = "operation", skip_all, fields(op = ?op, cluster = %cfg.cluster_name, member = %cfg.me(), otel.name = ?op.kind()))]
async fn run(
    op: Op,
    cfg: AgentConfig,
    config: ManagedConfig,
    mut postmaster: Option<Postmaster>,
    wake: &Notify,
) -> BgResult {
    let result = run_inner(&op, &cfg, &config, &mut postmaster, wake).await;
    BgResult { postmaster, result }
}

async fn stop(
    postmaster: &mut Option<Postmaster>,
    mode: StopMode,
    action: &'static str,
) -> Result<(), ExecError> {
    if let Some(pm) = postmaster.take() {
        pm.stop(mode, Duration::from_secs(60))
            .await
            .map_err(pg(action))?;
    }
    Ok(())
}

async fn run_inner(
    op: &Op,
    cfg: &AgentConfig,
    config: &ManagedConfig,
    postmaster: &mut Option<Postmaster>,
    wake: &Notify,
) -> Result<(), ExecError> {
    let inst = &cfg.instance;
    match op {
        Op::Bootstrap => {
            tracing::info!("bootstrapping the cluster: initdb");
            inst.initdb(AuthMethod::ScramSha256)
                .await
                .map_err(pg("initialise the data directory (initdb)"))?;
            inst.write_config(config, &hba())
                .map_err(pg("write the configuration"))?;
            *postmaster = Some(
                inst.start(cfg.start_timeout)
                    .await
                    .map_err(pg("start the new primary"))?,
            );
            ensure_slots(cfg).await;
        }
        Op::Start => {
            stop(
                postmaster,
                StopMode::Fast,
                "stop PostgreSQL before restarting it",
            )
            .await?;
            inst.write_config(config, &hba())
                .map_err(pg("write the configuration"))?;
            *postmaster = Some(
                inst.start(cfg.start_timeout)
                    .await
                    .map_err(pg("start PostgreSQL"))?,
            );
            if config.standby.is_none() {
                ensure_slots(cfg).await;
            }
        }
        Op::Promote {
            timeline, current, ..
        } => {
            if postmaster.is_none() {
                *postmaster = Some(
                    inst.start(cfg.start_timeout)
                        .await
                        .map_err(pg("start the standby before promoting it"))?,
                );
            }
            // PostgreSQL picks (newest existing history file) + 1: place empty
            // history files for the timelines between ours and the assigned one.
            let wal = inst.layout.data_dir.join("pg_wal");
            for tli in current.0.saturating_add(1)..timeline.0 {
                let path = wal.join(format!("{tli:08X}.history"));
                if !path.exists() {
                    inst.os_user
                        .write_file(&path, b"", 0o600)
                        .map_err(pg("place a placeholder timeline history file"))?;
                }
            }
            tracing::info!(timeline = timeline.0, "promoting");
            let started = Instant::now();
            let client = inst.connect().await.map_err(pg("connect to promote"))?;
            postgres::promote(&client, 30)
                .await
                .map_err(pg("promote (pg_promote)"))?;
            let state = postgres::observe(&client)
                .await
                .map_err(pg("observe the promoted server"))?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                timeline = state.timeline,
                "promoted"
            );
            // Writable now: the loop publishes the new role at once; the
            // configuration and slots below follow.
            wake.notify_one();
            inst.write_config(config, &hba())
                .map_err(pg("write the primary configuration"))?;
            postgres::reload(&client)
                .await
                .map_err(pg("reload the primary configuration"))?;
            ensure_slots(cfg).await;
            if state.timeline != timeline.0 {
                return Err(ExecError::WrongTimeline {
                    expected: timeline.0,
                    actual: state.timeline,
                });
            }
        }
        Op::CleanStop { checkpoint } => {
            if *checkpoint {
                checkpoint_before_stop(cfg).await;
            }
            if let Some(pm) = postmaster.take() {
                super::supervise::stop_postmaster(pm, StopMode::Fast, Duration::from_secs(60))
                    .await
                    .map_err(pg("stop PostgreSQL cleanly (demote)"))?;
            }
        }
        Op::Rewind { from } => {
            tracing::info!(%from, "rewinding the data directory (pg_rewind)");
            stop(
                postmaster,
                StopMode::Fast,
                "stop PostgreSQL before pg_rewind",
            )
            .await?;
            inst.rewind(&upstream(cfg, from), config, &hba())
                .await
                .map_err(pg("rewind the data directory (pg_rewind)"))?;
        }
        Op::Reclone { from } => {
            tracing::info!(%from, "cloning the data directory (pg_basebackup)");
            stop(
                postmaster,
                StopMode::Fast,
                "stop PostgreSQL before re-cloning",
            )
            .await?;
            let source = upstream(cfg, from);
            let empty =
                std::fs::read_dir(&inst.layout.data_dir).map_or(true, |mut d| d.next().is_none());
            if empty {
                inst.basebackup(&source, &SlotMode::None)
                    .await
                    .map_err(pg("clone the primary (pg_basebackup)"))?;
                inst.write_config(config, &hba())
                    .map_err(pg("write the configuration of the new replica"))?;
            } else {
                inst.reclone(&source, &SlotMode::None, config, &hba())
                    .await
                    .map_err(pg("re-clone the primary (pg_basebackup)"))?;
            }
        }
    }
    Ok(())
}

/// A clean stop of a primary: `CHECKPOINT` first, while it still takes
/// writes, so the shutdown checkpoint (during which it takes none) has
/// little left to write. Best effort: on error or after 10 s, stop anyway.
#[tracing::instrument(skip_all)]
async fn checkpoint_before_stop(cfg: &AgentConfig) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        let client = cfg.instance.connect().await?;
        postgres::checkpoint(&client).await
    })
    .await;
    match result {
        Ok(Ok(())) => tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint before the clean stop"
        ),
        Ok(Err(error)) => {
            tracing::warn!(error = %super::execute::error_chain(&error), "checkpoint before the clean stop failed")
        }
        Err(_) => tracing::warn!("checkpoint before the clean stop timed out"),
    }
}

/// A physical slot for every other member (WAL kept for it, bounded by
/// `max_slot_wal_keep_size`); slots whose WAL was lost are recreated.
pub async fn ensure_slots(cfg: &AgentConfig) {
    let result: Result<(), PgError> = async {
        let client = cfg.instance.connect().await?;
        let existing = postgres::list_physical_slots(&client).await?;
        for peer in cfg.ha.peers() {
            let name = postgres::slot_name_for(peer.as_str())?;
            if existing
                .iter()
                .any(|s| s.name == name && s.wal_status.as_deref() == Some("lost"))
            {
                postgres::drop_physical_slot(&client, &name).await?;
            }
            postgres::create_physical_slot(&client, &name).await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not create the replication slots");
    }
}
