//! The agent loop: observe, read the coordinator, [`step`], execute, feed the
//! outcomes into the next tick. Failsafe probes from peers are stepped
//! between ticks. After a batch that changed PostgreSQL's role the next tick
//! runs at once, so the new role is published without waiting a full loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::instrument;

use super::execute::{BatchOutcome, Executor};
use super::host::{AgentHost, Host};
use super::http::{self, ApiState, ProbeRequest};
use super::observe::{Observed, observe};
use super::status::AgentStatus;
use super::supervise::{LocalPg, orphan_postmaster, stop_orphan};
use super::watchdog::Watchdog;
use super::{AgentConfig, AgentError};
use crate::coordinator::Coordinator;
use crate::machine::cadence::routine;
use crate::machine::{
    Action, ActionKind, ClusterView, FailsafeReply, LeaseOutcome, MachineState, MemberName,
    MemberState, Millis, Observation, Phase, TickObservation, next_tick, step,
};
use crate::postgres::{self, MANAGED_FILE};

/// What one tick leaves for the next.
#[derive(Debug, Default)]
struct Carry {
    lease_outcome: Option<LeaseOutcome>,
    failed_action: Option<ActionKind>,
    failsafe_replies: Vec<FailsafeReply>,
}

/// The running agent.
struct Agent<C> {
    cfg: AgentConfig,
    coord: C,
    epoch: Instant,
    machine: MachineState,
    local: LocalPg,
    watchdog: Watchdog,
    carry: Carry,
    status: Arc<RwLock<AgentStatus>>,
    /// The member state of the last step (`GET /member`).
    member: Arc<RwLock<Option<MemberState>>>,
    /// When the last tick ran (`GET /healthz`).
    last_tick: Arc<RwLock<Instant>>,
    /// Whether this process checked the superuser's password on its
    /// writable primary (once: see `Instance::ensure_superuser_password`).
    superuser_checked: bool,
    failovers: u64,
    switchovers: u64,
    last_error: Option<String>,
    last_phase: Phase,
    /// What the last tick saw that a quick poll watches for: the pending
    /// switchover request and the lease's holder and term.
    seen: Watched,
    /// The pending switchover request and when this agent first saw it.
    request_since: Option<(u64, Instant)>,
    /// The non-routine actions last logged.
    last_logged: Vec<String>,
    /// Background operations that failed in a row (reset by one that
    /// succeeds): the next retry waits [`retry_backoff`] of it.
    failed_in_a_row: u32,
}

/// The parts of the view whose change must be acted on at once.
type Watched = (Option<u64>, Option<(Option<MemberName>, u64)>);

fn watched(view: &ClusterView) -> Watched {
    (
        view.switchover.as_ref().map(|r| r.id),
        view.lease
            .as_ref()
            .map(|l| (l.record.holder.clone(), l.record.term)),
    )
}

/// When the next tick runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// At once: PostgreSQL's role changed.
    Now,
    /// Soon: a switchover is under way (every step waits on another member).
    Soon,
    /// At this instant: a loop interval away, or longer while the member is
    /// steady ([`crate::machine::cadence`]).
    At(Instant),
}

