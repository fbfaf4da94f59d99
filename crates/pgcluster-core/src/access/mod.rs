//! The access model: one set of rules, three renderings (NetworkPolicy and
//! LoadBalancer source ranges in pgcluster-k8s, pg_hba here) and `explain`.
//!
//! ```text
//! spec.access --validate--> AccessModel --+--> pg_hba.conf lines (hba.rs)
//!                                         +--> explain(client, endpoint, db, role) (explain.rs)
//!                                         +--> NetworkPolicy / loadBalancerSourceRanges (pgcluster-k8s)
//! ```

pub mod cidr;
mod model;

pub use model::*;
