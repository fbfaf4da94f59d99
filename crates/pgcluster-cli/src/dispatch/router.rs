//! `pgcluster router`: the local rw/ro endpoints of a cluster started with
//! `pgcluster up --detach` (in the foreground, `up` runs the router itself).

use std::time::Duration;

use pgcluster_ha::local::cluster;
use pgcluster_ha::local::{Router, RouterConfig};

use super::local::{Target, fail, runtime, shutdown_signal};
use crate::CliError;

/// Arguments of `pgcluster router`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pgcluster router --local --data-dir /var/lib/pgcluster/local")]
pub struct Args {
    /// Local mode (the only one: in Kubernetes the Services route).
    #[arg(long, required = true)]
    pub local: bool,
    /// Which cluster.
    #[command(flatten)]
    pub target: Target,
}

/// Serves the rw/ro ports until SIGTERM/SIGINT.
pub fn exec(args: Args) -> Result<(), CliError> {
    crate::telemetry::init("info");
    let layout = args.target.layout();
    let record = layout.read_record().map_err(|e| fail(&e))?;
    runtime()?.block_on(async {
        let (targets, task) = cluster::route_targets(&layout, &record, Duration::from_millis(50))
            .map_err(|e| fail(&e))?;
        let router = Router::bind(RouterConfig::local(record.rw_port, record.ro_port), targets)
            .await
            .map_err(|e| fail(&e))?;
        shutdown_signal().await;
        router.shutdown();
        task.abort();
        Ok(())
    })
}
