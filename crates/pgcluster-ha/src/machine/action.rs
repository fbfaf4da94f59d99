//! What the machine asks the driver to do, and the contract of each action.
//!
//! # Executor contract
//!
//! * A batch is executed **in order**. If an action fails — or a lease
//!   compare-and-swap is lost — the executor skips the rest of the batch and
//!   reports it in the next [`crate::machine::TickObservation`]
//!   (`failed_action`, `lease_outcome`). The machine relies on this: it puts
//!   `Promote` after `AcquireLease` in one batch so promotion happens only
//!   when the lease was won.
//! * Lease actions are one compare-and-swap each:
//!   `coordinator.compare_and_swap_lease(expected, record)`.
//! * Actions are idempotent: doing one twice (after an agent restart) is harmless.
//! * `Bootstrap`, `StartAsPrimary` and `Promote` must fail (not make
//!   PostgreSQL writable) when no watchdog deadline is armed or the armed one
//!   has passed: a batch can run late (a long pause between `step` and the
//!   executor), and the machine always arms the watchdog earlier in the
//!   same batch.

use super::observation::FailsafeProbe;
use super::observation::FailsafeReply;
use super::units::{MemberName, Millis, Timeline};
use super::view::{LeaseRecord, LeaseVersion, MemberState, SyncStandbys};

/// How to stop PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopMode {
    /// Clean shutdown (`pg_ctl stop -m fast`): sessions are terminated, a
    /// shutdown checkpoint is written and sent to connected standbys before
    /// the server exits. Used for switchover.
    Fast,
    /// `pg_ctl stop -m immediate` (or SIGKILL of the postmaster): nothing more
    /// commits. Used when the lease is lost.
    Immediate,
}

/// The value of the pod label `pgcluster.dev/role` (the rw/ro Services select on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleLabel {
    /// `primary`
    Primary,
    /// `replica`
    Replica,
}

/// One thing for the driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run initdb on the empty data directory and start PostgreSQL as a
    /// writable primary with the `synchronous_standby_names` set by a
    /// preceding [`Action::SetSyncStandbys`]. Only emitted after this member
    /// won the first lease.
    Bootstrap,
    /// Start (or restart) PostgreSQL as a writable primary on its existing
    /// data (no `standby.signal`). A no-op when it already runs as primary.
    StartAsPrimary,
    /// Make PostgreSQL a standby streaming from `of` (`primary_conninfo`,
    /// `standby.signal`, `recovery_target_timeline = latest`), starting or
    /// restarting it as needed. A no-op when it already streams from `of`.
    StartAsReplica {
        /// The primary to follow.
        of: MemberName,
    },
    /// Promote the running standby so that its new timeline is exactly
    /// `timeline` (the executor places empty history files for unused lower
    /// timelines in `pg_wal` so PostgreSQL picks this one), and wait until it
    /// accepts writes.
    Promote {
        /// The timeline the new primary must run on.
        timeline: Timeline,
    },
    /// Stop PostgreSQL with `mode` and leave it stopped; the next tick decides
    /// how it comes back (replica, rewind, re-clone).
    Demote {
        /// How to stop.
        mode: StopMode,
    },
    /// Stop accepting writes **at once**: immediate shutdown, or read-only
    /// plus terminating every open session. Never a graceful shutdown that
    /// lets open sessions keep committing. Must finish within
    /// `stop_writes_timeout`.
    FenceWrites,
    /// Stop PostgreSQL if needed and run `pg_rewind` against `from`; leave it
    /// stopped. On failure, report it (`failed_action`); the machine re-clones.
    Rewind {
        /// The source primary.
        from: MemberName,
    },
    /// Stop PostgreSQL if needed, empty the data directory and take a base
    /// backup (`pg_basebackup`) from `from`; leave it stopped.
    Reclone {
        /// The source primary.
        from: MemberName,
    },
    /// Compare-and-swap the lease to take it (first lease, expired, or released).
    AcquireLease {
        /// The version read.
        expected: LeaseVersion,
        /// The new record (this member as holder, next term).
        record: LeaseRecord,
    },
    /// Compare-and-swap the lease to renew it (same holder and term).
    RenewLease {
        /// The version this member last wrote or read.
        expected: LeaseVersion,
        /// The new record.
        record: LeaseRecord,
    },
    /// Compare-and-swap the lease to give it up (holder `None`).
    ReleaseLease {
        /// The version this member last wrote.
        expected: LeaseVersion,
        /// The new record.
        record: LeaseRecord,
    },
    /// Compare-and-swap the lease to make `to` the holder (switchover).
    HandOverLease {
        /// The new holder.
        to: MemberName,
        /// The version this member last wrote.
        expected: LeaseVersion,
        /// The new record.
        record: LeaseRecord,
    },
    /// Set `synchronous_standby_names` (reload; takes effect for the next commit).
    SetSyncStandbys(SyncStandbys),
    /// Publish this member's state to the coordinator.
    PublishState(MemberState),
    /// Set the `pgcluster.dev/role` label of `member` (this member, or the
    /// old primary that a new primary relabels).
    SetRoleLabel {
        /// Whose label.
        member: MemberName,
        /// The value.
        role: RoleLabel,
    },
    /// Make sure writes stop by local time `deadline` even if this agent
    /// stalls or dies (a watchdog thread, process or kernel watchdog that
    /// fences PostgreSQL as [`Action::FenceWrites`] does). Each arm replaces
    /// the previous deadline.
    ArmWatchdog {
        /// Local clock reading at which to fence.
        deadline: Millis,
    },
    /// Send this probe directly to every other member and deliver their
    /// replies in the next tick's `failsafe_replies`.
    ProbePeers(FailsafeProbe),
    /// Send this reply to the member that probed us.
    AnswerProbe(FailsafeReply),
    /// Remove the switchover request `id` from the coordinator (done or refused).
    ClearSwitchover {
        /// The request.
        id: u64,
    },
}

