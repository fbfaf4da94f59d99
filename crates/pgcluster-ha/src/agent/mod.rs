//! The agent: runs the pure state machine against a real PostgreSQL server
//! it supervises as a child process.
//!
//! Every `loop_interval` the [`driver`] observes the local server
//! ([`observe`]), reads the coordinator's view (with a timeout shorter than
//! the loop), calls [`crate::machine::step`], executes the returned actions in
//! order ([`execute`], stopping at the first failure or lost compare-and-swap,
//! on the real server through [`host::AgentHost`]; the simulator runs the same
//! executor on fakes)
//! and feeds the outcomes into the next tick. A [`watchdog`] thread fences
//! PostgreSQL when the lease deadline passes even if this loop stalls. The
//! [`http`] API serves health, readiness, status, metrics and failsafe probes.
//!
//! ```text
//!            +-------------------- driver (tokio) ---------------------+
//! postgres --observe--> PgObservation --+                              |
//! coordinator --read_view (timeout)-----+--> step --> actions --execute--> postgres, coordinator, watchdog, peers
//!            +--- outcomes (lease, failed action, probe replies) ------+
//! ```

pub mod background;
pub mod client;
pub mod credential;
pub mod driver;
pub mod execute;
pub mod host;
pub mod http;
pub mod metrics;
pub mod observe;
pub mod status;
pub mod supervise;
pub mod watchdog;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use driver::run;
pub use status::AgentStatus;

use crate::machine::{HaConfig, MemberName, RoleLabel};
use crate::postgres::{Instance, PgError};

/// Where one member can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// Host name or IP address (`127.0.0.1` in local mode; the pod's DNS
    /// name behind the headless Service in Kubernetes).
    pub host: String,
    /// PostgreSQL's TCP port on `host`.
    pub pg_port: u16,
    /// The agent API's TCP port on `host`.
    pub api_port: u16,
}

impl PeerAddr {
    /// A member on this machine (local mode): `127.0.0.1` with these ports.
    pub fn loopback(pg_port: u16, api_port: u16) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            pg_port,
            api_port,
        }
    }
}

/// Where the pod role labels the machine decides go (Kubernetes mode; local
/// mode has no labels, its router follows the lease).
///
/// The machine emits a label only when it changes and does not retry, so an
/// implementation must not block the loop and must keep retrying a label it
/// could not set until it succeeds or a newer value for that member replaces it.
pub trait RoleLabels: Send + Sync + std::fmt::Debug {
    /// Asks for `member`'s pod to carry `role` (returns at once).
    fn set(&self, member: &MemberName, role: RoleLabel);
}

/// Everything one agent needs, resolved before it starts.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The cluster's name (logs, metrics, `cluster_name`).
    pub cluster_name: String,
    /// The state machine's configuration for this member.
    pub ha: HaConfig,
    /// The local PostgreSQL instance (binaries, OS user, files, port, superuser).
    pub instance: Instance,
    /// Every member (this one included) and where it listens.
    pub peers: BTreeMap<MemberName, PeerAddr>,
    /// Where the agent API listens (every route when `metrics_listen` is
    /// `None`, else the members' routes only).
    pub api_listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` listen apart from the
    /// members' routes (Kubernetes: monitoring may reach only this port).
    pub metrics_listen: Option<SocketAddr>,
    /// The server's settings in file order, from core's one renderer
    /// ([`pgcluster_core::postgres::settings`]): local mode renders them
    /// for this member; a pod includes the ConfigMap's postgresql.conf,
    /// rendered by the same code.
    pub server_settings: Vec<pgcluster_core::postgres::settings::Setting>,
    /// How long a start (including crash recovery) may take.
    pub start_timeout: Duration,
    /// Where role labels go (`None`: local mode, labels are not set).
    pub role_labels: Option<Arc<dyn RoleLabels>>,
}

impl AgentConfig {
    /// This member's name.
    pub fn me(&self) -> &MemberName {
        &self.ha.me
    }

    /// The loop interval.
    pub fn loop_interval(&self) -> Duration {
        self.ha.timings.loop_interval
    }

    /// What this member shows on the members' routes of its peers' agent
    /// API, and asks of callers of its own.
    pub fn member_credential(&self) -> credential::MemberCredential {
        credential::MemberCredential::of(&self.instance.superuser.password)
    }
}

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent API could not listen.
    #[error("failed to start the agent API")]
    Http {
        /// The cause.
        #[source]
        source: http::HttpError,
    },
    /// The watchdog thread could not be started.
    #[error("failed to start the watchdog thread; check the process and thread limits")]
    Watchdog {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Preparing the instance's directories failed.
    #[error("failed to prepare the directories of member {member}")]
    Prepare {
        /// The member.
        member: String,
        /// The cause.
        #[source]
        source: PgError,
    },
    /// Stopping PostgreSQL at shutdown failed.
    #[error("failed to stop PostgreSQL of member {member} at shutdown; stop PID {pid} by hand")]
    Shutdown {
        /// The member.
        member: String,
        /// The postmaster's PID.
        pid: u32,
        /// The cause.
        #[source]
        source: PgError,
    },
}

impl AgentError {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            AgentError::Http { .. } => "http",
            AgentError::Watchdog { .. } => "watchdog",
            AgentError::Prepare { .. } => "prepare",
            AgentError::Shutdown { .. } => "shutdown",
        }
    }
}
