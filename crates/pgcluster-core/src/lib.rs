//! pgcluster-core: the `PostgresCluster` API, its defaults, validation and the
//! access model. No I/O, no async, no Kubernetes client: everything here is a
//! function from values to values, so any tool can embed it.
//!
//! ```text
//! YAML/JSON --load--> PostgresCluster --validate--> ValidatedCluster --> builders, agent, explain
//!                                          (resolve fills defaults first)
//! ```
//!
//! Embedding it: load a spec, validate it (every problem at once, each with a
//! path and a hint), and ask the access model a question.
//!
//! ```
//! use pgcluster_core::access::explain::Client;
//! use pgcluster_core::api::v1alpha1::AccessEndpoint;
//!
//! let yaml = "
//! apiVersion: pgcluster.dev/v1alpha1
//! kind: PostgresCluster
//! metadata: {name: main, namespace: databases}
//! spec:
//!   databases: [{name: app, owner: app}]
//!   roles: [{name: app}]
//!   access:
//!     - {name: apps, from: {namespaces: [apps]}, databases: [app], roles: [app]}
//! ";
//! let loaded = pgcluster_core::load::load_one(yaml).expect("well-formed");
//! let cluster = loaded.validate().expect("valid");
//! assert_eq!(cluster.instances(), 2); // the default: one primary, one replica
//!
//! let pod: Client = "namespace/apps".parse().expect("a client");
//! let decision = cluster.explain(&pod, AccessEndpoint::Rw, "app", "app");
//! assert!(decision.is_allowed());
//!
//! // A spec with problems reports all of them.
//! let bad = yaml.replace("[apps]", "[Apps]").replace("instances", "x");
//! let errors = pgcluster_core::load::load_one(&bad.replace("spec:\n", "spec:\n  instances: 12\n"))
//!     .expect("well-formed")
//!     .validate()
//!     .expect_err("two problems");
//! assert!(errors.has_path("spec.instances"));
//! assert!(errors.has_path("spec.access[0].from.namespaces[0]"));
//! ```

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod defaults;
pub mod duration;
mod error_chain;
pub mod load;
pub mod names;
pub mod postgres;
pub mod quantity;
pub mod timing;
pub mod validate;
pub mod validated;

pub use defaults::{resolve, resolve_on};
pub use error_chain::error_chain;
pub use load::{LoadError, LoadedCluster, load};
pub use timing::Platform;
pub use validate::{Check, ValidationError, ValidationErrors, validate, validate_on};
pub use validated::ValidatedCluster;
mod crd;
pub use crd::crd_yaml;

// The README's Rust examples are compiled and run as doc tests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
