//! A simulated PostgreSQL server: a WAL made of record IDs, timelines, streaming
//! replication and synchronous commit.

use crate::machine::{
    DataDir, Lsn, MemberName, PgObservation, ReplicaProgress, SyncStandbys, SystemId, Timeline,
};

/// Bytes of WAL per simulated record (so the lag limit is meaningful).
pub const RECORD_BYTES: u64 = 8192;

/// The data directory of a simulated server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    /// The system identifier.
    pub sysid: u64,
    /// The WAL: record IDs in order. IDs are globally unique and increasing,
    /// so two WALs agree on a prefix iff they agree on its last record.
    pub wal: Vec<u64>,
    /// Timelines and the WAL index where each starts, oldest first.
    pub history: Vec<(Timeline, usize)>,
    /// `standby.signal` present.
    pub standby: bool,
}

impl Data {
    /// The current timeline.
    pub fn timeline(&self) -> Timeline {
        self.history.last().map_or(Timeline(0), |h| h.0)
    }

    /// The WAL end as an LSN.
    pub fn lsn(&self) -> Lsn {
        Lsn(self.wal.len() as u64 * RECORD_BYTES)
    }

    /// Whether our WAL is a prefix of `other`'s first `len` records.
    pub fn is_prefix_of(&self, other: &Data, len: usize) -> bool {
        let n = self.wal.len();
        n <= len.min(other.wal.len()) && (n == 0 || other.wal[n - 1] == self.wal[n - 1])
    }
}

/// A simulated server.
#[derive(Clone, Debug, Default)]
pub struct SimPg {
    /// The data directory (`None`: empty).
    pub data: Option<Data>,
    /// The postmaster runs.
    pub running: bool,
    /// Whom `primary_conninfo` names.
    pub upstream: Option<usize>,
    /// A WAL receiver streams from `upstream`.
    pub streaming: bool,
    /// `synchronous_standby_names`.
    pub sync: SyncStandbys,
    /// Commits waiting for synchronous standbys: (write id, WAL length needed).
    pub pending: Vec<(u64, usize)>,
}

impl SimPg {
    /// Running and not in recovery: accepts writes.
    pub fn writable(&self) -> bool {
        self.running && self.data.as_ref().is_some_and(|d| !d.standby)
    }

    /// Running as a standby.
    pub fn standby(&self) -> bool {
        self.running && self.data.as_ref().is_some_and(|d| d.standby)
    }

    /// Stops the server; unacknowledged commits are lost to the client (never acknowledged).
    pub fn stop(&mut self) {
        self.running = false;
        self.streaming = false;
        self.pending.clear();
    }

    /// What the agent observes. `replicas` are the `pg_stat_replication` rows.
    pub fn observe(&self, names: &[MemberName], replicas: Vec<ReplicaProgress>) -> PgObservation {
        let Some(d) = &self.data else {
            return PgObservation {
                running: false,
                ..PgObservation::empty()
            };
        };
        let lsn = d.lsn();
        PgObservation {
            data: DataDir::Initialized(SystemId(d.sysid)),
            running: self.running,
            in_recovery: d.standby,
            timeline: d.timeline(),
            received_lsn: lsn,
            replayed_lsn: lsn,
            flushed_lsn: lsn,
            upstream: self.upstream.map(|u| names[u].clone()),
            streaming: self.running && self.streaming,
            sync_standbys: self.sync.clone(),
            replicas: if self.writable() {
                replicas
            } else {
                Vec::new()
            },
        }
    }
}
