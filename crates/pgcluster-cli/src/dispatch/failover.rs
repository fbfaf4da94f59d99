//! `pgcluster failover [NAME] --to I`: makes I the primary when the current
//! primary is gone (forced). Refused while the primary is healthy: use
//! `pgcluster switchover`, which loses nothing. Without NAME the local
//! cluster; with NAME a PostgresCluster in Kubernetes ([`super::kube`]).

use std::time::Duration;

use super::kube::{self, ClusterArgs, Route};
use super::local::{fail, require_running, runtime};
use super::switchover::send_and_wait;
use crate::CliError;

/// Arguments of `pgcluster failover`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The request goes through the coordinator; once the old primary's lease \
has expired, the instance named by --to takes over and promotes (it must be a replica of the cluster's lineage).

Examples:
  pgcluster failover --to local-1                      # local cluster
  pgcluster failover main -n databases --to main-1     # PostgresCluster main in Kubernetes"
)]
pub struct Args {
    /// The instance to promote.
    #[arg(long, value_name = "INSTANCE")]
    pub to: String,
    /// Which cluster.
    #[command(flatten)]
    pub target: ClusterArgs,
    /// How long to wait, in seconds (default: 60 locally, 120 in Kubernetes).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Runs the forced failover and prints the result.
pub fn exec(args: Args) -> Result<(), CliError> {
    let target = match args.target.route() {
        Route::Kube(target) => {
            let timeout = Duration::from_secs(args.timeout.unwrap_or(120));
            let new = kube::failover(&target, &args.to, timeout)?;
            println!("failover done: the primary is now {new}");
            return Ok(());
        }
        Route::Local(target) => target,
    };
    let layout = target.layout()?;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    require_running(&layout, &record)?;
    let done = runtime()?.block_on(send_and_wait(
        &layout,
        &record,
        Some(&args.to),
        true,
        Duration::from_secs(args.timeout.unwrap_or(60)),
    ))?;
    println!(
        "failover done: {} -> {} in {} ms",
        done.from.as_ref().map_or("-", |m| m.as_str()),
        done.to,
        done.took.as_millis()
    );
    Ok(())
}
