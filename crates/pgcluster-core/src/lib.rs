//! pgcluster-core: the `PostgresCluster` API, its defaults, validation and the
//! access model. No I/O, no async, no Kubernetes client: everything here is a
//! function from values to values, so any tool can embed it.
//!
//! ```text
//! YAML/JSON --load--> PostgresCluster --validate--> ValidatedCluster --> builders, agent, explain
//!                                          (resolve fills defaults first)
//! ```

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod defaults;
pub mod duration;
pub mod load;
pub mod names;
pub mod postgres;
pub mod quantity;
pub mod timing;
pub mod validate;
pub mod validated;

pub use defaults::resolve;
pub use load::{LoadError, LoadedCluster, load};
pub use validate::{Check, ValidationError, ValidationErrors, validate};
pub use validated::ValidatedCluster;
mod crd;
pub use crd::crd_yaml;
