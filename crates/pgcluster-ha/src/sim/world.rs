//! The event loop: members, the coordinator, the network, the client.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::check::Checker;
use super::pg::{Data, SimPg};
use super::rng::Rng;
use super::schedule::{Fault, FaultKind, Target, random_faults};
use super::{SimConfig, SimReport};
use crate::coordinator::CasOutcome;
use crate::coordinator::memory::MemoryCoordinator;
use crate::machine::{
    Action, ActionKind, ClusterView, FailsafeProbe, FailsafeReply, HaConfig, LeaseOutcome,
    MachineState, MemberName, Millis, Observation, ReplicaProgress, StopMode, SwitchoverRequest,
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
    lease_outcome: Option<LeaseOutcome>,
    failed: Option<ActionKind>,
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
    watchdog: Option<Millis>,
    pub coord_down: u32,
    pub foreign: bool,
    /// The agent is frozen until this time.
    paused_until: u64,
    /// The whole member (PostgreSQL and the fencer too) is frozen through this time.
    frozen_until: u64,
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
                watchdog: None,
                coord_down: 0,
                foreign: false,
                paused_until: 0,
                frozen_until: 0,
            })
            .collect();
        let (shape, faults) = match &cfg.faults {
            Some(f) => (None, f.clone()),
            None => {
                let (s, f) = random_faults(&mut rng, n, cfg.faults_from, cfg.heal_at);
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
            lease_outcome: None,
            failed: None,
            replies: Vec::new(),
            view: None,
            tick_started: at,
        });
        self.push(at, Event::Tick { m, inc });
    }

    fn kill_agent(&mut self, m: usize) {
        self.members[m].agent = None;
        self.members[m].inc += 1;
    }

    /// The whole member is frozen (a `PauseMember` fault): its server takes
    /// no write and streams nothing.
    pub fn frozen(&self, m: usize) -> bool {
        self.members[m].frozen_until >= self.now
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
                if !self.cfg.broken_fence
                    && self.members[m].watchdog == Some(deadline)
                    && self.members[m].pg.writable() =>
            {
                self.members[m].pg.stop();
                trace!(
                    self,
                    "{} fencer stopped PostgreSQL at its deadline", self.names[m]
                );
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
        let tick = TickObservation {
            postgres,
            view: agent.view.take(),
            lease_outcome: agent.lease_outcome.take(),
            failed_action: agent.failed.take(),
            failsafe_replies: std::mem::take(&mut agent.replies),
        };
        let state = agent
            .state
            .take()
            .expect("an agent always has a state between events");
        let (state, actions) = step(state, local, Observation::Tick(Box::new(tick)));
        let agent = self.agent(m);
        agent.state = Some(state);
        agent.batch = actions.into();
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
                let started = self.agent(m).tick_started;
                let interval = self.real_for(m, self.configs[m].ms.loop_interval);
                self.push((started + interval).max(after + 1), Event::Tick { m, inc });
            }
        }
    }

    fn exec(&mut self, m: usize, inc: u64) {
        let Some(action) = self.agent(m).batch.pop_front() else {
            return;
        };
        let kind = action.kind();
        let (ok, latency) = self.apply(m, action);
        if !ok {
            self.agent(m).failed = Some(kind);
            self.agent(m).batch.clear();
        }
        self.schedule_exec(m, inc, self.now + latency);
    }

    /// Executes one action; returns (succeeded, how long it took).
    fn apply(&mut self, m: usize, action: Action) -> (bool, u64) {
        let name = self.names[m].clone();
        // Executor rule: never make PostgreSQL writable once the armed
        // watchdog deadline has passed (the batch may run late, e.g. after a pause).
        let makes_writable = matches!(
            action,
            Action::Bootstrap | Action::StartAsPrimary | Action::Promote { .. }
        );
        if makes_writable && self.members[m].watchdog.is_none_or(|d| self.local(m) >= d) {
            return (false, 0);
        }
        if let Some((expected, record)) = action.lease_cas() {
            if self.members[m].coord_down > 0 {
                self.agent(m).lease_outcome = Some(LeaseOutcome::Failed);
                return (false, COORD_TIMEOUT);
            }
            let before = self.coord.lease();
            let outcome = self.coord.cas_lease(expected, record.clone());
            let d = self.delay();
            let answer_lost = self.answer_lost();
            match outcome {
                CasOutcome::Won(lease) => {
                    if matches!(action, Action::AcquireLease { .. })
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
                    if answer_lost {
                        // Written, but the writer cannot know.
                        self.agent(m).lease_outcome = Some(LeaseOutcome::Failed);
                        return (false, COORD_TIMEOUT);
                    }
                    self.agent(m).lease_outcome = Some(LeaseOutcome::Won(lease));
                    return (true, d);
                }
                CasOutcome::Lost(current) => {
                    self.agent(m).lease_outcome = Some(LeaseOutcome::Lost(current));
                    return (false, d);
                }
            }
        }
        match action {
            Action::PublishState(s) => self.coord_op(m, |c| c.publish(s)),
            Action::ClearSwitchover { id } => self.coord_op(m, |c| c.clear(id)),
            Action::SetRoleLabel { .. } => (true, 0),
            Action::ArmWatchdog { deadline } => {
                self.members[m].watchdog = Some(deadline);
                let wait = self.real_for(m, deadline.since(self.local(m)));
                self.push(self.now + wait, Event::Watchdog { m, deadline });
                (true, 0)
            }
            Action::ProbePeers(probe) => {
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
                (true, 0)
            }
            Action::AnswerProbe(_) => (true, 0),
            Action::SetSyncStandbys(s) => {
                self.members[m].pg.sync = s;
                self.try_acks(m);
                (true, 0)
            }
            Action::FenceWrites => {
                if self.members[m].pg.writable() {
                    trace!(self, "{name} fenced writes");
                }
                self.members[m].pg.stop();
                (true, 0)
            }
            Action::Demote { mode } => {
                let was_primary = self.members[m].pg.writable();
                self.members[m].pg.stop();
                if was_primary && mode == StopMode::Fast {
                    self.flush_to_standbys(m);
                }
                if was_primary {
                    trace!(self, "{name} demoted ({mode:?})");
                }
                (true, if mode == StopMode::Fast { 50 } else { 5 })
            }
            Action::Bootstrap => {
                let pg = &mut self.members[m].pg;
                if pg.data.is_some() {
                    return (false, 0);
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
                trace!(self, "{name} initialised the cluster");
                Checker::became_writable(self, m);
                (true, 100)
            }
            Action::StartAsPrimary => {
                let pg = &mut self.members[m].pg;
                let Some(d) = &mut pg.data else {
                    return (false, 0);
                };
                if d.standby {
                    return (false, 0);
                }
                if pg.running {
                    return (true, 0);
                }
                pg.running = true;
                pg.upstream = None;
                trace!(self, "{name} started as primary");
                Checker::became_writable(self, m);
                (true, 50)
            }
            Action::StartAsReplica { of } => {
                let of = self.index(&of);
                let pg = &mut self.members[m].pg;
                let Some(d) = &mut pg.data else {
                    return (false, 0);
                };
                if pg.running && d.standby && pg.upstream == Some(of) {
                    return (true, 0);
                }
                d.standby = true;
                pg.stop();
                pg.running = true;
                pg.upstream = Some(of);
                (true, 50)
            }
            Action::Promote { timeline } => {
                let marker = self.next_record;
                let pg = &mut self.members[m].pg;
                let Some(d) = &mut pg.data else {
                    return (false, 0);
                };
                if !d.standby {
                    return (false, 0);
                }
                self.next_record += 1;
                d.history.push((timeline, d.wal.len()));
                d.wal.push(marker);
                d.standby = false;
                pg.running = true;
                pg.streaming = false;
                pg.upstream = None;
                trace!(self, "{name} promoted to timeline {timeline}");
                Checker::became_writable(self, m);
                (true, 30)
            }
            Action::Rewind { ref from } | Action::Reclone { ref from } => {
                let from = self.index(from);
                let is_rewind = matches!(action, Action::Rewind { .. });
                let src = &self.members[from].pg;
                let usable = src.writable() && !self.partitioned(m, from);
                if !usable {
                    return (false, 0);
                }
                let rewind_fails = is_rewind && self.rng.chance(1, 10);
                if rewind_fails {
                    self.members[m].pg.stop();
                    return (false, 100);
                }
                let mut data = src.data.clone().expect("a writable server has data");
                data.standby = true;
                let pg = &mut self.members[m].pg;
                pg.stop();
                pg.data = Some(data);
                pg.upstream = Some(from);
                let what = if is_rewind { "rewound" } else { "re-cloned" };
                trace!(self, "{name} {what} from {}", self.names[from]);
                (true, 150)
            }
            Action::AcquireLease { .. }
            | Action::RenewLease { .. }
            | Action::ReleaseLease { .. }
            | Action::HandOverLease { .. } => (true, 0),
        }
    }

    fn coord_op(&mut self, m: usize, f: impl FnOnce(&MemoryCoordinator)) -> (bool, u64) {
        if self.members[m].coord_down > 0 {
            return (false, COORD_TIMEOUT);
        }
        f(&self.coord);
        if self.answer_lost() {
            return (false, COORD_TIMEOUT);
        }
        let d = self.delay();
        (true, d)
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
                    self.members[m].watchdog = None;
                }
                FaultKind::CrashAgent => {
                    self.kill_agent(m);
                    if !self.cfg.broken_fence {
                        // The fencer reads end-of-file and stops the server.
                        self.members[m].pg.stop();
                        self.members[m].watchdog = None;
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
                    let passed = self.members[m].watchdog.is_some_and(|d| self.local(m) >= d);
                    if passed && !self.cfg.broken_fence && self.members[m].pg.writable() {
                        self.members[m].pg.stop();
                        trace!(
                            self,
                            "{} fencer stopped PostgreSQL on resume", self.names[m]
                        );
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
