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
    let _telemetry = crate::telemetry::init_from_env("info", "pgcluster-router")?;
    let layout = args.target.layout()?;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    runtime()?.block_on(async {
        let (targets, task) = cluster::route_targets(&layout, &record, Duration::from_millis(50))
            .map_err(|e| fail(&e))?;
        // Its own thread and single-threaded runtime keep the data path
        // cheap; this runtime only follows the coordinator.
        let router = Router::spawn_dedicated(RouterConfig::for_cluster(&layout, &record), targets)
            .map_err(|e| fail(&e))?;
        // The detached router lives as long as the cluster: it also keeps
        // the agents running (restarts with back-off), and its supervisor
        // returns when the cluster's record is gone (data dir removed), so
        // the router never outlives its cluster.
        let exe = std::env::current_exe().map_err(|e| fail(&e))?;
        let (_, validated) = super::local::load(&layout)?;
        let first = pgcluster_ha::local::supervisor::first_restart(&validated.timings());
        let supervise = pgcluster_ha::local::supervisor::supervise(layout.clone(), exe, first);
        tokio::select! {
            () = shutdown_signal() => {}
            () = supervise => tracing::warn!("the cluster record is gone; the router stops"),
        }
        router.shutdown();
        task.abort();
        Ok(())
    })
}
