//! Candidate eligibility and ranking: one total order with a deterministic tie-break.

use std::cmp::Ordering;

use super::config::HaConfig;
use super::units::{Lsn, MemberName, SystemId, Timeline};
use super::view::{LeaseRecord, MemberRole, MemberState};

/// What ranking looks at for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The member.
    pub name: MemberName,
    /// Running and streaming (or at least running as a standby).
    pub healthy: bool,
    /// WAL received.
    pub received_lsn: Lsn,
    /// WAL replayed.
    pub replayed_lsn: Lsn,
}

impl Candidate {
    /// The ranking order: healthy first, then most WAL received, then most
    /// replayed, then the smallest name. `Ordering::Less` means "better".
    /// This is a total order (the name makes every two members distinct), so
    /// every member that sees the same states picks the same winner.
    pub fn rank(&self, other: &Candidate) -> Ordering {
        other
            .healthy
            .cmp(&self.healthy)
            .then(other.received_lsn.cmp(&self.received_lsn))
            .then(other.replayed_lsn.cmp(&self.replayed_lsn))
            .then(self.name.cmp(&other.name))
    }
}

/// Why a member may not be promoted automatically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ineligible {
    /// Its published state is stale (not updated recently).
    Stale,
    /// It is not running as a replica.
    NotReplica,
    /// Its data belongs to another cluster, or it has none.
    WrongSystem,
    /// Its WAL is not a prefix of the cluster's lineage (diverged).
    OffLineage,
    /// Async mode: too far behind the last known primary position.
    TooFarBehind,
    /// Sync mode: not a synchronous standby of the last primary.
    NotSyncStandby,
}

impl Ineligible {
    /// Why, in words (for status output and logs).
    pub fn reason(self) -> &'static str {
        match self {
            Ineligible::Stale => "its published state is stale",
            Ineligible::NotReplica => "it is not running as a replica",
            Ineligible::WrongSystem => "its data belongs to another cluster or it has none",
            Ineligible::OffLineage => "its WAL diverged from the cluster's lineage",
            Ineligible::TooFarBehind => "it is beyond the failover lag limit",
            Ineligible::NotSyncStandby => {
                "it is not a synchronous standby, so it may lack acknowledged commits"
            }
        }
    }

    /// Whether waiting can cure it (the member may become eligible by itself).
    pub fn transient(self) -> bool {
        matches!(self, Ineligible::Stale | Ineligible::NotReplica)
    }
}

/// Whether `state` may be promoted by a forced failover (`pgcluster failover
/// --to`) from `lease`: like [`eligibility`] but the async lag limit does not
/// apply (the operator accepts losing the newest writes). Sync mode still
/// requires a synchronous standby: promoting anything else would lose
/// acknowledged commits, which no flag makes acceptable.
pub fn forced_eligibility(
    config: &HaConfig,
    lease: &LeaseRecord,
    state: &MemberState,
    fresh: bool,
) -> Result<(), Ineligible> {
    match eligibility(config, lease, state, fresh) {
        Err(Ineligible::TooFarBehind) => Ok(()),
        other => other,
    }
}

/// Whether `state` may be promoted by an automatic failover from `lease`.
pub fn eligibility(
    config: &HaConfig,
    lease: &LeaseRecord,
    state: &MemberState,
    fresh: bool,
) -> Result<(), Ineligible> {
    if !fresh {
        return Err(Ineligible::Stale);
    }
    if !matches!(state.role, MemberRole::Replica | MemberRole::Stopped) {
        return Err(Ineligible::NotReplica);
    }
    let Some(system) = state.system_identifier else {
        // Not observed yet (a slow or failed observation): that can change,
        // unlike another cluster's data, so a forced failover waits for it.
        return Err(Ineligible::Stale);
    };
    if lease.system_identifier != Some(system) {
        return Err(Ineligible::WrongSystem);
    }
    let end = state.flushed_lsn.max(state.received_lsn);
    if !lease.on_lineage(state.timeline, end) {
        return Err(Ineligible::OffLineage);
    }
    if config.sync_mode() {
        if !lease.sync_standbys.contains(&state.name) {
            return Err(Ineligible::NotSyncStandby);
        }
    } else if lease.primary_lsn.0.saturating_sub(end.0) > config.replication.max_failover_lag_bytes
    {
        return Err(Ineligible::TooFarBehind);
    }
    Ok(())
}

/// The best of `candidates` by [`Candidate::rank`].
pub fn best<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> Option<&'a Candidate> {
    candidates.into_iter().min_by(|a, b| a.rank(b))
}

/// Builds the ranking input of a published state.
pub fn candidate_of(state: &MemberState) -> Candidate {
    Candidate {
        name: state.name.clone(),
        healthy: state.healthy,
        received_lsn: state.received_lsn.max(state.flushed_lsn),
        replayed_lsn: state.replayed_lsn,
    }
}

/// Whether a data directory's identity matches the cluster's.
pub fn same_system(lease: &LeaseRecord, data: Option<SystemId>) -> bool {
    match (lease.system_identifier, data) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether `(timeline, lsn)` can follow the holder of `lease` without rewinding.
pub fn can_follow(lease: &LeaseRecord, timeline: Timeline, lsn: Lsn) -> bool {
    lease.on_lineage(timeline, lsn)
}
