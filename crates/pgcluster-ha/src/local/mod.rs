//! Local mode (`pgcluster up`): pieces that run the cluster as processes on
//! one machine. The router gives stable rw/ro ports on 127.0.0.1 that follow
//! the primary the way the Kubernetes Services do; the bench module measures
//! its overhead with pgbench, the idle module what an idle cluster costs.
//!
//! ```text
//! agent/coordinator --watch<RouteTargets>--> Router --TCP--> current primary / replicas
//! ```

mod app_objects;
pub mod bench;
pub mod cluster;
pub mod connect;
pub mod discover;
mod error;
pub mod idle;
pub mod layout;
mod prepare;
mod ready;
pub mod router;
mod spawn;
mod stop;
pub mod supervisor;
mod targets;

pub use router::{Endpoint, RouteTargets, Router, RouterConfig, RouterError, RouterStats};
