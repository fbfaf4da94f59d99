//! `PostgresCluster` (group `pgcluster.dev`, version `v1alpha1`, short name `pgc`).
//!
//! Every field is optional in what a user writes; [`crate::resolve`] fills the
//! defaults so that later code never guesses. Every field carries a `///` doc
//! because it becomes the description in the generated CRD schema.

mod access;
mod cluster;
mod database;
mod monitoring;
mod postgres;
mod replication;
mod services;
mod status;

pub use access::*;
pub use cluster::*;
pub use database::*;
pub use monitoring::*;
pub use postgres::*;
pub use replication::*;
pub use services::*;
pub use status::*;
