//! pgcluster-ha: the failover state machine and the agent driver around it.
//!
//! It owns the pure HA state machine, the coordinator trait and its memory and
//! local implementations, control of a real PostgreSQL server (`postgres`) and
//! the local-mode router (`local`). It must never depend on a Kubernetes
//! client: Kubernetes pieces reach it through traits implemented in
//! pgcluster-k8s.
//!
//! ```text
//! observe (postgres) --> Observation --> machine::step --> actions --> execute (postgres, coordinator)
//! ```

#![warn(missing_docs)]
pub mod coordinator;
pub mod machine;
pub mod sim;
pub mod postgres;
pub mod local;
#[cfg(feature = "testing")]
pub mod testing;
