//! Local mode (`pgcluster up`): pieces that run the cluster as processes on
//! one machine. The router gives stable rw/ro ports on 127.0.0.1 that follow
//! the primary the way the Kubernetes Services do; the bench module measures
//! its overhead with pgbench.
//!
//! ```text
//! agent/coordinator --watch<RouteTargets>--> Router --TCP--> current primary / replicas
//! ```

pub mod bench;
pub mod cluster;
pub mod layout;
pub mod router;

pub use router::{Endpoint, RouteTargets, Router, RouterConfig, RouterError, RouterStats};
