//! `pgcluster agent`: the per-instance manager. Runs the HA state machine
//! against a PostgreSQL server it supervises (see `pgcluster_ha::agent`).
//! `pgcluster up` starts one per instance; it is not usually run by hand.

use std::path::PathBuf;

use pgcluster_ha::local::cluster;
use pgcluster_ha::local::layout::Layout;

use super::local::{fail, load, runtime, shutdown_signal};
use crate::CliError;

/// Arguments of `pgcluster agent`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stops PostgreSQL with a fast shutdown on SIGTERM or Ctrl-C.

Examples:
  pgcluster agent --local --data-dir ~/.local/share/pgcluster/local --member local-0"
)]
pub struct Args {
    /// Local mode: the cluster lives in --data-dir (written by `pgcluster up`).
    #[arg(long, required = true)]
    pub local: bool,
    /// The local cluster's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The member this agent manages (e.g. `local-0`).
    #[arg(long, value_name = "NAME")]
    pub member: String,
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn exec(args: Args) -> Result<(), CliError> {
    crate::telemetry::init("info");
    let layout = Layout::new(&args.data_dir);
    let (record, validated) = load(&layout)?;
    // Recorded so that `pgcluster down` stops this agent too (e.g. one restarted by hand).
    let me = args.member.clone();
    layout
        .update_record(|r| {
            if let Some(m) = r.members.iter_mut().find(|m| m.name == me) {
                m.agent_pid = Some(std::process::id());
            }
        })
        .map_err(|e| fail(&e))?;
    runtime()?.block_on(async {
        let config = cluster::agent_config(&layout, &record, &validated, &args.member)
            .await
            .map_err(|e| fail(&e))?;
        let timeout = pgcluster_ha::agent::driver::write_timeout(&config);
        let coordinator = cluster::coordinator(&layout, timeout).map_err(|e| fail(&e))?;
        pgcluster_ha::agent::run(config, coordinator, shutdown_signal())
            .await
            .map_err(|e| fail(&e))
    })
}
