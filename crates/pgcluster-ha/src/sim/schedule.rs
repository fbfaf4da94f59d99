//! Fault schedules: explicit (parsed from the command line) or drawn from a seed.

use std::fmt;

use super::rng::Rng;

/// Which members a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One member, by index.
    Member(usize),
    /// Every member.
    All,
    /// Whoever runs the writable primary when the fault starts.
    Primary,
}

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The whole node dies (agent and PostgreSQL); it restarts at `until`.
    CrashNode,
    /// Only the agent dies: its in-agent watchdog with it; the fencer (a
    /// separate process) sees the agent's pipe close and stops PostgreSQL.
    CrashAgent,
    /// The agent freezes (a long GC or VM pause, SIGSTOP) until `until`,
    /// then carries on with what it was doing, on stale decisions. Its
    /// fencer runs on and stops PostgreSQL at the last deadline it was fed.
    PauseAgent,
    /// The whole member freezes until `until`: agent, fencer and PostgreSQL
    /// (no writes, no streaming). On resume the fencer, finding its
    /// deadline past, stops PostgreSQL before it takes a write.
    PauseMember,
    /// Only PostgreSQL dies (the agent restarts it).
    CrashPostgres,
    /// PostgreSQL's disk stalls until `until`: no commit completes, no WAL
    /// streams, a running operation waits; the agent and the fencer run on.
    DiskStall,
    /// The member's clock (the agent's and the fencer's: one
    /// `CLOCK_MONOTONIC`) steps forward by `until - at` ms at `at`. Random
    /// schedules keep the step within half the configured
    /// `max_clock_drift`, the budget the lease timings are checked against.
    ClockJump,
    /// The coordinator is unreachable for the target until `until`.
    CoordinatorDown,
    /// The target cannot talk to member `peer` (both directions) until `until`.
    Partition {
        /// The other side.
        peer: usize,
    },
    /// Someone requests a switchover to `target` (or the best replica).
    Switchover {
        /// The named target.
        target: Option<usize>,
    },
    /// Someone forces a failover to member `to` (`pgcluster failover --to`).
    ForcedFailover {
        /// The named member.
        to: usize,
    },
    /// The target starts with data from another cluster (only at time 0).
    ForeignData,
}

/// A fault in a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it starts (simulated ms).
    pub at: u64,
    /// When it ends (restart, heal); equal to `at` for instant faults.
    pub until: u64,
    /// Whom it hits.
    pub target: Target,
    /// What happens.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.target {
            Target::Member(i) => i.to_string(),
            Target::All => "all".to_owned(),
            Target::Primary => "primary".to_owned(),
        };
        let kind = match self.kind {
            FaultKind::CrashNode => "crash-node".to_owned(),
            FaultKind::CrashAgent => "crash-agent".to_owned(),
            FaultKind::PauseAgent => "pause-agent".to_owned(),
            FaultKind::PauseMember => "pause-member".to_owned(),
            FaultKind::CrashPostgres => "crash-pg".to_owned(),
            FaultKind::DiskStall => "disk-stall".to_owned(),
            FaultKind::ClockJump => "clock-jump".to_owned(),
            FaultKind::CoordinatorDown => "coord-down".to_owned(),
            FaultKind::Partition { peer } => format!("partition/{peer}"),
            FaultKind::Switchover { target: Some(t) } => format!("switchover/{t}"),
            FaultKind::Switchover { target: None } => "switchover/best".to_owned(),
            FaultKind::ForcedFailover { to } => format!("failover/{to}"),
            FaultKind::ForeignData => "foreign-data".to_owned(),
        };
        write!(f, "{kind}:{who}@{}-{}", self.at, self.until)
    }
}

/// A fault specification that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to parse fault {spec:?}: expected KIND:WHO@START[-END] with KIND one of crash-node, crash-agent, pause-agent, pause-member, crash-pg, disk-stall, clock-jump (END - START = the step), coord-down, partition/N, switchover/N|best, failover/N, foreign-data and WHO a member index, all or primary"
)]
pub struct FaultParseError {
    /// The offending text.
    pub spec: String,
}

impl std::str::FromStr for Fault {
    type Err = FaultParseError;

    /// Parses `KIND:WHO@START[-END]`, e.g. `crash-node:primary@3000-5000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FaultParseError { spec: s.to_owned() };
        let (kind, rest) = s.split_once(':').ok_or_else(err)?;
        let (who, when) = rest.split_once('@').ok_or_else(err)?;
        let (at, until) = match when.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?),
            None => {
                let a: u64 = when.parse().map_err(|_| err())?;
                (a, a)
            }
        };
        let target = match who {
            "all" => Target::All,
            "primary" => Target::Primary,
            n => Target::Member(n.parse().map_err(|_| err())?),
        };
        let kind = match kind.split_once('/') {
            None => match kind {
                "crash-node" => FaultKind::CrashNode,
                "crash-agent" => FaultKind::CrashAgent,
                "pause-agent" => FaultKind::PauseAgent,
                "pause-member" => FaultKind::PauseMember,
                "crash-pg" => FaultKind::CrashPostgres,
                "disk-stall" => FaultKind::DiskStall,
                "clock-jump" => FaultKind::ClockJump,
                "coord-down" => FaultKind::CoordinatorDown,
                "foreign-data" => FaultKind::ForeignData,
                _ => return Err(err()),
            },
            Some(("partition", p)) => FaultKind::Partition {
                peer: p.parse().map_err(|_| err())?,
            },
            Some(("switchover", "best")) => FaultKind::Switchover { target: None },
            Some(("switchover", t)) => FaultKind::Switchover {
                target: Some(t.parse().map_err(|_| err())?),
            },
            Some(("failover", t)) => FaultKind::ForcedFailover {
                to: t.parse().map_err(|_| err())?,
            },
            _ => return Err(err()),
        };
        Ok(Fault {
            at,
            until: until.max(at),
            target,
            kind,
        })
    }
}

