//! What members share through the coordinator: the leader lease, each member's
//! published state and a pending switchover request.

use std::collections::{BTreeMap, BTreeSet};

use super::units::{Lsn, MemberName, Millis, SystemId, Timeline};

/// The compare-and-swap token of the lease: bumped by every successful write.
/// `LeaseVersion(0)` means "no lease record exists yet".
///
/// Coordinators that have their own opaque revision (Kubernetes
/// `resourceVersion`) store this counter in the record and check both: the
/// counter must equal the expected one, and the object must not have changed
/// between their read and their write (a 409 is [`crate::coordinator::CasOutcome::Lost`]).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LeaseVersion(pub u64);

/// One timeline switch in the cluster's history: `timeline` ended at `end`
/// (the WAL position where its successor forked off), like a line of
/// PostgreSQL's `.history` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TimelineEnd {
    /// The ancestor timeline.
    pub timeline: Timeline,
    /// Where it ended (no member on it may be past this position).
    pub end: Lsn,
}

/// The content of the leader lease, as written by its holder.
///
/// Only the holder writes it (renewals), except when a member acquires an
/// expired or released lease, or when a primary hands it over. Everything
/// failover needs to decide safely lives here, written atomically with the
/// leadership itself: the data lineage (timelines), the last primary WAL
/// position (for the lag limit) and the synchronous standbys (for sync mode).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LeaseRecord {
    /// The member allowed to run the writable primary; `None` once released.
    pub holder: Option<MemberName>,
    /// Leadership generation: incremented on every acquisition or hand-over.
    pub term: u64,
    /// When the holder sent this write, by the holder's own clock
    /// (informational only: nobody compares it with their clock).
    pub renewed_at: Millis,
    /// Lease duration in milliseconds (informational; the timings in the
    /// config are what members act on).
    pub duration_ms: u64,
    /// The cluster's data identity, set once the first primary ran initdb.
    pub system_identifier: Option<SystemId>,
    /// The timeline the holder runs (or will run once promoted).
    pub timeline: Timeline,
    /// Ancestor timelines of `timeline`, oldest first.
    pub history: Vec<TimelineEnd>,
    /// The highest timeline ever assigned; a promotion uses the next one, so
    /// no two primaries ever write the same timeline.
    pub max_timeline: Timeline,
    /// The holder's WAL position at its last renewal.
    pub primary_lsn: Lsn,
    /// Sync mode: the members that hold every acknowledged commit and may be
    /// promoted (empty in async mode or while degraded).
    pub sync_standbys: BTreeSet<MemberName>,
}

impl LeaseRecord {
    /// Whether a member whose data is at `(timeline, lsn)` is on this lineage,
    /// i.e. its WAL is a prefix of what the holder has (or will have).
    pub fn on_lineage(&self, timeline: Timeline, lsn: Lsn) -> bool {
        if timeline == self.timeline {
            return true;
        }
        self.history
            .iter()
            .any(|h| h.timeline == timeline && lsn <= h.end)
    }

    /// The history of a new timeline forked from `(timeline, lsn)`, which must
    /// be on this lineage.
    pub fn fork(&self, timeline: Timeline, lsn: Lsn) -> Vec<TimelineEnd> {
        let mut history: Vec<TimelineEnd> = self
            .history
            .iter()
            .take_while(|h| h.timeline != timeline)
            .copied()
            .collect();
        history.push(TimelineEnd { timeline, end: lsn });
        history
    }
}

/// A lease as stored: its record and its compare-and-swap version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// The compare-and-swap token of this record.
    pub version: LeaseVersion,
    /// The content.
    pub record: LeaseRecord,
}

/// The role a member reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MemberRole {
    /// Running the writable primary.
    Primary,
    /// Running a standby.
    Replica,
    /// Starting, cloning, rewinding or otherwise not serving yet.
    Starting,
    /// PostgreSQL is stopped (fenced, demoted, crashed).
    Stopped,
    /// Refuses to join: its data belongs to another cluster.
    Refused,
}

