//! What the driver feeds into [`crate::machine::step`].

use super::action::ActionKind;
use super::units::{Lsn, MemberName, Millis, SystemId, Timeline};
use super::view::{ClusterView, Lease, SyncStandbys};

/// One input to the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The periodic loop: everything observed since the last tick.
    Tick(Box<TickObservation>),
    /// The primary asks, directly (not through the coordinator), whether this
    /// member follows it and will not promote. The machine answers with
    /// [`crate::machine::Action::AnswerProbe`]; the driver sends that reply back.
    FailsafeProbe(FailsafeProbe),
    /// Answers to this member's own failsafe probes, fed as soon as they
    /// arrive (after the batch that sent the probes), not only with the next
    /// tick: the machine answers with at most an
    /// [`crate::machine::Action::ArmWatchdog`] for the deadline the
    /// confirmations extend. A tick may first spend a whole read timeout on
    /// an unreachable coordinator, which left too little of the renew
    /// deadline on the test node.
    FailsafeReplies(Vec<FailsafeReply>),
}

/// What the driver observed for one loop.
#[derive(Clone, Debug, PartialEq)]
pub struct TickObservation {
    /// The local PostgreSQL server.
    pub postgres: PgObservation,
    /// The coordinator's view, read this loop; `None` when the read failed
    /// (unreachable, timed out).
    pub view: Option<ClusterView>,
    /// The result of the lease compare-and-swap in the previous batch, if the
    /// batch contained one and the executor got that far.
    pub lease_outcome: Option<LeaseOutcome>,
    /// The first action of the previous batch that failed (the executor skips
    /// the rest of a batch after a failure).
    pub failed_action: Option<ActionKind>,
    /// Answers to this member's failsafe probes received since the last tick.
    pub failsafe_replies: Vec<FailsafeReply>,
}

/// What the executor got back from a lease compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The write happened; this is the stored lease.
    Won(Lease),
    /// Someone else wrote first; the current lease, if the coordinator said.
    Lost(Option<Lease>),
    /// No answer (unreachable, timeout): the write may or may not have happened.
    Failed,
}

/// The state of the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// No cluster there (fresh volume).
    Empty,
    /// An initialised cluster with this system identifier.
    Initialized(SystemId),
}

/// The local PostgreSQL server as the driver saw it this loop.
#[derive(Clone, Debug, PartialEq)]
pub struct PgObservation {
    /// The data directory.
    pub data: DataDir,
    /// The postmaster is running and accepting connections.
    pub running: bool,
    /// `pg_is_in_recovery()` (or `standby.signal` present when stopped).
    pub in_recovery: bool,
    /// Current timeline (from `pg_control_checkpoint` when stopped).
    pub timeline: Timeline,
    /// WAL received (`pg_last_wal_receive_lsn`; primary: flush position).
    pub received_lsn: Lsn,
    /// WAL replayed (`pg_last_wal_replay_lsn`; primary: flush position).
    pub replayed_lsn: Lsn,
    /// WAL flushed locally (`pg_current_wal_flush_lsn` on a primary; the
    /// end of local WAL otherwise).
    pub flushed_lsn: Lsn,
    /// The member `primary_conninfo` points at.
    pub upstream: Option<MemberName>,
    /// A WAL receiver is streaming from `upstream`.
    pub streaming: bool,
    /// The configured `synchronous_standby_names`.
    pub sync_standbys: SyncStandbys,
    /// `pg_stat_replication` (primary only): standbys streaming from us.
    pub replicas: Vec<ReplicaProgress>,
}

impl PgObservation {
    /// An empty, stopped data directory.
    pub fn empty() -> Self {
        Self {
            data: DataDir::Empty,
            running: false,
            in_recovery: false,
            timeline: Timeline(0),
            received_lsn: Lsn(0),
            replayed_lsn: Lsn(0),
            flushed_lsn: Lsn(0),
            upstream: None,
            streaming: false,
            sync_standbys: SyncStandbys::Off,
            replicas: Vec::new(),
        }
    }

    /// Running as a writable primary.
    pub fn is_primary(&self) -> bool {
        self.running && !self.in_recovery
    }

    /// The best-known end of local WAL.
    pub fn end_lsn(&self) -> Lsn {
        self.flushed_lsn
            .max(self.received_lsn)
            .max(self.replayed_lsn)
    }
}

/// One row of `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// The standby (its `application_name`).
    pub name: MemberName,
    /// What it flushed.
    pub flushed_lsn: Lsn,
}

/// A primary's direct question to a peer while the coordinator is unreachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailsafeProbe {
    /// The primary asking.
    pub from: MemberName,
    /// Its lease term.
    pub term: u64,
    /// Its timeline.
    pub timeline: Timeline,
    /// When it sent the probe, by its own clock (echoed back).
    pub sent_at: Millis,
}

/// A peer's answer to a [`FailsafeProbe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailsafeReply {
    /// The member answering.
    pub from: MemberName,
    /// The primary that asked.
    pub to: MemberName,
    /// The term it was asked about.
    pub term: u64,
    /// The probe's `sent_at`, echoed.
    pub probe_sent_at: Millis,
    /// "I follow you on this timeline and term, and will not promote until a
    /// full lease duration after this answer."
    pub confirmed: bool,
    /// The member it streams from.
    pub following: Option<MemberName>,
}