/// The shape of a random schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The primary's node crashes and nothing else happens (liveness, invariant 3).
    PrimaryCrash,
    /// Every member loses the coordinator for less than a lease (invariant 6).
    CoordinatorOutage,
    /// A clean switchover (invariant 4).
    Switchover,
    /// The primary's node crashes and someone forces a failover to a
    /// replica (invariant 7).
    ForcedFailover,
    /// A mix of random faults.
    Chaos,
}

/// Draws a fault schedule from `rng`. Faults start after the cluster is up
/// (`start`) and end before `heal`; clock steps are at most `max_jump` ms.
pub fn random_faults(
    rng: &mut Rng,
    members: usize,
    start: u64,
    heal: u64,
    max_jump: u64,
) -> (Shape, Vec<Fault>) {
    let shape = match rng.range(0, 10) {
        0 | 1 => Shape::PrimaryCrash,
        2 => Shape::CoordinatorOutage,
        3 => Shape::Switchover,
        4 => Shape::ForcedFailover,
        _ => Shape::Chaos,
    };
    let mut faults = Vec::new();
    match shape {
        Shape::PrimaryCrash => {
            let at = rng.range(start, heal - 3000);
            let kind = if rng.chance(1, 3) {
                FaultKind::CrashPostgres
            } else {
                FaultKind::CrashNode
            };
            faults.push(Fault {
                at,
                until: (at + rng.range(3000, 4000)).min(heal),
                target: Target::Primary,
                kind,
            });
        }
        Shape::CoordinatorOutage => {
            let at = rng.range(start, heal - 2000);
            faults.push(Fault {
                at,
                until: at + rng.range(100, 1900),
                target: Target::All,
                kind: FaultKind::CoordinatorDown,
            });
        }
        Shape::Switchover => {
            let target = if rng.chance(1, 2) {
                Some(rng.below(members))
            } else {
                None
            };
            let at = rng.range(start, heal - 2500);
            faults.push(Fault {
                at,
                until: at,
                target: Target::All,
                kind: FaultKind::Switchover { target },
            });
        }
        Shape::ForcedFailover => {
            // The request may come before the crash (the live primary then
            // treats it as a switchover), during the lease, or after expiry.
            let at = rng.range(start, heal - 4000);
            faults.push(Fault {
                at,
                until: at + rng.range(3000, 4000),
                target: Target::Primary,
                kind: FaultKind::CrashNode,
            });
            let req = (at + rng.range(0, 3200)).saturating_sub(200);
            faults.push(Fault {
                at: req,
                until: req,
                target: Target::All,
                kind: FaultKind::ForcedFailover {
                    to: rng.below(members),
                },
            });
        }
        Shape::Chaos => {
            if rng.chance(1, 12) {
                faults.push(Fault {
                    at: 0,
                    until: 0,
                    target: Target::Member(rng.below(members)),
                    kind: FaultKind::ForeignData,
                });
            }
            for _ in 0..rng.range(1, 5) {
                let at = rng.range(start, heal - 100);
                let mut until = (at + rng.range(50, 3500)).min(heal);
                let target = match rng.range(0, 9) {
                    0..=2 => Target::Primary,
                    3 => Target::All,
                    _ => Target::Member(rng.below(members)),
                };
                let kind = match rng.range(0, 13) {
                    11 => FaultKind::DiskStall,
                    12 => {
                        until = at + rng.range(1, max_jump.max(2));
                        FaultKind::ClockJump
                    }
                    0 | 1 => FaultKind::CrashNode,
                    2 => FaultKind::CrashAgent,
                    10 if rng.chance(1, 2) => FaultKind::PauseAgent,
                    10 => FaultKind::PauseMember,
                    3 => FaultKind::CrashPostgres,
                    4..=6 => FaultKind::CoordinatorDown,
                    7 | 8 => FaultKind::Partition {
                        peer: rng.below(members),
                    },
                    _ if rng.chance(1, 3) => FaultKind::ForcedFailover {
                        to: rng.below(members),
                    },
                    _ => FaultKind::Switchover {
                        target: rng.chance(1, 2).then(|| rng.below(members)),
                    },
                };
                let target = match (kind, target) {
                    (FaultKind::Partition { .. }, Target::All) => Target::Primary,
                    (
                        FaultKind::CrashNode
                        | FaultKind::CrashAgent
                        | FaultKind::PauseAgent
                        | FaultKind::PauseMember
                        | FaultKind::DiskStall
                        | FaultKind::ClockJump,
                        Target::All,
                    ) => Target::Primary,
                    (_, t) => t,
                };
                faults.push(Fault {
                    at,
                    until,
                    target,
                    kind,
                });
            }
        }
    }
    faults.sort_by_key(|f| f.at);
    (shape, faults)
}