/// What one member publishes about itself every loop.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MemberState {
    /// The member.
    pub name: MemberName,
    /// Its role.
    pub role: MemberRole,
    /// PostgreSQL is running and (for a replica) streaming from the primary.
    pub healthy: bool,
    /// Current timeline.
    pub timeline: Timeline,
    /// WAL received from the upstream (primary: its flush position).
    pub received_lsn: Lsn,
    /// WAL replayed (primary: its flush position).
    pub replayed_lsn: Lsn,
    /// WAL flushed to disk.
    pub flushed_lsn: Lsn,
    /// The data directory's system identifier (`None` while empty).
    pub system_identifier: Option<SystemId>,
    /// The member it streams from.
    pub following: Option<MemberName>,
    /// Whether it may serve as a synchronous standby (a healthy replica
    /// streaming from the primary).
    pub sync_eligible: bool,
    /// Its own clock when it published (informational only).
    pub last_seen: Millis,
    /// Increases with every publication; readers judge freshness by when
    /// they saw it change, by their own clock.
    pub heartbeat: u64,
}

/// A request to move the primary role to another member without losing data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SwitchoverRequest {
    /// Identifies the request (the requester picks it; unique per cluster).
    pub id: u64,
    /// The member that should become primary; `None` means the best replica.
    pub target: Option<MemberName>,
    /// A forced failover (`pgcluster failover --to I`): once the lease has
    /// expired, the named target takes it over even when it does not rank
    /// first (and in async mode even beyond the lag limit). A live primary
    /// treats it as a switchover. Absent in older records: `false`.
    #[serde(default)]
    pub forced: bool,
}

impl SwitchoverRequest {
    /// A switchover request: the primary hands over to `target` (or the best replica).
    pub fn switchover(id: u64, target: Option<MemberName>) -> Self {
        Self {
            id,
            target,
            forced: false,
        }
    }

    /// A forced failover request naming `target`.
    pub fn forced_failover(id: u64, target: MemberName) -> Self {
        Self {
            id,
            target: Some(target),
            forced: true,
        }
    }

    /// The target of a forced failover request, if this is one.
    pub fn forced_target(&self) -> Option<&MemberName> {
        self.target.as_ref().filter(|_| self.forced)
    }
}

/// Everything a member reads from the coordinator in one loop.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterView {
    /// The leader lease, if one was ever written.
    pub lease: Option<Lease>,
    /// Every member's last published state.
    pub members: BTreeMap<MemberName, MemberState>,
    /// The pending switchover request, if any.
    pub switchover: Option<SwitchoverRequest>,
}

/// The synchronous replication setting of a primary
/// (`synchronous_standby_names`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SyncStandbys {
    /// Empty: commits are acknowledged once flushed locally (async).
    #[default]
    Off,
    /// Commits wait until **every** listed standby flushed them
    /// (`FIRST n (a, b, ...)` with n = the number of names). An empty list
    /// means commits wait forever: the executor renders it as a name no
    /// standby uses, so PostgreSQL blocks commits.
    AllOf(BTreeSet<MemberName>),
}

impl SyncStandbys {
    /// The listed names (empty for `Off`).
    pub fn names(&self) -> BTreeSet<MemberName> {
        match self {
            SyncStandbys::Off => BTreeSet::new(),
            SyncStandbys::AllOf(n) => n.clone(),
        }
    }

    /// The value for `synchronous_standby_names`.
    pub fn to_setting(&self) -> String {
        match self {
            SyncStandbys::Off => String::new(),
            SyncStandbys::AllOf(n) if n.is_empty() => "\"pgcluster_no_standby\"".to_owned(),
            SyncStandbys::AllOf(n) => {
                let names: Vec<String> = n.iter().map(|m| format!("\"{m}\"")).collect();
                format!("FIRST {} ({})", n.len(), names.join(", "))
            }
        }
    }
}
