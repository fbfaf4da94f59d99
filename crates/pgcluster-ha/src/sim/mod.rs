//! A deterministic, seeded simulator of a whole cluster.
//!
//! N members, each with a simulated PostgreSQL ([`pg::SimPg`]: WAL as record
//! IDs, timelines, streaming with delay, synchronous commit), the real state
//! machine ([`crate::machine::step`]) driven like the agent drives it, the
//! agent's real executor ([`crate::agent::execute::Executor`], action by
//! action, with its rules) on in-memory fakes of the server, its fence and
//! the clock ([`host`]), the
//! [`crate::coordinator::memory::MemoryCoordinator`] with per-member
//! unavailability, message delay, crashes and restarts of agent and/or
//! PostgreSQL (an agent's crash takes its in-agent watchdog with it; its
//! fencer stops the server), pauses of the agent alone (the fencer keeps
//! its last deadline) or of the whole member (server and fencer frozen too;
//! on resume the fencer acts first), coordinator writes that take effect but whose answer is lost,
//! partitions between members, bounded clock drift, a watchdog,
//! and a client that writes every 20 ms and records which writes were
//! acknowledged. The six invariants are checked as the run goes
//! ([`check`]). Same seed and config, same run, event for event.

/// Appends a formatted line to the run's timeline, formatting nothing when
/// the run is not traced.
macro_rules! trace {
    ($w:expr, $($arg:tt)*) => {
        if $w.cfg.trace {
            let line = format!($($arg)*);
            $w.trace(line);
        }
    };
}

pub mod check;
mod execution;
mod faults;
pub mod host;
pub mod pg;
mod replication;
pub mod rng;
pub mod schedule;
mod world;

use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_core::timing::FailoverTimings;
use pgcluster_core::validated::ResolvedReplication;

pub use check::Violation;
pub use schedule::{Fault, FaultKind, Shape, Target};

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of every random choice (delays, drift, faults when `faults` is `None`).
    pub seed: u64,
    /// Number of members (2..=9).
    pub members: usize,
    /// Replication mode, no-standby policy, lag limit.
    pub replication: ResolvedReplication,
    /// Timings (the defaults unless a test changes them).
    pub timings: FailoverTimings,
    /// Explicit faults; `None` draws them from the seed.
    pub faults: Option<Vec<Fault>>,
    /// Faults start after this (the cluster bootstraps first), in ms.
    pub faults_from: u64,
    /// All faults are over by this time, in ms.
    pub heal_at: u64,
    /// Total simulated time, in ms (the quiet tail checks convergence).
    pub duration: u64,
    /// Largest one-way message delay, in ms (`None`: drawn from the seed, 1..=40).
    pub max_delay: Option<u64>,
    /// Per mille of coordinator writes whose answer is lost (`None`: drawn
    /// from the seed, zero in two thirds of the seeds).
    pub lost_answers: Option<u64>,
    /// Record a human-readable timeline.
    pub trace: bool,
    /// The checker's own test: the fence does nothing (no watchdog, no
    /// fencer), which must produce violations.
    pub broken_fence: bool,
}

impl SimConfig {
    /// Defaults: async mode, default timings, random faults.
    pub fn new(seed: u64, members: usize) -> Self {
        Self {
            seed,
            members,
            replication: ResolvedReplication {
                mode: ReplicationMode::Async,
                when_no_standby: NoStandbyPolicy::Block,
                max_failover_lag_bytes: 16 * 1024 * 1024,
            },
            timings: FailoverTimings::default(),
            faults: None,
            faults_from: 1500,
            heal_at: 6500,
            duration: 11_000,
            max_delay: None,
            lost_answers: None,
            trace: false,
            broken_fence: false,
        }
    }

    /// The same config in sync mode with `policy`.
    pub fn sync(mut self, policy: NoStandbyPolicy) -> Self {
        self.replication.mode = ReplicationMode::Sync;
        self.replication.when_no_standby = policy;
        self
    }
}

/// What happened in a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The schedule's shape.
    pub shape: Option<Shape>,
    /// The faults injected.
    pub faults: Vec<Fault>,
    /// Every invariant violation, in order (empty: the run is correct).
    pub violations: Vec<Violation>,
    /// Writes attempted by the client.
    pub writes: u64,
    /// Writes acknowledged.
    pub acked: u64,
    /// Acknowledged writes missing from the final primary (allowed only in async mode).
    pub lost: u64,
    /// Lease terms after the first (failovers + switchovers).
    pub leadership_changes: u64,
    /// Measured primary-crash-to-new-writable-primary times, in ms.
    pub failover_ms: Vec<u64>,
    /// Measured switchover durations, in ms.
    pub switchover_ms: Vec<u64>,
    /// The timeline (when `trace` was set).
    pub timeline: Vec<String>,
    /// Events processed.
    pub events: u64,
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> SimReport {
    world::World::new(config).run()
}
