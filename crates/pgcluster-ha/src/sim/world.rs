//! The event loop: members, the coordinator, the network, the client.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use std::time::Duration;

use super::check::Checker;
use super::host::{CoordFault, Effect, SimCoord, SimHost, SimLocal};
use super::pg::{Data, SimPg};
use super::rng::Rng;
use super::schedule::{Fault, FaultKind, Target, random_faults};
use super::{SimConfig, SimReport};
use crate::agent::background::Op;
use crate::agent::driver::keeps_fence_armed;
use crate::agent::execute::{BatchOutcome, Executor, acquires};
use crate::coordinator::memory::MemoryCoordinator;
use crate::machine::{
    Action, ActionKind, ClusterView, FailsafeProbe, FailsafeReply, HaConfig, MachineState,
    MemberName, Millis, Observation, PgObservation, ReplicaProgress, SwitchoverRequest,
    TickObservation, Timeline, step,
};

/// The cluster's system identifier in every run.
pub(super) const SYSID: u64 = 7_000_000_001;
const FOREIGN_SYSID: u64 = 9_999;
const CLIENT_EVERY: u64 = 20;
const STREAM_EVERY: u64 = 25;
const COORD_TIMEOUT: u64 = 60;

#[derive(Clone, Debug)]
enum Event {
    Tick {
        m: usize,
        inc: u64,
    },
    ReadDone {
        m: usize,
        inc: u64,
    },
    Step {
        m: usize,
        inc: u64,
    },
    Exec {
        m: usize,
        inc: u64,
    },
    OpDone {
        m: usize,
        seq: u64,
    },
    Stream {
        m: usize,
    },
    Deliver {
        m: usize,
        from: usize,
        len: usize,
        last: u64,
    },
    Client,
    Watchdog {
        m: usize,
        deadline: Millis,
    },
    Probe {
        to: usize,
        from: usize,
        probe: FailsafeProbe,
    },
    Reply {
        to: usize,
        inc: u64,
        reply: FailsafeReply,
    },
    FaultStart(usize),
    FaultEnd(usize),
    Status,
}

#[derive(Debug)]
struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The agent process of one member.
pub(super) struct Agent {
    pub state: Option<MachineState>,
    batch: VecDeque<Action>,
    /// The running batch's outcome, as the real executor fills it.
    out: BatchOutcome,
    /// The running batch takes an expired lease.
    acquired: bool,
    /// What this tick observed (the executor's `observed`).
    observed: PgObservation,
    /// A background operation that failed, reported at the next tick.
    op_failed: Option<ActionKind>,
    replies: Vec<FailsafeReply>,
    view: Option<ClusterView>,
    tick_started: u64,
}

/// One simulated member.
pub(super) struct Member {
    offset: u64,
    ppm: i64,
    pub agent: Option<Agent>,
    inc: u64,
    pub pg: SimPg,
    /// The agent's configuration state, its operation and the fencer's deadline.
    pub host: SimLocal,
    pub coord_down: u32,
    pub foreign: bool,
    /// The agent is frozen until this time.
    paused_until: u64,
    /// The whole member (PostgreSQL and the fencer too) is frozen through this time.
    frozen_until: u64,
    /// PostgreSQL's disk stalls through this time.
    stalled_until: u64,
}

pub(super) struct World {
    pub cfg: SimConfig,
    rng: Rng,
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    pub names: Vec<MemberName>,
    configs: Vec<HaConfig>,
    pub members: Vec<Member>,
    pub coord: MemoryCoordinator,
    partitions: Vec<Vec<u32>>,
    next_record: u64,
    pub faults: Vec<Fault>,
    pub resolved: Vec<Option<usize>>,
    max_delay: u64,
    /// Per mille of coordinator writes that take effect but whose answer is lost.
    lost_answers: u64,
    pub checker: Checker,
    pub report: SimReport,
    /// When the stored lease record was last written (global time).
    lease_written_at: u64,
    /// Runs the real executor's futures (they never wait on the fakes).
    rt: tokio::runtime::Runtime,
}

