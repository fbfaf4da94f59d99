//! `pgcluster down`: stops a local cluster (`--data-dir`, `--name`, or the
//! one that is running): agents stop PostgreSQL with a fast shutdown; no
//! data is removed; `pgcluster up` starts it again.

use std::time::Duration;

use pgcluster_ha::local::cluster;
use pgcluster_ha::local::discover::{self, Pick};
use pgcluster_ha::local::layout::Layout;

use super::local::{Target, fail, runtime};
use crate::CliError;

/// Arguments of `pgcluster down`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Only the processes recorded in the cluster's cluster.json are signalled. \
Without --name or --data-dir, stops the one local cluster that is running (refused when \
several are).

Examples:
  pgcluster down
  pgcluster down --name demo
  pgcluster down --data-dir /tmp/demo"
)]
pub struct Args {
    /// Which cluster.
    #[command(flatten)]
    pub target: Target,
}

/// Stops the cluster.
pub fn exec(args: Args) -> Result<(), CliError> {
    if args.target.data_dir.is_none() && args.target.name.is_none() {
        // Nothing to stop is not a failure: `down` twice in a row succeeds.
        let parent = Layout::default_parent();
        if let Pick::NoneRunning(_) = discover::pick(discover::clusters_in(&parent)) {
            println!(
                "no local cluster is running (looked in {})",
                parent.display()
            );
            return Ok(());
        }
    }
    let layout = args.target.layout()?;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    let report = runtime()?
        .block_on(cluster::stop(&layout, Duration::from_secs(60)))
        .map_err(|e| fail(&e))?;
    if !report.servers.is_empty() {
        eprintln!(
            "warning: PostgreSQL servers {:?} ran without their agents; they were stopped",
            report.servers
        );
    }
    if report.stopped.is_empty() && report.killed.is_empty() && report.servers.is_empty() {
        println!(
            "cluster {} was not running (data kept in {})",
            record.name,
            layout.root().display()
        );
    } else {
        println!(
            "cluster {} stopped ({} processes); data kept in {}",
            record.name,
            report.stopped.len() + report.killed.len() + report.servers.len(),
            layout.root().display()
        );
        if !report.killed.is_empty() {
            eprintln!(
                "warning: PIDs {:?} did not stop in time and were killed",
                report.killed
            );
        }
    }
    Ok(())
}
