//! Orchestration of a local cluster, used by `pgcluster up`, `down`,
//! `status`, `switchover` and `failover`: checks before anything starts
//! (nothing already running, ports free, binaries, OS user), one agent
//! process per member, the router's targets from the coordinator, readiness,
//! the application roles and databases, and stopping by recorded PIDs only.
//!
//! ```text
//! prepare --> spawn_agents --> route_targets --> Router --> wait_ready --> create_app_objects
//!    (cluster.json, secrets)         (coordinator file, polled)                 ... stop(): SIGTERM recorded PIDs
//! ```

//! The pieces live in their own modules (`prepare`, `spawn`, `targets`,
//! `ready`, `app_objects`, `stop`, `error`); this module re-exports them as
//! one API.

pub use super::app_objects::{connect, create_app_objects};
pub use super::error::LocalError;
pub use super::prepare::{Prepared, UpOptions, live_pids, pid_is_ours, prepare, running_process};
pub use super::ready::{readiness, wait_ready};
pub use super::spawn::{agent_config, spawn_agent, spawn_agents, spawn_router};
pub use super::stop::{StopReport, stop};
pub use super::targets::{coordinator, route_targets, targets_of};
