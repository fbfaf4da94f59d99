//! The access model: one set of rules, three renderings (NetworkPolicy and
//! LoadBalancer source ranges in pgcluster-k8s, pg_hba here) and `explain`.
//!
//! ```text
//! spec.access --validate--> AccessModel --+--> pg_hba.conf lines (hba.rs)
//!                                         +--> explain(client, endpoint, db, role) (explain.rs)
//!                                         +--> NetworkPolicy / loadBalancerSourceRanges (pgcluster-k8s)
//! ```

pub mod cidr;
pub mod explain;
pub mod hba;
mod model;

pub use explain::{Client, Decision, explain};
pub use hba::{HbaLine, hba_allows, hba_lines, render_hba};
pub use model::*;