/// Runs the agent until `shutdown` resolves, then stops PostgreSQL cleanly
/// (fast shutdown) and returns.
pub async fn run<C: Coordinator>(
    cfg: AgentConfig,
    coord: C,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let epoch = Instant::now();
    let hub = cfg.instance.fence.as_ref().map(|f| f.hub.clone());
    let watchdog = Watchdog::start(Some(cfg.instance.layout.data_dir.clone()), hub)
        .map_err(|source| AgentError::Watchdog { source })?;
    cfg.instance
        .prepare_dirs()
        .map_err(|source| AgentError::Prepare {
            member: cfg.me().to_string(),
            source,
        })?;
    let status = Arc::new(RwLock::new(AgentStatus {
        cluster: cfg.cluster_name.clone(),
        member: cfg.me().to_string(),
        role: "starting".to_owned(),
        state: "Starting".to_owned(),
        agent_pid: std::process::id(),
        pg_port: cfg.instance.port,
        api_port: cfg.api_listen.port(),
        ..Default::default()
    }));
    let (probe_tx, mut probe_rx) = mpsc::channel::<ProbeRequest>(16);
    let member = Arc::new(RwLock::new(None));
    let last_tick = Arc::new(RwLock::new(Instant::now()));
    let (stop_http, stop_http_rx) = watch::channel(false);
    let api_state = ApiState {
        status: status.clone(),
        probes: probe_tx,
        member: member.clone(),
        last_tick: last_tick.clone(),
        wedged_after: wedged_after(&cfg),
        credential: cfg.member_credential(),
    };
    let on_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let (api_app, metrics_server) = match cfg.metrics_listen {
        Some(addr) => {
            let metrics = http::serve_router(
                addr,
                http::metrics_router(api_state.clone()),
                on_stop(stop_http_rx.clone()),
            )
            .await
            .map_err(|source| AgentError::Http { source })?;
            (http::api_router(api_state), Some(metrics))
        }
        None => (http::router(api_state), None),
    };
    let server = http::serve_router(cfg.api_listen, api_app, on_stop(stop_http_rx))
        .await
        .map_err(|source| AgentError::Http { source })?;
    // Only after the API port is ours: a second agent of the same member
    // (started twice by mistake) fails on the port above and leaves the
    // first one's server alone instead of stopping it as an orphan.
    if let Some(pid) = orphan_postmaster(&cfg) {
        stop_orphan(pid).await;
    }
    let mut local = LocalPg::new();
    restore_decisions(&cfg, &mut local);
    tracing::info!(member = %cfg.me(), api = %cfg.api_listen, pg_port = cfg.instance.port, "agent started");

    let machine = MachineState::new(cfg.ha.clone(), Millis(0));
    let mut agent = Agent {
        cfg,
        coord,
        epoch,
        machine,
        local,
        watchdog,
        carry: Carry::default(),
        status,
        member,
        last_tick,
        superuser_checked: false,
        failovers: 0,
        switchovers: 0,
        last_error: None,
        last_phase: Phase::Starting,
        seen: (None, None),
        request_since: None,
        last_logged: Vec::new(),
        failed_in_a_row: 0,
    };
    let loop_interval = agent.cfg.loop_interval();
    // During a switchover every step waits for another member's next tick:
    // tick faster until it is over.
    let soon = (loop_interval / 5).max(Duration::from_millis(20));
    let mut interval = tokio::time::interval(loop_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Between ticks, act at once on a switchover request or a lease
    // hand-over: woken by the store where it can push changes, else by
    // polling it.
    let mut changes = agent.coord.changes();
    let quick = if changes.is_some() {
        None
    } else {
        agent.coord.quick_poll()
    };
    let mut quick_tick = tokio::time::interval(quick.unwrap_or(loop_interval));
    quick_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let wake = agent.local.wake.clone();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some((probe, reply)) = probe_rx.recv() => {
                let now = agent.now();
                answer(&mut agent.machine, now, probe, reply);
            }
            _ = interval.tick() => match agent.tick(&mut probe_rx).await {
                Next::Now => interval.reset_immediately(),
                Next::Soon => interval.reset_after(soon),
                Next::At(at) => interval.reset_at(at.into()),
            },
            () = wake.notified() => interval.reset_immediately(),
            _ = quick_tick.tick(), if quick.is_some() => {
                if agent.view_moved().await {
                    interval.reset_immediately();
                }
            }
            Some(()) = changed(&mut changes) => {
                if agent.view_moved().await {
                    interval.reset_immediately();
                }
            }
        }
    }
    tracing::info!("agent stopping: fast shutdown of PostgreSQL");
    agent.watchdog.disarm();
    let _ = stop_http.send(true);
    if let Some(bg) = agent.local.background.take() {
        bg.abort();
    }
    let pid = agent.local.pid();
    let stopped = agent
        .local
        .stop(postgres::StopMode::Fast, Duration::from_secs(60))
        .await;
    // A postmaster an aborted operation had started is stopped by its pid file.
    if let Some(orphan) = orphan_postmaster(&agent.cfg) {
        stop_orphan(orphan).await;
    }
    let _ = server.await;
    if let Some(metrics) = metrics_server {
        let _ = metrics.await;
    }
    stopped.map_err(|source| AgentError::Shutdown {
        member: agent.cfg.me().to_string(),
        pid: pid.unwrap_or(0),
        source,
    })
}

