//! The six invariants of the issue, checked while the simulation runs.
//!
//! 1. Never two writable primaries at the same instant — after every event.
//! 2. Sync mode: no acknowledged write is ever lost — whenever a server
//!    becomes writable it must hold every acknowledged write (a writable
//!    primary's WAL only grows, and acknowledgements come from it, so this
//!    covers every instant), and at the end.
//! 3. Liveness: after the primary crashes, with the coordinator (every
//!    answer arrives) and an eligible replica healthy and no other fault nearby, a writable primary
//!    exists within lease duration + 2 loop intervals (plus the simulated
//!    clock-rate drift, message delays and promotion time).
//! 4. A switchover with no other fault nearby completes within
//!    lease duration + 6 loop intervals and loses no acknowledged write in
//!    either mode.
//! 5. At the end (after a quiet period), every member that belongs to the
//!    cluster runs as a standby of the one primary, on its timeline, with a
//!    WAL that is a prefix of the primary's; a member with foreign data never
//!    started PostgreSQL.
//! 6. A coordinator outage seen by every member, with members reachable to
//!    each other and no other fault nearby, never stops the primary from
//!    taking writes (during the outage and a lease duration after it) and
//!    causes no promotion.
//! 7. Nobody takes a lease from its holder (automatic or forced failover)
//!    before it expired: at least a lease duration (less the allowed clock
//!    drift) after the holder's last write of it. A forced failover to a
//!    healthy eligible replica after a primary crash makes that replica the
//!    primary within the liveness bound of invariant 3.

use std::collections::HashSet;
use std::fmt;

use super::pg::RECORD_BYTES;
use super::schedule::{FaultKind, Shape, Target};
use super::world::World;
use crate::machine::Phase;
use pgcluster_core::api::v1alpha1::ReplicationMode;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Simulated time, ms.
    pub at: u64,
    /// Which invariant (1..=6).
    pub invariant: u8,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}ms] invariant {}: {}",
            self.at, self.invariant, self.message
        )
    }
}

#[derive(Clone, Debug)]
enum Monitor {
    Liveness {
        started: u64,
        deadline: u64,
    },
    Switchover {
        started: u64,
        deadline: u64,
        old: usize,
        target: Option<usize>,
        /// Acknowledged writes the old primary already lacked (lost by an
        /// earlier async failover): not the switchover's doing.
        missing_before: usize,
    },
    Outage {
        until: u64,
        primary: usize,
    },
    Forced {
        started: u64,
        deadline: u64,
        to: usize,
    },
}

/// Invariant bookkeeping.
#[derive(Debug, Default)]
pub struct Checker {
    acked: Vec<u64>,
    monitors: Vec<Monitor>,
    writable_before: Vec<bool>,
}

impl Checker {
    pub(super) fn new(members: usize) -> Self {
        Self {
            writable_before: vec![false; members],
            ..Self::default()
        }
    }

    pub(super) fn ack(&mut self, id: u64) {
        self.acked.push(id);
    }

    fn violate(w: &mut World, invariant: u8, message: String) {
        if w.report.violations.len() < 20 {
            trace!(w, "VIOLATION of invariant {invariant}: {message}");
            w.report.violations.push(Violation {
                at: w.now,
                invariant,
                message,
            });
        }
    }

    fn missing(&self, w: &World, m: usize) -> usize {
        let Some(d) = &w.members[m].pg.data else {
            return self.acked.len();
        };
        self.acked
            .iter()
            .filter(|id| d.wal.binary_search(id).is_err())
            .count()
    }

    /// Member `m` just started accepting writes.
    pub(super) fn became_writable(w: &mut World, m: usize) {
        if w.cfg.replication.mode == ReplicationMode::Sync {
            let missing = w.checker.missing(w, m);
            if missing > 0 {
                let name = w.names[m].clone();
                Self::violate(
                    w,
                    2,
                    format!("{name} became writable without {missing} acknowledged write(s)"),
                );
            }
        }
    }

