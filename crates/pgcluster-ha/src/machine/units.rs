//! Small value types shared by the machine, the coordinator and the simulator.

use std::fmt;
use std::time::Duration;

/// A reading of a member's own monotonic clock, in milliseconds.
///
/// Only differences between two readings of the *same* member mean anything:
/// members never compare their clocks with each other. Clock *rate* drift
/// between members is what [`pgcluster_core::timing::FailoverTimings::max_clock_drift`]
/// bounds.
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
pub struct Millis(pub u64);

impl Millis {
    /// This reading plus a duration (saturating).
    pub fn after(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(d)))
    }
    /// This reading plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self` (0 when `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// A duration in whole milliseconds (saturating at `u64::MAX`).
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub use super::lsn::{Lsn, ParseLsnError};

/// A PostgreSQL timeline ID.
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
pub struct Timeline(pub u32);

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// PostgreSQL's database system identifier (set by initdb, copied by base backups).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SystemId(pub u64);

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of a cluster member (instance), e.g. `pg-0`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct MemberName(String);

impl MemberName {
    /// Wraps a name. Names are compared byte-wise; that order is the last
    /// tie-break of candidate ranking.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberName {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}
