//! PostgreSQL facts pgcluster relies on: the table of parameters it manages,
//! the one renderer of the server settings, the major versions it supports,
//! and the pure SQL plan for databases and roles.

pub mod params;
pub mod settings;
pub mod sql;

/// PostgreSQL major versions pgcluster supports (images exist and the agent knows them).
pub const SUPPORTED_MAJORS: &[u32] = &[15, 16, 17];