    /// A member acquired a lease `old` held, last written at `written`.
    pub(super) fn acquired(w: &mut World, old: &crate::machine::MemberName, written: u64) {
        let t = w.cfg.timings;
        let lease = t.lease_duration.as_millis() as u64;
        let drift = t.max_clock_drift.as_millis() as u64;
        let age = w.now - written;
        if age + drift < lease {
            Self::violate(
                w,
                7,
                format!("the lease of {old} was taken {age}ms after its last write"),
            );
        }
    }

    pub(super) fn after_event(w: &mut World) {
        // A frozen server takes no write; on resume its fencer runs first.
        let serving = |m: usize| w.members[m].pg.writable() && !w.frozen(m);
        let count = (0..w.members.len()).filter(|&m| serving(m)).count();
        let any_writable = count > 0;
        if count > 1 {
            let writable: Vec<usize> = (0..w.members.len()).filter(|&m| serving(m)).collect();
            let names: Vec<String> = writable.iter().map(|&m| w.names[m].to_string()).collect();
            Self::violate(
                w,
                1,
                format!("two writable primaries: {}", names.join(", ")),
            );
        }
        for m in 0..w.members.len() {
            let now_w = w.members[m].pg.writable();
            if now_w != w.checker.writable_before[m] {
                w.checker.writable_before[m] = now_w;
                let name = w.names[m].clone();
                trace!(
                    w,
                    "{name} {} writes",
                    if now_w { "accepts" } else { "stopped taking" }
                );
            }
        }
        if w.checker.monitors.is_empty() {
            return;
        }
        let monitors = std::mem::take(&mut w.checker.monitors);
        let mut keep = Vec::new();
        for mon in monitors {
            match mon {
                Monitor::Liveness { started, deadline } => {
                    if any_writable {
                        w.report.failover_ms.push(w.now - started);
                    } else if w.now > deadline {
                        Self::violate(
                            w,
                            3,
                            format!(
                                "no writable primary {}ms after the primary crashed",
                                w.now - started
                            ),
                        );
                    } else {
                        keep.push(mon);
                    }
                }
                Monitor::Switchover {
                    started,
                    deadline,
                    old,
                    target,
                    missing_before,
                } => {
                    let done = (0..w.members.len()).find(|&m| {
                        w.members[m].pg.writable() && m != old && target.is_none_or(|t| t == m)
                    });
                    if let Some(m) = done {
                        w.report.switchover_ms.push(w.now - started);
                        let missing = w.checker.missing(w, m).saturating_sub(missing_before);
                        if missing > 0 {
                            Self::violate(
                                w,
                                4,
                                format!("switchover lost {missing} acknowledged write(s)"),
                            );
                        }
                    } else if w.now > deadline {
                        Self::violate(
                            w,
                            4,
                            format!(
                                "switchover not done {}ms after the request",
                                w.now - started
                            ),
                        );
                    } else {
                        keep.push(mon);
                    }
                }
                Monitor::Forced {
                    started,
                    deadline,
                    to,
                } => {
                    if w.members[to].pg.writable() {
                        w.report.failover_ms.push(w.now - started);
                    } else if w.now > deadline {
                        let name = w.names[to].clone();
                        Self::violate(
                            w,
                            7,
                            format!(
                                "forced failover to {name} not done {}ms after the crash",
                                w.now - started
                            ),
                        );
                    } else {
                        keep.push(mon);
                    }
                }
                Monitor::Outage { until, primary } => {
                    if w.now > until {
                        continue;
                    }
                    if !w.members[primary].pg.writable() {
                        let name = w.names[primary].clone();
                        Self::violate(
                            w,
                            6,
                            format!("{name} stopped taking writes during a coordinator outage"),
                        );
                    } else {
                        keep.push(mon);
                    }
                }
            }
        }
        w.checker.monitors.extend(keep);
    }

