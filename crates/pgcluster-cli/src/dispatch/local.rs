//! What the local-cluster commands share: finding the cluster's data
//! directory, reading its record and spec, the async runtime, and turning
//! library errors into [`CliError`]s that print their whole cause chain.

use std::path::{Path, PathBuf};

use pgcluster_core::ValidatedCluster;
use pgcluster_ha::local::discover::{self, Pick};
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

/// `--data-dir`/`--name` shared by the commands that act on a local cluster.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// The cluster's data directory (default: the running cluster's, see --name).
    #[arg(long, value_name = "DIR", env = "PGCLUSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cluster's name, to find its default data directory (default: the
    /// one local cluster that is running; refused when several are).
    #[arg(long)]
    pub name: Option<String>,
}

impl Target {
    /// The cluster's layout: `--data-dir`, else the default directory of
    /// `--name`, else the one running cluster among the default directories.
    pub fn layout(&self) -> Result<Layout, CliError> {
        if let Some(dir) = &self.data_dir {
            return Ok(Layout::new(dir));
        }
        if let Some(name) = &self.name {
            return Ok(Layout::new(Layout::default_root(name)));
        }
        let parent = Layout::default_parent();
        choose(&parent, discover::pick(discover::clusters_in(&parent)))
    }
}

/// The layout of the one running cluster, or an error that lists what there is.
fn choose(parent: &Path, pick: Pick) -> Result<Layout, CliError> {
    let line = |f: &discover::Found| {
        format!(
            "\n  {:<16} {}  rw 127.0.0.1:{}",
            f.record.name,
            f.layout.root().display(),
            f.record.rw_port
        )
    };
    match pick {
        Pick::One(found) => Ok(found.layout),
        Pick::Several(running) => Err(CliError::Invalid(format!(
            "{} local clusters are running; say which with --name NAME (or --data-dir DIR):{}",
            running.len(),
            running.iter().map(line).collect::<String>()
        ))),
        Pick::NoneRunning(stopped) if stopped.is_empty() => Err(CliError::Failed(format!(
            "no local cluster is running (none in {}); start one with `pgcluster up`, \
                 or pass --data-dir DIR for a cluster elsewhere",
            parent.display()
        ))),
        Pick::NoneRunning(stopped) => Err(CliError::Failed(format!(
            "no local cluster is running; stopped:{}\nstart one with `pgcluster up` \
             (-f FILE for a cluster with its own spec), or pass --name NAME to address a stopped one",
            stopped.iter().map(line).collect::<String>()
        ))),
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

/// A runtime on the calling thread, for a process that mostly sleeps (a
/// local agent): its main task, PostgreSQL connection and timers share one
/// thread, so an idle loop wakes one thread instead of handing every step
/// between threads (those wake-ups were most of an idle agent's CPU).
/// `spawn_blocking` still has its own threads.
pub fn quiet_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e))
}

/// An error with its whole cause chain, as a [`CliError::Failed`].
pub fn fail(error: &dyn std::error::Error) -> CliError {
    CliError::Failed(crate::error::chain(error))
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

/// Refuses at once, rather than waiting for agents that do not run, when
/// nothing of the cluster in `layout` runs.
pub fn require_running(layout: &Layout, record: &ClusterRecord) -> Result<(), CliError> {
    if discover::is_running(layout, record) {
        return Ok(());
    }
    Err(CliError::Failed(format!(
        "cluster {} is stopped (data in {}); start it with `pgcluster up` first",
        record.name,
        layout.root().display()
    )))
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
