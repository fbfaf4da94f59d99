//! pgcluster-core: the `PostgresCluster` API, its defaults, validation and the
//! access model. No I/O, no async, no Kubernetes client: everything here is a
//! function from values to values, so any tool can embed it.
//!
//! ```text
//! YAML/JSON --load--> PostgresCluster --validate--> ValidatedCluster --> builders, agent, explain
//! ```

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod names;
pub mod timing;
pub mod validated;

pub use validated::ValidatedCluster;
mod crd;
pub use crd::crd_yaml;