    /// No other fault within `before` ms before fault `i` or `after` ms after it ends.
    fn isolated(w: &World, i: usize, before: u64, after: u64) -> bool {
        let f = w.faults[i];
        let (lo, hi) = (f.at.saturating_sub(before), f.until + after);
        w.faults
            .iter()
            .enumerate()
            .all(|(j, g)| j == i || g.until < lo || g.at > hi)
    }

    /// Every other member streams from `p`, the coordinator is up for all,
    /// and `p` holds the lease.
    fn healthy_cluster(w: &World, p: usize) -> bool {
        let holder = w.coord.lease().and_then(|l| l.record.holder);
        holder.as_ref() == Some(&w.names[p])
            && (0..w.members.len()).all(|j| {
                w.members[j].coord_down == 0
                    && w.members[j].agent.is_some()
                    && (j == p
                        || (w.members[j].pg.standby()
                            && w.members[j].pg.streaming
                            && w.members[j].pg.upstream == Some(p)))
            })
    }

    /// The ForcedFailover shape: the primary `p` crashed (fault `i`) and a
    /// forced failover names another member before the lease can expire; if
    /// that member is a healthy replica the request may promote (sync mode:
    /// a synchronous standby), it must become the primary within `bound` of
    /// the crash or the request, whichever is later.
    fn arm_forced(w: &mut World, i: usize, p: usize, bound: u64) {
        let Some((req_at, to)) = w.faults.iter().find_map(|g| match g.kind {
            FaultKind::ForcedFailover { to } => Some((g.at, to)),
            _ => None,
        }) else {
            return;
        };
        if w.resolved[i] != Some(p) || to == p || to >= w.members.len() {
            return;
        }
        // A request that comes after the lease may have expired can find
        // another member already promoted (which then refuses it as a
        // switchover while the target does not stream from it yet).
        let t = w.cfg.timings;
        let (lease, loop_ms) = (
            t.lease_duration.as_millis() as u64,
            t.loop_interval.as_millis() as u64,
        );
        if req_at + 3 * loop_ms + w.max_delay() > w.now + lease {
            return;
        }
        if !Self::healthy_cluster(w, p) {
            return;
        }
        let sync_ok = match w.cfg.replication.mode {
            ReplicationMode::Sync => w
                .coord
                .lease()
                .is_some_and(|l| l.record.sync_standbys.contains(&w.names[to])),
            ReplicationMode::Async => true,
        };
        if !sync_ok {
            return;
        }
        let from = w.now.max(req_at);
        w.checker.monitors.push(Monitor::Forced {
            started: w.now,
            deadline: from + bound,
            to,
        });
    }

    pub(super) fn fault_starts(w: &mut World, i: usize) {
        let f = w.faults[i];
        let t = w.cfg.timings;
        let lease = t.lease_duration.as_millis() as u64;
        let loop_ms = t.loop_interval.as_millis() as u64;
        let slack = 6 * w.max_delay() + 100;
        let Some(p) = (0..w.members.len()).find(|&m| w.members[m].pg.writable()) else {
            return;
        };
        // The time bounds assume a healthy coordinator: none of its answers lost.
        if !w.coordinator_answers() {
            return;
        }
        if f.kind == FaultKind::CrashNode && w.report.shape == Some(Shape::ForcedFailover) {
            Self::arm_forced(w, i, p, lease + lease + 8 * loop_ms + slack);
            return;
        }
        match f.kind {
            FaultKind::CrashNode | FaultKind::CrashPostgres => {
                if w.resolved[i] != Some(p)
                    || !Self::isolated(w, i, lease, 2 * lease)
                    || !Self::healthy_cluster(w, p)
                {
                    return;
                }
                let lease_rec = w.coord.lease().map(|l| l.record);
                let eligible = (0..w.members.len()).any(|j| {
                    j != p && {
                        let (Some(dj), Some(dp)) = (&w.members[j].pg.data, &w.members[p].pg.data)
                        else {
                            return false;
                        };
                        match w.cfg.replication.mode {
                            ReplicationMode::Sync => lease_rec
                                .as_ref()
                                .is_some_and(|l| l.sync_standbys.contains(&w.names[j])),
                            ReplicationMode::Async => {
                                (dp.wal.len().saturating_sub(dj.wal.len()) as u64) * RECORD_BYTES
                                    <= w.cfg.replication.max_failover_lag_bytes
                            }
                        }
                    }
                });
                if eligible {
                    let bound = (lease + 2 * loop_ms) * 21 / 20 + slack;
                    w.checker.monitors.push(Monitor::Liveness {
                        started: w.now,
                        deadline: w.now + bound,
                    });
                }
            }
            FaultKind::Switchover { target } => {
                if !Self::isolated(w, i, lease, 2 * lease)
                    || !Self::healthy_cluster(w, p)
                    || target == Some(p)
                {
                    return;
                }
                if w.coord.view().switchover.is_some() {
                    return;
                }
                let bound = lease + 6 * loop_ms + slack;
                w.checker.monitors.push(Monitor::Switchover {
                    started: w.now,
                    deadline: w.now + bound,
                    old: p,
                    target: target.filter(|&t| t < w.members.len()),
                    missing_before: w.checker.missing(w, p),
                });
            }
            FaultKind::CoordinatorDown if f.target == Target::All => {
                if !Self::isolated(w, i, lease, lease) || !Self::healthy_cluster(w, p) {
                    return;
                }
                w.checker.monitors.push(Monitor::Outage {
                    until: f.until + lease,
                    primary: p,
                });
            }
            _ => {}
        }
    }

