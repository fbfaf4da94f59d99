//! The controller process: logging, the metrics/health endpoint, leader
//! election, then [`super::run`]. The `pgcluster-controller` binary only
//! parses its flags and calls [`run_blocking`].

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::leader::LeaderElector;
use super::sql::PostgresAdmin;
use super::{Context, Metrics};

/// Settings of the controller process.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_address: SocketAddr,
    /// The controller's namespace (its leader Lease; the instances' NetworkPolicy peer).
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Elect a leader among replicas (off only for a single local run).
    pub leader_election: bool,
    /// JSON logs (in pods) instead of human-readable ones (on a terminal).
    pub json_logs: bool,
}

/// Why the controller process stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No Kubernetes configuration (in-cluster or kubeconfig).
    #[error("failed to configure the Kubernetes client")]
    Client {
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The metrics endpoint could not listen.
    #[error("failed to serve metrics on {address}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another replica took the leader Lease.
    #[error(
        "failed to keep the controller leadership; exiting so a restart rejoins as a candidate"
    )]
    LostLeadership,
    /// The runtime could not start.
    #[error("failed to start the async runtime")]
    Runtime {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the controller until SIGTERM/SIGINT or loss of leadership.
pub fn run_blocking(config: ProcessConfig) -> Result<(), ProcessError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ProcessError::Runtime { source })?
        .block_on(run_process(config))
}

async fn run_process(config: ProcessConfig) -> Result<(), ProcessError> {
    init_logging(config.json_logs);
    let client = kube::Client::try_default()
        .await
        .map_err(|source| ProcessError::Client { source })?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let listener = tokio::net::TcpListener::bind(config.metrics_address)
        .await
        .map_err(|source| ProcessError::Metrics {
            address: config.metrics_address,
            source,
        })?;
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        if let Err(error) = super::http::serve_on(listener, registry).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        Arc::new(PostgresAdmin),
        config.namespace.clone(),
        Some(config.identity.clone()),
    ));
    if !config.leader_election {
        super::run(ctx).await;
        return Ok(());
    }
    let elector = LeaderElector::new(client, &config.namespace, config.identity.clone());
    tracing::info!(
        identity = config.identity,
        "waiting for the controller leadership"
    );
    elector.acquire().await;
    tracing::info!(
        identity = config.identity,
        "leading; reconciling PostgresClusters"
    );
    tokio::select! {
        () = super::run(ctx) => Ok(()),
        () = elector.hold() => Err(ProcessError::LostLeadership),
    }
}