impl<C: Coordinator> Agent<C> {
    fn now(&self) -> Millis {
        millis_since(self.epoch)
    }

    /// How long a coordinator read may take: three quarters of a loop, or
    /// a third of the renew deadline if that is longer. A busy Kubernetes
    /// API server answers the read (a Lease GET and a pod LIST) in 100-500
    /// ms; with only ¾ of the default 250 ms loop every read timed out on
    /// the test node, so a newly promoted primary never renewed and fenced
    /// itself. A read plus a lease write ([`write_timeout`]: half the renew
    /// deadline) still fits in one renew deadline.
    fn coord_timeout(&self) -> Duration {
        (self.cfg.loop_interval() * 3 / 4)
            .max(self.cfg.ha.timings.renew_deadline / 3)
            .max(Duration::from_millis(50))
    }

    /// A quick read of the coordinator between ticks: whether a switchover
    /// request appeared or went, or the lease changed hands, since the last
    /// tick (so the next tick should run at once).
    async fn view_moved(&mut self) -> bool {
        match tokio::time::timeout(self.coord_timeout(), self.coord.read_view()).await {
            Ok(Ok(view)) => {
                let now = watched(&view);
                if now != self.seen {
                    tracing::debug!(?now, "coordinator changed between ticks");
                    self.seen = now;
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    /// One loop: observe, read, step, execute. Returns when the next tick
    /// should run.
    #[instrument(skip_all, fields(cluster = %self.cfg.cluster_name, member = %self.cfg.me()))]
    async fn tick(&mut self, probes: &mut mpsc::Receiver<ProbeRequest>) -> Next {
        let coord_timeout = self.coord_timeout();
        let finished = self.poll_background().await;
        let observe_timeout = coord_timeout.max(Duration::from_millis(250));
        // Peers' failsafe probes are answered while this tick waits on
        // PostgreSQL, the coordinator or an action, not after it.
        let epoch = self.epoch;
        let observed = answering(
            observe(&self.cfg, &mut self.local, observe_timeout),
            &mut self.machine,
            epoch,
            probes,
        )
        .await;
        self.watchdog.set_pid(self.local.pid());
        if !self.superuser_checked && observed.pg.is_primary() {
            self.superuser_checked = true;
            let instance = self.cfg.instance.clone();
            tokio::spawn(async move {
                match instance.ensure_superuser_password().await {
                    Ok(true) => {
                        tracing::info!("the superuser's password did not match its secret: set it")
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(error = %crate::agent::execute::error_chain(&error), "could not check the superuser's password")
                    }
                }
            });
        }
        // A lease write that got no answer most likely met an unreachable
        // coordinator: go straight to the failsafe probes instead of spending
        // a read timeout first. A renewal that hung for the write timeout
        // plus a read that hangs too left too little of the renew deadline to
        // probe the peers (the failsafe test on the node, with the API server
        // stopped between a read and the renewal). The read after the probes
        // tells whether the write landed.
        let write_unanswered = matches!(self.carry.lease_outcome, Some(LeaseOutcome::Failed));
        let read_timeout = self.coord_timeout();
        let coord = &self.coord;
        let read = async move {
            if write_unanswered {
                return Err(());
            }
            tokio::time::timeout(read_timeout, coord.read_view())
                .await
                .map_err(|_| ())
        };
        let view = match answering(read, &mut self.machine, epoch, probes).await {
            Ok(Ok(view)) => Some(view),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not read the coordinator");
                None
            }
            Err(()) if write_unanswered => {
                tracing::warn!("the last lease write got no answer: probing the peers first");
                None
            }
            Err(()) => {
                tracing::warn!("reading the coordinator timed out");
                None
            }
        };
        let mut carry = std::mem::take(&mut self.carry);
        if let Some(kind) = finished {
            carry.failed_action = Some(kind);
        }
        let tick = TickObservation {
            postgres: observed.pg.clone(),
            view: view.clone(),
            lease_outcome: carry.lease_outcome,
            failed_action: carry.failed_action,
            failsafe_replies: carry.failsafe_replies,
        };
        let now = self.now();
        let step_at = Instant::now();
        let (next, actions) = step(self.machine.clone(), now, Observation::Tick(Box::new(tick)));
        self.machine = next;
        *self
            .last_tick
            .write()
            .expect("the tick lock is never poisoned because writers only assign") = step_at;
        if let Some(state) = actions.iter().find_map(|a| match a {
            Action::PublishState(state) => Some(state.clone()),
            _ => None,
        }) {
            *self
                .member
                .write()
                .expect("the member lock is never poisoned because writers only assign") =
                Some(state);
        }
        let cadence = next_tick(&self.machine, now, &actions);
        if self.machine.phase() != self.last_phase {
            tracing::info!(from = ?self.last_phase, to = ?self.machine.phase(), "phase changed");
            self.last_phase = self.machine.phase();
        }
        let kinds: Vec<String> = actions
            .iter()
            .filter(|a| !routine(a))
            .map(describe)
            .collect();
        // An operation in progress is asked for again every tick (a no-op
        // while it runs): log a decision once, not every tick.
        if !kinds.is_empty() && kinds != self.last_logged {
            tracing::info!(actions = ?kinds, "executing");
        }
        self.last_logged = kinds;
        let mut host = AgentHost {
            cfg: &self.cfg,
            local: &mut self.local,
            watchdog: &self.watchdog,
            epoch: self.epoch,
        };
        let batch = Executor {
            coord: &self.coord,
            host: &mut host,
            observed: &observed.pg,
            coord_timeout: write_timeout(&self.cfg),
        }
        .run(actions);
        let outcome = answering(batch, &mut self.machine, epoch, probes).await;
        let next_in = Duration::from_millis(cadence.after(outcome.lease_outcome.as_ref()));
        if !outcome.failsafe_replies.is_empty() {
            // Confirmations extend the fence's deadline now, not a tick later.
            let observation = Observation::FailsafeReplies(outcome.failsafe_replies.clone());
            let (next, actions) = step(self.machine.clone(), self.now(), observation);
            self.machine = next;
            for action in actions {
                if let Action::ArmWatchdog { deadline } = action {
                    let mut host = AgentHost {
                        cfg: &self.cfg,
                        local: &mut self.local,
                        watchdog: &self.watchdog,
                        epoch: self.epoch,
                    };
                    host.arm(deadline);
                }
            }
        }
        let writable = observed.pg.running && !observed.pg.in_recovery;
        if !keeps_fence_armed(outcome.armed, self.machine.held_lease().is_some(), writable) {
            self.watchdog.disarm();
        }
        let changed = outcome.changed || finished.is_some();
        self.absorb(outcome);
        self.publish_status(&observed, view.as_ref());
        if let Some(v) = &view {
            self.seen = watched(v);
        }
        let request = view.as_ref().and_then(|v| v.switchover.as_ref());
        if request.map(|r| r.id) != self.request_since.map(|(id, _)| id) {
            self.request_since = request.map(|r| (r.id, Instant::now()));
        }
        // A request nobody acts on (its requester died) stops speeding us up.
        let pending = self
            .request_since
            .is_some_and(|(_, since)| since.elapsed() < Duration::from_secs(30));
        let switching = pending
            || matches!(
                self.machine.phase(),
                Phase::SwitchingOver | Phase::Promoting
            );
        if changed {
            Next::Now
        } else if switching {
            Next::Soon
        } else {
            Next::At(step_at + next_in)
        }
    }

    /// Installs the result of a finished background operation; returns the
    /// kind of a failed one. A failure is logged at once but reported only
    /// after a backoff ([`retry_backoff`]): until then it holds the
    /// background slot, so the machine's next request for the operation
    /// does not retry it at once (a clone from an unreachable primary was
    /// retried every 10-30 ms on the real node before this).
    async fn poll_background(&mut self) -> Option<ActionKind> {
        let bg = self.local.background.as_mut()?;
        let done = bg.poll().await?;
        let bg = self.local.background.take()?;
        let elapsed_ms = bg.started.elapsed().as_millis() as u64;
        if !bg.held()
            && let Err(error) = &done.result
        {
            let text = super::execute::error_chain(error);
            self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
            let delay = retry_backoff(self.cfg.loop_interval(), self.failed_in_a_row);
            tracing::warn!(op = ?bg.op.kind(), elapsed_ms, error = %text, retry_in_ms = delay.as_millis() as u64, "operation failed");
            self.last_error = Some(text);
            let op = bg.op.clone();
            self.local.background = Some(super::background::Background::hold(
                op,
                done,
                delay,
                self.local.wake.clone(),
            ));
            return None;
        }
        if let Some(pm) = done.postmaster {
            self.local.postmaster = Some(pm);
        }
        self.local.client = None;
        self.local.last_running = None;
        self.watchdog.set_pid(self.local.pid());
        match done.result {
            Ok(()) => {
                self.failed_in_a_row = 0;
                tracing::info!(op = ?bg.op.kind(), elapsed_ms, "operation finished");
                if let super::background::Op::Promote { failover, .. } = bg.op {
                    if failover {
                        self.failovers += 1;
                    } else {
                        self.switchovers += 1;
                    }
                }
                None
            }
            // Logged when it failed; reported now that its backoff is over.
            Err(_) => Some(bg.op.kind()),
        }
    }

    fn absorb(&mut self, outcome: BatchOutcome) {
        if outcome.failover {
            self.failovers += 1;
        }
        if outcome.switchover {
            self.switchovers += 1;
        }
        if outcome.error.is_some() {
            self.last_error = outcome.error;
        }
        self.carry = Carry {
            lease_outcome: outcome.lease_outcome,
            failed_action: outcome.failed_action,
            failsafe_replies: outcome.failsafe_replies,
        };
    }

    fn publish_status(&self, observed: &Observed, view: Option<&ClusterView>) {
        let pg = &observed.pg;
        let role = if !pg.running {
            if self.machine.phase() == Phase::Refused {
                "refused"
            } else {
                "stopped"
            }
        } else if pg.in_recovery {
            "replica"
        } else {
            "primary"
        };
        let lease = view.and_then(|v| v.lease.as_ref());
        let holder = lease.and_then(|l| l.record.holder.clone());
        let primary_lsn = view
            .zip(holder.as_ref())
            .and_then(|(v, h)| v.members.get(h))
            .map(|m| m.flushed_lsn.0);
        let end = pg.end_lsn().0;
        let lag = match (pg.in_recovery, primary_lsn) {
            (true, Some(p)) => p.saturating_sub(end),
            _ => 0,
        };
        let ready = match role {
            "primary" => {
                self.machine.held_lease().is_some() && self.machine.phase() == Phase::Primary
            }
            "replica" => pg.streaming,
            _ => false,
        };
        let mut s = self
            .status
            .write()
            .expect("the status lock is never poisoned because writers only assign");
        s.role = role.to_owned();
        s.state = format!("{:?}", self.machine.phase());
        s.ready = ready;
        s.running = pg.running;
        s.timeline = pg.timeline.0;
        s.lsn = crate::machine::Lsn(end).to_string();
        s.lsn_bytes = end;
        s.lag_bytes = lag;
        s.following = pg.upstream.as_ref().map(MemberName::to_string);
        s.postgres_pid = self.local.pid();
        s.lease_holder = holder.map(|h| h.to_string());
        s.lease_term = lease.map_or(0, |l| l.record.term);
        s.connections = observed.connections.map_or(0, |c| c.in_use);
        s.max_connections = observed.connections.map_or(0, |c| c.max);
        s.failovers_total = self.failovers;
        s.switchovers_total = self.switchovers;
        s.watchdog_fired = self.watchdog.fired();
        s.last_error = self.last_error.clone();
        s.note = self.machine.note().map(str::to_owned);
    }
}

/// The next change pushed by the coordinator; `None` (and no more waiting)
/// when it pushes none.
async fn changed(changes: &mut Option<watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(()),
            Err(_) => {
                *changes = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// Runs `fut` while answering failsafe probes from `probes` with `machine`,
/// so that a slow observation, coordinator call or action never keeps a
/// peer waiting for its answer.
async fn answering<F: Future>(
    fut: F,
    machine: &mut MachineState,
    epoch: Instant,
    probes: &mut mpsc::Receiver<ProbeRequest>,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            Some((probe, reply)) = probes.recv() => answer(machine, millis_since(epoch), probe, reply),
        }
    }
}

/// Steps the machine with a failsafe probe and sends its answer. The
/// machine answers a probe with exactly one `AnswerProbe` and nothing else
/// (see `machine::step`), so no executor is needed.
fn answer(
    machine: &mut MachineState,
    now: Millis,
    probe: crate::machine::FailsafeProbe,
    reply: tokio::sync::oneshot::Sender<FailsafeReply>,
) {
    let (next, actions) = step(machine.clone(), now, Observation::FailsafeProbe(probe));
    *machine = next;
    if let Some(answer) = actions.into_iter().find_map(|a| match a {
        Action::AnswerProbe(r) => Some(r),
        _ => None,
    }) {
        let _ = reply.send(answer);
    }
}

fn millis_since(epoch: Instant) -> Millis {
    Millis(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Actions that happen every loop and are not worth an info log.
fn describe(a: &Action) -> String {
    match a {
        Action::StartAsReplica { of } => format!("StartAsReplica({of})"),
        Action::Promote { timeline } => format!("Promote(timeline {timeline})"),
        Action::Rewind { from } => format!("Rewind({from})"),
        Action::Reclone { from } => format!("Reclone({from})"),
        Action::HandOverLease { to, .. } => format!("HandOverLease({to})"),
        Action::AcquireLease { record, .. } => format!("AcquireLease(term {})", record.term),
        Action::SetSyncStandbys(s) => format!("SetSyncStandbys({})", s.to_setting()),
        other => format!("{:?}", other.kind()),
    }
}

/// Restores what the previous agent configured (standby of whom,
/// synchronous_standby_names) from `pgcluster.conf`, so that the first
/// observation of a stopped server is right.
fn restore_decisions(cfg: &AgentConfig, local: &mut LocalPg) {
    let path = cfg.instance.layout.data_dir.join(MANAGED_FILE);
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('\'').replace("''", "'"))
        })
    };
    if let Some(sync) = value("synchronous_standby_names") {
        local.sync = super::observe::parse_sync_standbys(&sync);
    }
    if cfg.instance.layout.data_dir.join("standby.signal").exists()
        && let Some(conninfo) = value("primary_conninfo")
        && let Some(port) = conninfo
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("port="))
            .and_then(|p| p.parse::<u16>().ok())
    {
        // Local members differ by port, Kubernetes members by host.
        let host = conninfo
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("host="));
        local.standby_of = cfg
            .peers
            .iter()
            .find(|(_, p)| p.pg_port == port && host.is_none_or(|h| h == p.host))
            .map(|(m, _)| m.clone());
    }
}