impl World {
    pub fn new(cfg: &SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let n = cfg.members;
        let names: Vec<MemberName> = (0..n).map(|i| MemberName::new(format!("pg-{i}"))).collect();
        let configs = names
            .iter()
            .map(|me| {
                HaConfig::new(me.clone(), names.clone(), cfg.timings, cfg.replication, true)
                    .expect("the simulator's timings are checked by the caller because HaConfig::new rejects unsafe ones")
            })
            .collect();
        let max_delay = cfg.max_delay.unwrap_or_else(|| rng.range(1, 40));
        let drawn = if rng.chance(1, 3) {
            rng.range(5, 50)
        } else {
            0
        };
        let lost_answers = cfg.lost_answers.unwrap_or(drawn);
        let drift = i64::try_from(
            cfg.timings.max_clock_drift.as_micros() * 1000
                / cfg.timings.lease_duration.as_millis().max(1)
                / 2,
        )
        .unwrap_or(0);
        let members = (0..n)
            .map(|_| Member {
                offset: rng.range(0, 1_000_000),
                ppm: rng.range(0, 2 * drift as u64) as i64 - drift,
                agent: None,
                inc: 0,
                pg: SimPg::default(),
                host: SimLocal::default(),
                coord_down: 0,
                foreign: false,
                paused_until: 0,
                frozen_until: 0,
                stalled_until: 0,
            })
            .collect();
        let (shape, faults) = match &cfg.faults {
            Some(f) => (None, f.clone()),
            None => {
                let max_jump = cfg.timings.max_clock_drift.as_millis() as u64 / 2;
                let (s, f) = random_faults(&mut rng, n, cfg.faults_from, cfg.heal_at, max_jump);
                (Some(s), f)
            }
        };
        let report = SimReport {
            seed: cfg.seed,
            shape,
            faults: faults.clone(),
            ..SimReport::default()
        };
        Self {
            cfg: cfg.clone(),
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            names,
            configs,
            members,
            coord: MemoryCoordinator::new(),
            partitions: vec![vec![0; n]; n],
            next_record: 1,
            resolved: vec![None; faults.len()],
            faults,
            max_delay,
            lost_answers,
            checker: Checker::new(n),
            report,
            lease_written_at: 0,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime builds without I/O resources"),
        }
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn delay(&mut self) -> u64 {
        self.rng.range(1, self.max_delay)
    }

    /// Member `m`'s clock now.
    pub fn local(&self, m: usize) -> Millis {
        let mb = &self.members[m];
        let skew = (i128::from(self.now) * i128::from(mb.ppm)) / 1_000_000;
        Millis((i128::from(mb.offset) + i128::from(self.now) + skew) as u64)
    }

    /// Real ms for `d` ms of member `m`'s clock (rounded up).
    fn real_for(&self, m: usize, d: u64) -> u64 {
        let ppm = self.members[m].ppm;
        ((i128::from(d) * 1_000_000 + (1_000_000 + i128::from(ppm)) - 1)
            / (1_000_000 + i128::from(ppm))) as u64
    }

    pub fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partitions[a][b] > 0
    }