    pub(super) fn at_end(w: &mut World) {
        for mon in std::mem::take(&mut w.checker.monitors) {
            if let Monitor::Liveness { started, .. }
            | Monitor::Switchover { started, .. }
            | Monitor::Forced { started, .. } = mon
            {
                Self::violate(
                    w,
                    3,
                    format!("a failover or switchover started at {started}ms never completed"),
                );
            }
        }
        let writable: Vec<usize> = (0..w.members.len())
            .filter(|&m| w.members[m].pg.writable())
            .collect();
        let [p] = writable[..] else {
            Self::violate(
                w,
                5,
                format!("{} writable primaries at the end", writable.len()),
            );
            return;
        };
        let missing = w.checker.missing(w, p);
        w.report.lost = missing as u64;
        if missing > 0 && w.cfg.replication.mode == ReplicationMode::Sync {
            Self::violate(
                w,
                2,
                format!("{missing} acknowledged write(s) missing from the final primary"),
            );
        }
        let unique: HashSet<u64> = w.checker.acked.iter().copied().collect();
        debug_assert_eq!(unique.len(), w.checker.acked.len());
        w.report.leadership_changes = w
            .coord
            .lease()
            .map_or(0, |l| l.record.term.saturating_sub(1));
        let pdata = w.members[p]
            .pg
            .data
            .clone()
            .expect("a writable server has data");
        for j in 0..w.members.len() {
            if j == p {
                continue;
            }
            let mb = &w.members[j];
            let name = w.names[j].clone();
            if mb.foreign {
                let refused = mb
                    .agent
                    .as_ref()
                    .and_then(|a| a.state.as_ref())
                    .is_some_and(|s| s.phase() == Phase::Refused);
                if mb.pg.running || !refused {
                    Self::violate(
                        w,
                        5,
                        format!("{name} has foreign data but did not refuse to join"),
                    );
                }
                continue;
            }
            let follows = mb.pg.standby()
                && mb.pg.upstream == Some(p)
                && mb.pg.data.as_ref().is_some_and(|d| {
                    d.is_prefix_of(&pdata, pdata.wal.len()) && d.timeline() == pdata.timeline()
                });
            if !follows {
                let what = format!(
                    "{name} does not follow {} at the end (running {}, standby {}, upstream {:?}, timeline {:?} vs {:?})",
                    w.names[p],
                    mb.pg.running,
                    mb.pg.standby(),
                    mb.pg.upstream,
                    mb.pg.data.as_ref().map(|d| d.timeline()),
                    pdata.timeline()
                );
                Self::violate(w, 5, what);
            }
        }
    }
}
