//! Faults starting and ending: crashes, pauses, stalls, clock steps,
//! partitions, coordinator outages, operator requests; and the fencer.

use super::check::Checker;
use super::pg::Data;
use super::schedule::{FaultKind, Target};
use super::world::{Event, FOREIGN_SYSID, World};
use crate::machine::{SwitchoverRequest, Timeline};

impl World {
    pub(super) fn targets(&self, i: usize) -> Vec<usize> {
        match (self.faults[i].target, self.resolved[i]) {
            (Target::All, _) => (0..self.members.len()).collect(),
            (_, Some(m)) => vec![m],
            _ => Vec::new(),
        }
    }

    pub(super) fn apply_fault_start(&mut self, i: usize) {
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

    pub(super) fn apply_fault_end(&mut self, i: usize) {
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

    /// Member `m`'s clock steps forward by `ms`; its fencer, on the same
    /// clock, acts on the new time.
    pub(super) fn jump_clock(&mut self, m: usize, ms: u64) {
        self.members[m].offset += ms;
        let Some(deadline) = self.members[m].host.armed else {
            return;
        };
        let wait = self.real_for(m, deadline.since(self.local(m)));
        self.push(self.now + wait, Event::Watchdog { m, deadline });
    }

    /// The fencer stops the server, whatever its role.
    pub(super) fn fence(&mut self, m: usize, why: &str) {
        // The agent's hub keeps the deadline: a server started later gets
        // a fencer told the same (passed) deadline.
        let mb = &mut self.members[m];
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
}
