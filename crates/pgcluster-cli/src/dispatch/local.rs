//! What the local-cluster commands share: finding the cluster's data
//! directory, reading its record and spec, the async runtime, and turning
//! library errors into [`CliError`]s that print their whole cause chain.

use std::path::PathBuf;

use pgcluster_core::ValidatedCluster;
use pgcluster_ha::local::layout::{ClusterRecord, Layout};

use crate::CliError;

/// The spec `pgcluster up` runs without `-f`: cluster `local`, two instances.
pub const DEFAULT_SPEC: &str = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata:
  name: local
  namespace: default
spec:
  instances: 2
";

/// The default cluster name (the default spec's).
pub const DEFAULT_NAME: &str = "local";

/// `--data-dir`/`--name` shared by the commands that act on a running local cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The cluster's data directory (default: the default directory of --name).
    #[arg(long, value_name = "DIR", env = "PGCLUSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cluster's name, to find its default data directory.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
}

impl Target {
    /// The cluster's layout.
    pub fn layout(&self) -> Layout {
        Layout::new(
            self.data_dir
                .clone()
                .unwrap_or_else(|| Layout::default_root(&self.name)),
        )
    }
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(&e))
}

/// An error with its whole cause chain, as a [`CliError::Other`].
pub fn fail(error: &dyn std::error::Error) -> CliError {
    CliError::Other(anyhow::anyhow!(pgcluster_ha::agent::execute::error_chain(
        error
    )))
}

/// Validates a spec text; every problem in the message.
pub fn validate_spec(text: &str, origin: &str) -> Result<ValidatedCluster, CliError> {
    let loaded = pgcluster_core::load::load_one(text)
        .map_err(|e| CliError::Invalid(format!("{origin}: {e}")))?;
    loaded.validate().map_err(|errors| {
        CliError::Invalid(format!(
            "{origin} is not a valid PostgresCluster:\n{errors}"
        ))
    })
}

/// The record and validated spec of the cluster in `layout`.
pub fn load(layout: &Layout) -> Result<(ClusterRecord, ValidatedCluster), CliError> {
    let record = layout.read_record().map_err(|e| fail(&e))?;
    let cluster = validate_spec(&record.spec, &layout.cluster_file().display().to_string())?;
    Ok((record, cluster))
}

/// Resolves when the process gets SIGTERM or SIGINT (Ctrl-C); the handlers
/// are installed on the first poll.
pub async fn shutdown_signal() {
    match shutdown_signal_now() {
        Ok(signalled) => signalled.await,
        Err(e) => panic!("installing signal handlers works in a tokio runtime: {e}"),
    }
}

/// Installs the SIGTERM and SIGINT handlers at once (from then on neither
/// kills the process) and returns a future that resolves on the first one.
pub fn shutdown_signal_now() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