    pub fn run(mut self) -> SimReport {
        for (i, f) in self.faults.clone().iter().enumerate() {
            if f.kind == FaultKind::ForeignData {
                self.apply_fault_start(i);
            } else {
                self.push(f.at, Event::FaultStart(i));
                if f.until > f.at {
                    self.push(f.until, Event::FaultEnd(i));
                }
            }
        }
        for m in 0..self.members.len() {
            let at = self.rng.range(0, 250);
            self.start_agent(m, at);
            self.push(at + m as u64, Event::Stream { m });
        }
        self.push(CLIENT_EVERY, Event::Client);
        if self.cfg.trace {
            self.push(500, Event::Status);
        }
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.cfg.duration {
                break;
            }
            self.now = q.at;
            self.report.events += 1;
            self.handle(q.event);
            Checker::after_event(&mut self);
        }
        self.now = self.cfg.duration;
        Checker::at_end(&mut self);
        self.report
    }

    fn start_agent(&mut self, m: usize, at: u64) {
        let mb = &mut self.members[m];
        mb.inc += 1;
        let inc = mb.inc;
        let local = self.local(m);
        self.members[m].agent = Some(Agent {
            state: Some(MachineState::new(self.configs[m].clone(), local)),
            batch: VecDeque::new(),
            out: BatchOutcome::default(),
            acquired: false,
            observed: PgObservation::empty(),
            op_failed: None,
            replies: Vec::new(),
            view: None,
            tick_started: at,
        });
        self.push(at, Event::Tick { m, inc });
    }

    fn kill_agent(&mut self, m: usize) {
        let mb = &mut self.members[m];
        mb.agent = None;
        mb.inc += 1;
        // The agent's state and its operation die with it; the fencer's
        // deadline does not.
        mb.host = SimLocal {
            op_seq: mb.host.op_seq,
            armed: mb.host.armed,
            ..SimLocal::default()
        };
    }

    /// The whole member is frozen (a `PauseMember` fault): its server takes
    /// no write and streams nothing.
    pub fn frozen(&self, m: usize) -> bool {
        let mb = &self.members[m];
        mb.frozen_until.max(mb.stalled_until) >= self.now
    }

    fn alive(&self, m: usize, inc: u64) -> bool {
        self.members[m].agent.is_some() && self.members[m].inc == inc
    }

    fn agent(&mut self, m: usize) -> &mut Agent {
        self.members[m]
            .agent
            .as_mut()
            .expect("events for a dead agent are filtered by alive() because kill_agent bumps the incarnation")
    }

    fn handle(&mut self, event: Event) {
        // A frozen agent handles nothing until it thaws; then it carries on.
        let agent_of = match &event {
            Event::Tick { m, .. }
            | Event::ReadDone { m, .. }
            | Event::Step { m, .. }
            | Event::Exec { m, .. } => Some(*m),
            Event::Probe { to, .. } | Event::Reply { to, .. } => Some(*to),
            _ => None,
        };
        if let Some(m) = agent_of
            && self.members[m].paused_until > self.now
        {
            let at = self.members[m].paused_until;
            self.push(at, event);
            return;
        }
        match event {
            Event::Tick { m, inc } if self.alive(m, inc) => {
                let now = self.now;
                self.agent(m).tick_started = now;
                if self.members[m].coord_down == 0 {
                    let d = self.delay();
                    self.push(now + d, Event::ReadDone { m, inc });
                } else {
                    self.push(now + COORD_TIMEOUT, Event::Step { m, inc });
                }
            }
            Event::ReadDone { m, inc } if self.alive(m, inc) => {
                if self.members[m].coord_down == 0 {
                    let view = self.coord.view();
                    self.agent(m).view = Some(view);
                    let d = self.delay();
                    self.push(self.now + d, Event::Step { m, inc });
                } else {
                    self.push(self.now + COORD_TIMEOUT, Event::Step { m, inc });
                }
            }
            Event::Step { m, inc } if self.alive(m, inc) => self.do_step(m, inc),
            Event::Exec { m, inc } if self.alive(m, inc) => self.exec(m, inc),
            Event::OpDone { m, seq } if self.frozen(m) => {
                let mb = &self.members[m];
                let at = mb.frozen_until.max(mb.stalled_until) + 1;
                self.push(at, Event::OpDone { m, seq });
            }
            Event::OpDone { m, seq } => self.complete_op(m, seq),
            Event::Stream { m } => {
                self.stream(m);
                self.push(self.now + STREAM_EVERY, Event::Stream { m });
            }
            Event::Deliver { m, from, len, last } => self.deliver(m, from, len, last),
            Event::Client => {
                self.client_write();
                self.push(self.now + CLIENT_EVERY, Event::Client);
            }
            Event::Watchdog { m, deadline } if self.members[m].frozen_until >= self.now => {
                // A frozen fencer acts when it thaws (the fault's end runs it first).
                let at = self.members[m].frozen_until + 1;
                self.push(at, Event::Watchdog { m, deadline });
            }
            Event::Watchdog { m, deadline }
                if !self.cfg.broken_fence && self.members[m].host.armed == Some(deadline) =>
            {
                self.fence(m, "at its deadline");
            }
            Event::Probe { to, from, probe } => {
                let inc = self.members[to].inc;
                if !self.alive(to, inc) {
                    return;
                }
                let local = self.local(to);
                let agent = self.agent(to);
                let state = agent
                    .state
                    .take()
                    .expect("an agent always has a state between events");
                let (state, actions) = step(state, local, Observation::FailsafeProbe(probe));
                self.agent(to).state = Some(state);
                for a in actions {
                    if let Action::AnswerProbe(reply) = a
                        && !self.partitioned(to, from)
                    {
                        let d = self.delay();
                        let inc = self.members[from].inc;
                        self.push(
                            self.now + d,
                            Event::Reply {
                                to: from,
                                inc,
                                reply,
                            },
                        );
                    }
                }
            }
            Event::Reply { to, inc, reply } if self.alive(to, inc) => {
                self.agent(to).replies.push(reply);
            }
            Event::FaultStart(i) => self.apply_fault_start(i),
            Event::FaultEnd(i) => self.apply_fault_end(i),
            Event::Status => {
                self.status_line();
                self.push(self.now + 500, Event::Status);
            }
            _ => {}
        }
    }

    fn replicas_of(&self, p: usize) -> Vec<ReplicaProgress> {
        let Some(pd) = &self.members[p].pg.data else {
            return Vec::new();
        };
        (0..self.members.len())
            .filter(|&j| j != p)
            .filter_map(|j| {
                let pg = &self.members[j].pg;
                let d = pg.data.as_ref()?;
                (pg.standby()
                    && pg.upstream == Some(p)
                    && pg.streaming
                    && !self.partitioned(j, p)
                    && d.is_prefix_of(pd, pd.wal.len()))
                .then(|| ReplicaProgress {
                    name: self.names[j].clone(),
                    flushed_lsn: d.lsn(),
                })
            })
            .collect()
    }

    fn do_step(&mut self, m: usize, inc: u64) {
        let replicas = self.replicas_of(m);
        let postgres = self.members[m].pg.observe(&self.names, replicas);
        let local = self.local(m);
        let agent = self.agent(m);
        let out = std::mem::take(&mut agent.out);
        let mut replies = std::mem::take(&mut agent.replies);
        replies.extend(out.failsafe_replies);
        let tick = TickObservation {
            postgres: postgres.clone(),
            view: agent.view.take(),
            lease_outcome: out.lease_outcome,
            // A failed background operation is reported as the driver does.
            failed_action: agent.op_failed.take().or(out.failed_action),
            failsafe_replies: replies,
        };
        let state = agent
            .state
            .take()
            .expect("an agent always has a state between events");
        let (state, actions) = step(state, local, Observation::Tick(Box::new(tick)));
        let agent = self.agent(m);
        agent.state = Some(state);
        agent.acquired = acquires(&actions);
        agent.batch = actions.into();
        agent.observed = postgres;
        self.schedule_exec(m, inc, self.now);
    }

    fn schedule_exec(&mut self, m: usize, inc: u64, after: u64) {
        let next = self.agent(m).batch.front().map(is_coordinator_op);
        match next {
            Some(true) => {
                let d = self.delay();
                self.push(after + d, Event::Exec { m, inc });
            }
            Some(false) => self.push(after, Event::Exec { m, inc }),
            None => {
                // The batch is over: the driver's disarm rule.
                let agent = self.agent(m);
                let holds = agent
                    .state
                    .as_ref()
                    .is_some_and(|s| s.held_lease().is_some());
                let writable = agent.observed.running && !agent.observed.in_recovery;
                if !keeps_fence_armed(agent.out.armed, holds, writable) {
                    self.members[m].host.armed = None;
                }
                let started = self.agent(m).tick_started;
                let interval = self.real_for(m, self.configs[m].ms.loop_interval);
                self.push((started + interval).max(after + 1), Event::Tick { m, inc });
            }
        }
    }

    /// Runs the next action of the batch through the real executor, on the
    /// simulated host and coordinator, then carries out what it did.
    fn exec(&mut self, m: usize, inc: u64) {
        let Some(action) = self.agent(m).batch.pop_front() else {
            return;
        };
        let acquire = matches!(action, Action::AcquireLease { .. });
        let fault = if self.members[m].coord_down > 0 {
            CoordFault::Down
        } else if is_coordinator_op(&action) && self.answer_lost() {
            CoordFault::AnswerLost
        } else {
            CoordFault::None
        };
        let delay = if is_coordinator_op(&action) {
            self.delay()
        } else {
            0
        };
        let now = self.local(m);
        let agent = self.members[m]
            .agent
            .as_mut()
            .expect("exec events are filtered by alive()");
        let mut out = std::mem::take(&mut agent.out);
        let acquired = agent.acquired;
        let observed = agent.observed.clone();
        let coord = SimCoord::new(&self.coord, fault, delay, COORD_TIMEOUT);
        let mb = &mut self.members[m];
        let mut host = SimHost {
            now,
            local: &mut mb.host,
            pg: &mut mb.pg,
            names: &self.names,
            effects: Vec::new(),
            latency: 0,
        };
        let go_on = self.rt.block_on(
            Executor {
                coord: &coord,
                host: &mut host,
                observed: &observed,
                coord_timeout: Duration::from_millis(COORD_TIMEOUT),
            }
            .next(action, acquired, &mut out),
        );
        let effects = std::mem::take(&mut host.effects);
        let latency = host.latency + coord.latency();
        let writes = coord
            .writes
            .into_inner()
            .expect("never poisoned: nothing panics while holding it");
        self.agent(m).out = out;
        for write in writes {
            self.lease_written(m, acquire, write.before, write.after);
        }
        for effect in effects {
            self.carry_out(m, effect);
        }
        if !go_on {
            self.agent(m).batch.clear();
        }
        self.schedule_exec(m, inc, self.now + latency);
    }

    fn lease_written(
        &mut self,
        m: usize,
        acquire: bool,
        before: Option<crate::machine::Lease>,
        lease: crate::machine::Lease,
    ) {
        let name = self.names[m].clone();
        if acquire
            && let Some(old) = before.as_ref().and_then(|l| l.record.holder.clone())
            && old != name
        {
            let written = self.lease_written_at;
            Checker::acquired(self, &old, written);
        }
        self.lease_written_at = self.now;
        if before.as_ref().map(|l| (&l.record.holder, l.record.term))
            != Some((&lease.record.holder, lease.record.term))
        {
            trace!(
                self,
                "lease -> {} term {} timeline {} (by {name})",
                lease
                    .record
                    .holder
                    .as_ref()
                    .map_or("nobody", |h| h.as_str()),
                lease.record.term,
                lease.record.timeline
            );
        }
    }

    fn carry_out(&mut self, m: usize, effect: Effect) {
        let name = self.names[m].clone();
        match effect {
            Effect::Started { seq, after } => {
                self.push(self.now + after, Event::OpDone { m, seq });
            }
            Effect::Stopped { was_writable, why } => {
                if was_writable {
                    trace!(self, "{name} stopped a writable server ({why})");
                }
            }
            Effect::Armed(deadline) => {
                let wait = self.real_for(m, deadline.since(self.local(m)));
                self.push(self.now + wait, Event::Watchdog { m, deadline });
            }
            Effect::Probe(probe) => {
                for j in 0..self.members.len() {
                    if j != m && !self.partitioned(m, j) {
                        let d = self.delay();
                        self.push(
                            self.now + d,
                            Event::Probe {
                                to: j,
                                from: m,
                                probe: probe.clone(),
                            },
                        );
                    }
                }
            }
            Effect::SyncChanged => self.try_acks(m),
        }
    }

    /// Member `m`'s clock steps forward by `ms`; its fencer, on the same
    /// clock, acts on the new time.
    fn jump_clock(&mut self, m: usize, ms: u64) {
        self.members[m].offset += ms;
        let Some(deadline) = self.members[m].host.armed else {
            return;
        };
        let wait = self.real_for(m, deadline.since(self.local(m)));
        self.push(self.now + wait, Event::Watchdog { m, deadline });
    }

    /// The fencer stops the server (whatever its role) and forgets its deadline.
    fn fence(&mut self, m: usize, why: &str) {
        let mb = &mut self.members[m];
        mb.host.armed = None;
        if !mb.pg.running {
            return;
        }
        let was_writable = mb.pg.writable();
        mb.pg.stop();
        if let Some(agent) = &mut mb.agent
            && let Some(running) = mb.host.op.take()
        {
            agent.op_failed = Some(running.op.kind());
        }
        if was_writable {
            trace!(self, "{} fencer stopped PostgreSQL {why}", self.names[m]);
        }
    }

    /// A background operation completes: what the real one does to the server.
    fn complete_op(&mut self, m: usize, seq: u64) {
        let mb = &mut self.members[m];
        if mb.host.op.as_ref().is_none_or(|r| r.seq != seq) {
            return; // aborted, or its agent died
        }
        let running = mb.host.op.take().expect("checked just above");
        let ok = self.op_effect(m, &running.op, running.standby_of);
        if !ok && let Some(agent) = &mut self.members[m].agent {
            agent.op_failed = Some(running.op.kind());
        }
    }

    /// Applies `op` to member `m`'s server; false when it fails.
    fn op_effect(&mut self, m: usize, op: &Op, standby_of: Option<MemberName>) -> bool {
        let name = self.names[m].clone();
        let sync = self.members[m].host.sync.clone();
        match op {
            Op::Bootstrap => {
                let pg = &mut self.members[m].pg;
                if pg.data.is_some() {
                    return false;
                }
                let marker = self.next_record;
                self.next_record += 1;
                pg.data = Some(Data {
                    sysid: SYSID,
                    wal: vec![marker],
                    history: vec![(Timeline(1), 0)],
                    standby: false,
                });
                pg.running = true;
                pg.upstream = None;
                pg.sync = sync;
                trace!(self, "{name} initialised the cluster");
                Checker::became_writable(self, m);
                true
            }
            Op::Start => {
                let upstream = standby_of.as_ref().map(|o| self.index(o));
                let pg = &mut self.members[m].pg;
                let Some(d) = &mut pg.data else {
                    return false;
                };
                // Without standby settings a standby's data directory
                // starts as a primary, as PostgreSQL does.
                d.standby = upstream.is_some();
                pg.running = true;
                pg.streaming = false;
                pg.upstream = upstream;
                pg.sync = sync;
                if upstream.is_none() {
                    trace!(self, "{name} started as primary");
                    Checker::became_writable(self, m);
                }
                true
            }
            Op::Promote { timeline, .. } => {
                let marker = self.next_record;
                let pg = &mut self.members[m].pg;
                let Some(d) = &mut pg.data else {
                    return false;
                };
                if !d.standby {
                    return false; // pg_promote: recovery is not in progress
                }
                // The agent places empty history files up to the lease's
                // timeline; PostgreSQL picks the one after the newest it
                // knows, and the agent reports any other as a failure (the
                // server is promoted all the same).
                let newest = d.history.iter().map(|h| h.0.0).max().unwrap_or(0);
                let next = Timeline(newest.max(timeline.0.saturating_sub(1)) + 1);
                self.next_record += 1;
                d.history.push((next, d.wal.len()));
                d.wal.push(marker);
                d.standby = false;
                pg.running = true;
                pg.streaming = false;
                pg.upstream = None;
                pg.sync = sync;
                trace!(self, "{name} promoted to timeline {next}");
                Checker::became_writable(self, m);
                next == *timeline
            }
            Op::Rewind { from } | Op::Reclone { from } => {
                let is_rewind = matches!(op, Op::Rewind { .. });
                let from = self.index(from);
                let src = &self.members[from].pg;
                let usable = src.writable() && !self.partitioned(m, from) && !self.frozen(from);
                if !usable {
                    return false;
                }
                if is_rewind && self.rng.chance(1, 10) {
                    return false;
                }
                let mut data = src.data.clone().expect("a writable server has data");
                data.standby = true;
                let pg = &mut self.members[m].pg;
                pg.stop();
                pg.data = Some(data);
                pg.upstream = Some(from);
                let what = if is_rewind { "rewound" } else { "re-cloned" };
                trace!(self, "{name} {what} from {}", self.names[from]);
                true
            }
            Op::CleanStop { .. } => {
                let was_primary = self.members[m].pg.writable();
                self.members[m].pg.stop();
                if was_primary {
                    // A clean shutdown sends the rest of the WAL to standbys.
                    self.flush_to_standbys(m);
                    trace!(self, "{name} demoted (clean stop)");
                }
                true
            }
        }
    }

    /// Whether the answer to a coordinator write that took effect gets lost.
    fn answer_lost(&mut self) -> bool {
        self.lost_answers > 0 && self.rng.chance(self.lost_answers, 1000)
    }

    fn index(&self, name: &MemberName) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .expect("the machine only names configured members")
    }

    /// A clean shutdown sends the rest of the WAL to connected standbys.
    fn flush_to_standbys(&mut self, p: usize) {
        let Some(d) = &self.members[p].pg.data else {
            return;
        };
        let (len, last) = (d.wal.len(), *d.wal.last().unwrap_or(&0));
        for j in 0..self.members.len() {
            let pg = &self.members[j].pg;
            if j != p && pg.standby() && pg.upstream == Some(p) && !self.partitioned(j, p) {
                let dl = self.delay();
                self.push(
                    self.now + dl,
                    Event::Deliver {
                        m: j,
                        from: p,
                        len,
                        last,
                    },
                );
            }
        }
    }

    fn stream(&mut self, m: usize) {
        let Some(u) = self.members[m].pg.upstream else {
            return;
        };
        if !self.members[m].pg.standby() || self.frozen(m) || self.frozen(u) {
            return;
        }
        let up = &self.members[u].pg;
        let ok = u != m
            && up.writable()
            && !self.partitioned(m, u)
            && match (&self.members[m].pg.data, &up.data) {
                (Some(mine), Some(theirs)) => {
                    mine.sysid == theirs.sysid && mine.is_prefix_of(theirs, theirs.wal.len())
                }
                _ => false,
            };
        let tip = up
            .data
            .as_ref()
            .filter(|_| ok)
            .map(|d| (d.wal.len(), *d.wal.last().unwrap_or(&0)));
        self.members[m].pg.streaming = ok;
        if let Some((len, last)) = tip {
            let dl = self.delay();
            self.push(
                self.now + dl,
                Event::Deliver {
                    m,
                    from: u,
                    len,
                    last,
                },
            );
        }
    }

    fn deliver(&mut self, m: usize, from: usize, len: usize, last: u64) {
        if from == m || !self.members[m].pg.standby() || self.members[m].pg.upstream != Some(from) {
            return;
        }
        let (a, b) = if m < from {
            let (lo, hi) = self.members.split_at_mut(from);
            (&mut lo[m], &hi[0])
        } else {
            let (lo, hi) = self.members.split_at_mut(m);
            (&mut hi[0], &lo[from])
        };
        let (Some(d), Some(src)) = (&mut a.pg.data, &b.pg.data) else {
            return;
        };
        if src.wal.len() < len || src.wal.get(len.wrapping_sub(1)) != Some(&last) {
            return;
        }
        if !d.is_prefix_of(src, len) || d.wal.len() >= len {
            return;
        }
        let start = d.wal.len();
        d.wal.extend_from_slice(&src.wal[start..len]);
        d.history.clear();
        d.history
            .extend(src.history.iter().filter(|(_, s)| *s < len).copied());
        self.try_acks(from);
    }

    fn client_write(&mut self) {
        let writable: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].pg.writable() && !self.frozen(i))
            .collect();
        let [p] = writable[..] else {
            return;
        };
        let id = self.next_record;
        self.next_record += 1;
        self.report.writes += 1;
        let pg = &mut self.members[p].pg;
        let d = pg.data.as_mut().expect("a writable server has data");
        d.wal.push(id);
        let need = d.wal.len();
        if pg.sync == crate::machine::SyncStandbys::Off {
            self.checker.ack(id);
            self.report.acked += 1;
        } else {
            pg.pending.push((id, need));
            self.try_acks(p);
        }
    }

    /// Acknowledges the commits every synchronous standby of `p` has flushed.
    fn try_acks(&mut self, p: usize) {
        if self.members[p].pg.pending.is_empty() || !self.members[p].pg.writable() || self.frozen(p)
        {
            return;
        }
        let names = self.members[p].pg.sync.names();
        if self.members[p].pg.sync == crate::machine::SyncStandbys::Off {
            let pending = std::mem::take(&mut self.members[p].pg.pending);
            for (id, _) in pending {
                self.checker.ack(id);
                self.report.acked += 1;
            }
            return;
        }
        if names.is_empty() {
            return;
        }
        let replicas = self.replicas_of(p);
        let mut min = usize::MAX;
        for n in &names {
            match replicas.iter().find(|r| r.name == *n) {
                Some(r) => min = min.min((r.flushed_lsn.0 / super::pg::RECORD_BYTES) as usize),
                None => return,
            }
        }
        let pending = &mut self.members[p].pg.pending;
        let done = pending.iter().take_while(|(_, need)| *need <= min).count();
        let acked: Vec<u64> = pending.drain(..done).map(|(id, _)| id).collect();
        for id in acked {
            self.checker.ack(id);
            self.report.acked += 1;
        }
    }

    fn targets(&self, i: usize) -> Vec<usize> {
        match (self.faults[i].target, self.resolved[i]) {
            (Target::All, _) => (0..self.members.len()).collect(),
            (_, Some(m)) => vec![m],
            _ => Vec::new(),
        }
    }

    fn apply_fault_start(&mut self, i: usize) {
        let f = self.faults[i];
        let resolved = match f.target {
            Target::Member(m) if m < self.members.len() => Some(m),
            Target::Member(_) | Target::All => None,
            Target::Primary => (0..self.members.len())
                .find(|&m| self.members[m].pg.writable())
                .or_else(|| {
                    let holder = self.coord.lease()?.record.holder?;
                    Some(self.index(&holder))
                }),
        };
        self.resolved[i] = resolved;
        trace!(
            self,
            "fault {f} starts (hits {:?})",
            resolved.map(|m| self.names[m].to_string())
        );
        Checker::fault_starts(self, i);
        for m in self.targets(i) {
            match f.kind {
                FaultKind::CrashNode => {
                    self.kill_agent(m);
                    self.members[m].pg.stop();
                    self.members[m].host.armed = None;
                }
                FaultKind::CrashAgent => {
                    self.kill_agent(m);
                    if !self.cfg.broken_fence {
                        // The fencer reads end-of-file and stops the server.
                        self.members[m].pg.stop();
                        self.members[m].host.armed = None;
                        trace!(
                            self,
                            "{} fencer stopped PostgreSQL: its agent died", self.names[m]
                        );
                    }
                }
                FaultKind::PauseAgent => {
                    self.members[m].paused_until = self.members[m].paused_until.max(f.until)
                }
                FaultKind::PauseMember => {
                    self.members[m].paused_until = self.members[m].paused_until.max(f.until + 1);
                    self.members[m].frozen_until = self.members[m].frozen_until.max(f.until);
                }
                FaultKind::CrashPostgres => self.members[m].pg.stop(),
                FaultKind::DiskStall => {
                    self.members[m].stalled_until = self.members[m].stalled_until.max(f.until)
                }
                FaultKind::ClockJump => self.jump_clock(m, f.until - f.at),
                FaultKind::CoordinatorDown => self.members[m].coord_down += 1,
                FaultKind::Partition { peer } if peer < self.members.len() && peer != m => {
                    self.partitions[m][peer] += 1;
                    self.partitions[peer][m] += 1;
                }
                FaultKind::Partition { .. } => {}
                FaultKind::Switchover { .. }
                | FaultKind::ForcedFailover { .. }
                | FaultKind::ForeignData => {}
            }
        }
        match f.kind {
            FaultKind::Switchover { target } => {
                let target = target
                    .filter(|t| *t < self.members.len())
                    .map(|t| self.names[t].clone());
                let _ = self
                    .coord
                    .request(SwitchoverRequest::switchover(i as u64 + 1, target));
            }
            FaultKind::ForcedFailover { to } if to < self.members.len() => {
                let to = self.names[to].clone();
                let _ = self
                    .coord
                    .request(SwitchoverRequest::forced_failover(i as u64 + 1, to));
            }
            FaultKind::ForeignData => {
                if let Some(m) = resolved {
                    self.members[m].foreign = true;
                    self.members[m].pg.data = Some(Data {
                        sysid: FOREIGN_SYSID,
                        wal: vec![0],
                        history: vec![(Timeline(1), 0)],
                        standby: false,
                    });
                }
            }
            _ => {}
        }
    }

    fn apply_fault_end(&mut self, i: usize) {
        let f = self.faults[i];
        trace!(self, "fault {f} ends");
        for m in self.targets(i) {
            match f.kind {
                FaultKind::CrashNode | FaultKind::CrashAgent if self.members[m].agent.is_none() => {
                    let at = self.now;
                    self.start_agent(m, at);
                }
                FaultKind::CoordinatorDown => {
                    self.members[m].coord_down = self.members[m].coord_down.saturating_sub(1)
                }
                FaultKind::PauseMember if self.members[m].frozen_until <= self.now => {
                    // Thawed: the fencer runs first and finds its deadline past.
                    let passed = self.members[m]
                        .host
                        .armed
                        .is_some_and(|d| self.local(m) >= d);
                    if passed && !self.cfg.broken_fence {
                        self.fence(m, "on resume");
                    }
                }
                FaultKind::Partition { peer } if peer < self.members.len() && peer != m => {
                    self.partitions[m][peer] -= 1;
                    self.partitions[peer][m] -= 1;
                }
                _ => {}
            }
        }
    }

    /// Appends a timeline line (when tracing).
    pub fn trace(&mut self, what: String) {
        if self.cfg.trace {
            let line = format!("[{:>6}ms] {what}", self.now);
            self.report.timeline.push(line);
        }
    }

    fn status_line(&mut self) {
        let lease = match self.coord.lease() {
            Some(l) => format!(
                "{} term {}",
                l.record.holder.as_ref().map_or("nobody", |h| h.as_str()),
                l.record.term
            ),
            None => "none".to_owned(),
        };
        let mut parts = Vec::new();
        for (m, mb) in self.members.iter().enumerate() {
            let role = if mb.agent.is_none() && !mb.pg.running {
                "down".to_owned()
            } else if mb.pg.writable() {
                "primary".to_owned()
            } else if mb.pg.standby() {
                match mb.pg.upstream {
                    Some(u) if mb.pg.streaming => format!("replica<-{}", self.names[u]),
                    _ => "replica(not streaming)".to_owned(),
                }
            } else {
                "stopped".to_owned()
            };
            let (tl, lsn) = mb
                .pg
                .data
                .as_ref()
                .map_or((Timeline(0), crate::machine::Lsn(0)), |d| {
                    (d.timeline(), d.lsn())
                });
            parts.push(format!("{} {role} tl{tl} {lsn}", self.names[m]));
        }
        let line = format!(
            "status: lease {lease} | {} | writes acked {}",
            parts.join(" | "),
            self.report.acked
        );
        self.trace(line);
    }

    /// The largest one-way message delay of this run.
    pub fn max_delay(&self) -> u64 {
        self.max_delay
    }

    /// Whether the coordinator is healthy in the sense of invariants 3, 4
    /// and 6: every write's answer arrives.
    pub fn coordinator_answers(&self) -> bool {
        self.lost_answers == 0
    }
}

fn is_coordinator_op(a: &Action) -> bool {
    matches!(
        a,
        Action::AcquireLease { .. }
            | Action::RenewLease { .. }
            | Action::ReleaseLease { .. }
            | Action::HandOverLease { .. }
            | Action::PublishState(_)
            | Action::ClearSwitchover { .. }
    )
}
