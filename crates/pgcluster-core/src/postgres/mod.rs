//! PostgreSQL facts pgcluster relies on: the table of parameters it manages and
//! the major versions it supports.

pub mod params;

/// PostgreSQL major versions pgcluster supports (images exist and the agent knows them).
pub const SUPPORTED_MAJORS: &[u32] = &[15, 16, 17];
