//! The one error type of local-cluster orchestration ([`LocalError`]), with
//! its bounded [`LocalError::category`].

use std::path::PathBuf;
use std::time::Duration;

use super::layout::LayoutError;
use crate::postgres::PgError;

/// Everything that can stop a local-cluster command.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Reading or writing the layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The cluster is already running.
    #[error(
        "failed to start cluster {name}: it is already running ({process}, PID {pid}); `pgcluster status --data-dir {}` shows it, `pgcluster down --data-dir {}` stops it",
        .dir.display(), .dir.display()
    )]
    AlreadyRunning {
        /// Cluster name.
        name: String,
        /// What the PID is (`pgcluster up`, its router, an agent).
        process: String,
        /// That process's PID.
        pid: u32,
        /// Its data directory.
        dir: PathBuf,
    },
    /// The data directory holds another cluster.
    #[error(
        "failed to use {} for cluster {wanted}: it holds cluster {found}; pass another --data-dir (nothing was changed)",
        .dir.display()
    )]
    OtherCluster {
        /// The data directory.
        dir: PathBuf,
        /// The cluster found there.
        found: String,
        /// The cluster requested.
        wanted: String,
    },
    /// The spec changed the number of instances of an existing cluster.
    #[error(
        "failed to start cluster {name}: its data has {had} instances but the spec asks for {wants}; changing the instance count of a local cluster is not supported"
    )]
    InstanceCount {
        /// Cluster name.
        name: String,
        /// Recorded count.
        had: usize,
        /// Requested count.
        wants: u32,
    },
    /// A port is taken.
    #[error(
        "failed to start: 127.0.0.1:{port} ({what}) is already in use; stop whatever listens there or pass --port BASE for another port range"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// What it was for.
        what: String,
    },
    /// PostgreSQL's OS user cannot reach the data directory.
    #[error(
        "failed to use {} as the data directory: PostgreSQL's OS user {user} may not enter {}; pass a --data-dir it can reach (the default as root is /var/lib/pgcluster/NAME) or allow it with `chmod o+x {}`",
        .root.display(), .dir.display(), .dir.display()
    )]
    NotTraversable {
        /// The data directory.
        root: PathBuf,
        /// The directory on the way the user may not enter.
        dir: PathBuf,
        /// The OS user.
        user: String,
    },
    /// A PostgreSQL prerequisite failed (binaries, OS user, directories).
    #[error("failed to prepare PostgreSQL")]
    Postgres {
        /// The cause.
        #[source]
        source: PgError,
    },
    /// A process could not be started.
    #[error("failed to start {what}")]
    Spawn {
        /// What.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not become ready in time.
    #[error("failed to get a ready cluster within {waited:?}: {detail}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// What was still missing, and where to look.
        detail: String,
    },
    /// An agent exited while starting.
    #[error("failed to start member {member}: its agent exited; the end of {}:\n{tail}", .log.display())]
    AgentDied {
        /// The member.
        member: String,
        /// Its agent log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// Creating the spec's roles and databases through the rw endpoint failed.
    #[error(
        "failed to bring the spec's roles and databases to the primary through the rw endpoint"
    )]
    Sql {
        /// The session or statement that failed.
        #[source]
        source: crate::postgres::admin::AdminError,
    },
    /// The coordinator could not be used.
    #[error("failed to use the coordinator in {}", .dir.display())]
    Coordinator {
        /// Its directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: crate::coordinator::CoordinatorError,
    },
    /// The HA configuration of a member is invalid.
    #[error("failed to configure member {member}")]
    Config {
        /// The member.
        member: String,
        /// The cause.
        #[source]
        source: crate::machine::ConfigError,
    },
    /// Some processes did not stop.
    #[error("failed to stop PIDs {pids:?} within {waited:?}; they were killed (SIGKILL)")]
    StopTimeout {
        /// The PIDs.
        pids: Vec<u32>,
        /// How long we waited.
        waited: Duration,
    },
}

impl LocalError {
    /// A bounded label.
    pub fn category(&self) -> &'static str {
        match self {
            LocalError::Layout(e) => e.category(),
            LocalError::AlreadyRunning { .. } => "already_running",
            LocalError::OtherCluster { .. } => "other_cluster",
            LocalError::InstanceCount { .. } => "instance_count",
            LocalError::PortInUse { .. } => "port_in_use",
            LocalError::Postgres { .. } => "postgres",
            LocalError::Spawn { .. } => "spawn",
            LocalError::NotReady { .. } => "not_ready",
            LocalError::AgentDied { .. } => "agent_died",
            LocalError::Sql { .. } => "sql",
            LocalError::Coordinator { .. } => "coordinator",
            LocalError::Config { .. } => "config",
            LocalError::StopTimeout { .. } => "stop_timeout",
            LocalError::NotTraversable { .. } => "not_traversable",
        }
    }
}

impl LocalError {
    pub(super) fn admin(source: crate::postgres::admin::AdminError) -> LocalError {
        LocalError::Sql { source }
    }
}

pub(super) fn pg_err(source: PgError) -> LocalError {
    LocalError::Postgres { source }
}
