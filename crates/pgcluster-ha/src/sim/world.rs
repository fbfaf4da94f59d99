//! The event loop: members, the coordinator, the network, the client.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::check::Checker;
use super::host::SimLocal;
use super::pg::SimPg;
use super::rng::Rng;
use super::schedule::{Fault, FaultKind, random_faults};
use super::{SimConfig, SimReport};
use crate::agent::driver::keeps_fence_armed;
use crate::agent::execute::{BatchOutcome, acquires};
use crate::coordinator::memory::MemoryCoordinator;
use crate::machine::{
    Action, ActionKind, Cadence, ClusterView, FailsafeProbe, FailsafeReply, HaConfig, MachineState,
    MemberName, Millis, Observation, PgObservation, TickObservation, Timeline, next_tick, step,
};

/// The cluster's system identifier in every run.
pub(super) const SYSID: u64 = 7_000_000_001;
pub(super) const FOREIGN_SYSID: u64 = 9_999;
pub(super) const CLIENT_EVERY: u64 = 20;
const STREAM_EVERY: u64 = 25;
pub(super) const COORD_TIMEOUT: u64 = 60;

#[derive(Clone, Debug)]
pub(super) enum Event {
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
    pub(super) batch: VecDeque<Action>,
    /// The running batch's outcome, as the real executor fills it.
    pub(super) out: BatchOutcome,
    /// The running batch takes an expired lease.
    pub(super) acquired: bool,
    /// What this tick observed (the executor's `observed`).
    pub(super) observed: PgObservation,
    /// A background operation that failed, reported at the next tick.
    pub(super) op_failed: Option<ActionKind>,
    pub(super) replies: Vec<FailsafeReply>,
    pub(super) view: Option<ClusterView>,
    pub(super) tick_started: u64,
    /// When the last step ran and the cadence it asked for ([`next_tick`]).
    pub(super) cadence: (u64, Cadence),
}

/// One simulated member.
pub(super) struct Member {
    pub(super) offset: u64,
    pub(super) ppm: i64,
    pub agent: Option<Agent>,
    pub(super) inc: u64,
    pub pg: SimPg,
    /// The agent's configuration state, its operation and the fencer's deadline.
    pub host: SimLocal,
    pub coord_down: u32,
    pub foreign: bool,
    /// The agent is frozen until this time.
    pub(super) paused_until: u64,
    /// The whole member (PostgreSQL and the fencer too) is frozen through this time.
    pub(super) frozen_until: u64,
    /// PostgreSQL's disk stalls through this time.
    pub(super) stalled_until: u64,
}

pub(super) struct World {
    pub cfg: SimConfig,
    pub(super) rng: Rng,
    pub now: u64,
    pub(super) seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    pub names: Vec<MemberName>,
    pub(super) configs: Vec<HaConfig>,
    pub members: Vec<Member>,
    pub coord: MemoryCoordinator,
    pub(super) partitions: Vec<Vec<u32>>,
    pub(super) next_record: u64,
    pub faults: Vec<Fault>,
    pub resolved: Vec<Option<usize>>,
    pub(super) max_delay: u64,
    /// Per mille of coordinator writes that take effect but whose answer is lost.
    pub(super) lost_answers: u64,
    pub checker: Checker,
    pub report: SimReport,
    /// When the stored lease record was last written (global time).
    pub(super) lease_written_at: u64,
    /// Runs the real executor's futures (they never wait on the fakes).
    pub(super) rt: tokio::runtime::Runtime,
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

    pub(super) fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    pub(super) fn delay(&mut self) -> u64 {
        self.rng.range(1, self.max_delay)
    }

    /// Member `m`'s clock now.
    pub fn local(&self, m: usize) -> Millis {
        let mb = &self.members[m];
        let skew = (i128::from(self.now) * i128::from(mb.ppm)) / 1_000_000;
        Millis((i128::from(mb.offset) + i128::from(self.now) + skew) as u64)
    }