/// How long the `failures`-th failed background operation in a row waits
/// before the machine hears of it (and may ask for it again): one loop
/// interval, doubling with each further failure, at most
/// [`MAX_RETRY_BACKOFF`] (or one loop interval if that is longer).
pub fn retry_backoff(loop_interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    loop_interval
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_BACKOFF.max(loop_interval))
}

/// The longest wait before a failed background operation is retried.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// The timeout of coordinator writes ([`crate::machine::HaConfig::write_timeout`]).
pub fn write_timeout(cfg: &AgentConfig) -> Duration {
    cfg.ha.write_timeout()
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How long without a tick makes `/healthz` fail: twenty loops, at least
/// 30 s. Long operations (start, clone, rewind) run beside the loop, so only
/// a wedged loop goes that long without a tick.
pub fn wedged_after(cfg: &AgentConfig) -> Duration {
    (cfg.loop_interval() * 20).max(Duration::from_secs(30))
}

/// Whether the fence stays armed after a batch: it was armed by the batch,
/// the member holds the lease, or the server it saw at the start of the tick
/// was writable. A writable server without a lease (a fence that failed)
/// keeps the armed deadline, so the fencer stops it if the agent cannot.
pub fn keeps_fence_armed(armed: bool, holds_lease: bool, writable: bool) -> bool {
    armed || holds_lease || writable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed background operation waits one loop, then twice as long
    /// after each further failure, never longer than the cap.
    #[test]
    fn retry_backoff_doubles_from_one_loop_up_to_the_cap() {
        let ms = |n| retry_backoff(Duration::from_millis(250), n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [250, 500, 1_000, 2_000]);
        assert_eq!(ms(8), 30_000);
        assert_eq!(ms(u32::MAX), 30_000);
        // A loop longer than the cap: one loop.
        assert_eq!(
            retry_backoff(Duration::from_secs(60), 5),
            Duration::from_secs(60)
        );
    }
}
