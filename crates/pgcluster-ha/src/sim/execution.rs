//! Executing a batch in the simulator: each action runs through the agent's
//! real executor on the fakes of [`super::host`]; what it did (operations
//! started, leases written, the fence armed, probes sent) becomes events.

use std::time::Duration;

use super::check::Checker;
use super::host::{CoordFault, Effect, SimCoord, SimHost};
use super::pg::Data;
use super::world::{COORD_TIMEOUT, Event, SYSID, World, is_coordinator_op};
use crate::agent::background::Op;
use crate::agent::execute::Executor;
use crate::machine::{Action, MemberName, Timeline};

impl World {
    /// Runs the next action of the batch through the real executor, on the
    /// simulated host and coordinator, then carries out what it did.
    pub(super) fn exec(&mut self, m: usize, inc: u64) {
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

    pub(super) fn lease_written(
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

    pub(super) fn carry_out(&mut self, m: usize, effect: Effect) {
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

    /// A background operation completes: what the real one does to the server.
    pub(super) fn complete_op(&mut self, m: usize, seq: u64) {
        let mb = &mut self.members[m];
        if mb.host.op.as_ref().is_none_or(|r| r.seq != seq) {
            return; // aborted, or its agent died
        }
        let running = mb.host.op.take().expect("checked just above");
        // A new postmaster's fencer is told the agent's current deadline
        // (`FenceHub::attach`): one already past fences it as it starts.
        let starts = match running.op {
            Op::Bootstrap | Op::Start => true,
            Op::Promote { .. } => !mb.pg.running,
            Op::Rewind { .. } | Op::Reclone { .. } | Op::CleanStop { .. } => false,
        };
        let passed = mb.host.armed.is_some_and(|d| self.local(m) >= d);
        if starts && passed && !self.cfg.broken_fence {
            let mb = &mut self.members[m];
            mb.pg.stop();
            if let Some(agent) = &mut mb.agent {
                agent.op_failed = Some(running.op.kind());
            }
            trace!(
                self,
                "{} fencer stopped PostgreSQL as it started: the deadline had passed",
                self.names[m]
            );
            return;
        }
        let ok = self.op_effect(m, &running.op, running.standby_of);
        if !ok && let Some(agent) = &mut self.members[m].agent {
            agent.op_failed = Some(running.op.kind());
        }
    }

    /// Applies `op` to member `m`'s server; false when it fails.
    pub(super) fn op_effect(&mut self, m: usize, op: &Op, standby_of: Option<MemberName>) -> bool {
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
}