    /// Real ms for `d` ms of member `m`'s clock (rounded up).
    pub(super) fn real_for(&self, m: usize, d: u64) -> u64 {
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

    pub(super) fn start_agent(&mut self, m: usize, at: u64) {
        let mb = &mut self.members[m];
        mb.inc += 1;
        let inc = mb.inc;
        let local = self.local(m);
        let state = MachineState::new(self.configs[m].clone(), local);
        let cadence = next_tick(&state, local, &[]);
        self.members[m].agent = Some(Agent {
            state: Some(state),
            batch: VecDeque::new(),
            out: BatchOutcome::default(),
            acquired: false,
            observed: PgObservation::empty(),
            op_failed: None,
            replies: Vec::new(),
            view: None,
            tick_started: at,
            cadence: (at, cadence),
        });
        self.push(at, Event::Tick { m, inc });
    }

    pub(super) fn kill_agent(&mut self, m: usize) {
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

    pub(super) fn alive(&self, m: usize, inc: u64) -> bool {
        self.members[m].agent.is_some() && self.members[m].inc == inc
    }

    pub(super) fn agent(&mut self, m: usize) -> &mut Agent {
        self.members[m]
            .agent
            .as_mut()
            .expect("events for a dead agent are filtered by alive() because kill_agent bumps the incarnation")
    }

    pub(super) fn handle(&mut self, event: Event) {
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

    pub(super) fn do_step(&mut self, m: usize, inc: u64) {
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
        let cadence = next_tick(&state, local, &actions);
        let now = self.now;
        let agent = self.agent(m);
        agent.cadence = (now, cadence);
        agent.state = Some(state);
        agent.acquired = acquires(&actions);
        agent.batch = actions.into();
        agent.observed = postgres;
        self.schedule_exec(m, inc, self.now);
    }

    pub(super) fn schedule_exec(&mut self, m: usize, inc: u64, after: u64) {
        let next = self.agent(m).batch.front().map(is_coordinator_op);
        match next {
            Some(true) => {
                let d = self.delay();
                self.push(after + d, Event::Exec { m, inc });
            }
            Some(false) => self.push(after, Event::Exec { m, inc }),
            None => {
                // The batch is over: as the driver does, confirmations that
                // came in re-arm the fence at once (they also go into the
                // next tick).
                let replies = self.agent(m).replies.clone();
                if !replies.is_empty() {
                    let local = self.local(m);
                    let agent = self.agent(m);
                    let state = agent
                        .state
                        .take()
                        .expect("an agent always has a state between events");
                    let (state, actions) =
                        step(state, local, Observation::FailsafeReplies(replies));
                    agent.state = Some(state);
                    for action in actions {
                        if let Action::ArmWatchdog { deadline } = action {
                            self.members[m].host.armed = Some(deadline);
                            let wait = self.real_for(m, deadline.since(local));
                            self.push(self.now + wait, Event::Watchdog { m, deadline });
                        }
                    }
                }
                // The driver's disarm rule.
                let agent = self.agent(m);
                let holds = agent
                    .state
                    .as_ref()
                    .is_some_and(|s| s.held_lease().is_some());
                let writable = agent.observed.running && !agent.observed.in_recovery;
                if !keeps_fence_armed(agent.out.armed, holds, writable) {
                    self.members[m].host.armed = None;
                }
                // The driver's cadence: every loop while a switchover request
                // is pending (the driver watches the coordinator for one and
                // speeds up), else what the machine asked for.
                let agent = self.agent(m);
                let (stepped, cadence) = agent.cadence;
                let next_in = cadence.after(agent.out.lease_outcome.as_ref());
                let started = agent.tick_started;
                let next = if self.coord.switchover_pending() {
                    started + self.real_for(m, self.configs[m].ms.loop_interval)
                } else {
                    stepped + self.real_for(m, next_in)
                };
                self.push(next.max(after + 1), Event::Tick { m, inc });
            }
        }
    }

    /// Whether the answer to a coordinator write that took effect gets lost.
    pub(super) fn answer_lost(&mut self) -> bool {
        self.lost_answers > 0 && self.rng.chance(self.lost_answers, 1000)
    }

    pub(super) fn index(&self, name: &MemberName) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .expect("the machine only names configured members")
    }

    /// Appends a timeline line (when tracing).
    pub fn trace(&mut self, what: String) {
        if self.cfg.trace {
            let line = format!("[{:>6}ms] {what}", self.now);
            self.report.timeline.push(line);
        }
    }

    pub(super) fn status_line(&mut self) {
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

pub(super) fn is_coordinator_op(a: &Action) -> bool {
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