/// The kind of an [`Action`], without its data (for reporting failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// [`Action::Bootstrap`]
    Bootstrap,
    /// [`Action::StartAsPrimary`]
    StartAsPrimary,
    /// [`Action::StartAsReplica`]
    StartAsReplica,
    /// [`Action::Promote`]
    Promote,
    /// [`Action::Demote`]
    Demote,
    /// [`Action::FenceWrites`]
    FenceWrites,
    /// [`Action::Rewind`]
    Rewind,
    /// [`Action::Reclone`]
    Reclone,
    /// Any lease compare-and-swap.
    Lease,
    /// [`Action::SetSyncStandbys`]
    SetSyncStandbys,
    /// [`Action::PublishState`]
    PublishState,
    /// [`Action::SetRoleLabel`]
    SetRoleLabel,
    /// [`Action::ArmWatchdog`]
    ArmWatchdog,
    /// [`Action::ProbePeers`]
    ProbePeers,
    /// [`Action::AnswerProbe`]
    AnswerProbe,
    /// [`Action::ClearSwitchover`]
    ClearSwitchover,
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Bootstrap => ActionKind::Bootstrap,
            Action::StartAsPrimary => ActionKind::StartAsPrimary,
            Action::StartAsReplica { .. } => ActionKind::StartAsReplica,
            Action::Promote { .. } => ActionKind::Promote,
            Action::Demote { .. } => ActionKind::Demote,
            Action::FenceWrites => ActionKind::FenceWrites,
            Action::Rewind { .. } => ActionKind::Rewind,
            Action::Reclone { .. } => ActionKind::Reclone,
            Action::AcquireLease { .. }
            | Action::RenewLease { .. }
            | Action::ReleaseLease { .. }
            | Action::HandOverLease { .. } => ActionKind::Lease,
            Action::SetSyncStandbys(_) => ActionKind::SetSyncStandbys,
            Action::PublishState(_) => ActionKind::PublishState,
            Action::SetRoleLabel { .. } => ActionKind::SetRoleLabel,
            Action::ArmWatchdog { .. } => ActionKind::ArmWatchdog,
            Action::ProbePeers(_) => ActionKind::ProbePeers,
            Action::AnswerProbe(_) => ActionKind::AnswerProbe,
            Action::ClearSwitchover { .. } => ActionKind::ClearSwitchover,
        }
    }

    /// For lease actions, the compare-and-swap to perform: one code path in
    /// the executor serves all four.
    pub fn lease_cas(&self) -> Option<(LeaseVersion, &LeaseRecord)> {
        match self {
            Action::AcquireLease { expected, record }
            | Action::RenewLease { expected, record }
            | Action::ReleaseLease { expected, record }
            | Action::HandOverLease {
                expected, record, ..
            } => Some((*expected, record)),
            _ => None,
        }
    }
}
