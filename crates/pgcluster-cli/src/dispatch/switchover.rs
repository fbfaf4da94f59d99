//! `pgcluster switchover [NAME] [--to I]`: asks the primary (through the
//! coordinator) to hand the primary role to a caught-up replica without
//! losing any acknowledged write, waits, and reports how long it took.
//! Without NAME the local cluster; with NAME a PostgresCluster in Kubernetes
//! (the request goes on its leader Lease, see [`super::kube`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgcluster_ha::local::cluster;
use pgcluster_ha::local::layout::{ClusterRecord, Layout};
pub use pgcluster_ha::ops::Handover;
use pgcluster_ha::ops::{self, OpsError, Wait};

use super::kube::{self, ClusterArgs, Route};
use super::local::{fail, require_running, runtime};
use crate::CliError;

/// Arguments of `pgcluster switchover`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The primary stops cleanly, waits until the target has every WAL byte, and \
hands the lease over; the old primary then follows the new one. Refused (and nothing changes) \
when the target is not a streaming replica of the primary.

Examples:
  pgcluster switchover                 # local cluster, to the most caught-up replica
  pgcluster switchover --to local-1
  pgcluster switchover main -n databases --to main-1   # PostgresCluster main in Kubernetes"
)]
pub struct Args {
    /// The instance that should become primary (default: the best replica).
    #[arg(long, value_name = "INSTANCE")]
    pub to: Option<String>,
    /// Which cluster.
    #[command(flatten)]
    pub target: ClusterArgs,
    /// How long to wait, in seconds (default: 30 locally, 120 in Kubernetes).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Local files answer at once: poll often, so the reported time is the
/// hand-over's, not the poll's.
const POLL: Duration = Duration::from_millis(10);

/// A switchover to `to` (or the best replica), waited for
/// ([`pgcluster_ha::ops::switchover`], the code Kubernetes mode runs too).
pub async fn request_and_wait(
    layout: &Layout,
    record: &ClusterRecord,
    to: Option<&str>,
    timeout: Duration,
) -> Result<Handover, CliError> {
    send_and_wait(layout, record, to, false, timeout).await
}

/// A switchover (`forced` false) or a forced failover to `to` (`forced`
/// true: refused while the primary lives; once its lease expired, `to`
/// takes over even when it does not rank first), on the local coordinator.
pub async fn send_and_wait(
    layout: &Layout,
    record: &ClusterRecord,
    to: Option<&str>,
    forced: bool,
    timeout: Duration,
) -> Result<Handover, CliError> {
    let coord = cluster::coordinator(layout, Duration::from_secs(2)).map_err(|e| fail(&e))?;
    let id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let wait = Wait {
        poll: POLL,
        timeout,
    };
    let result = match (forced, to) {
        (true, Some(to)) => ops::failover(&coord, to, id, wait).await,
        _ => ops::switchover(&coord, to, id, wait).await,
    };
    match result {
        Ok(done) => Ok(done),
        Err(e) if e.is_usage() => Err(CliError::Invalid(format!(
            "{e} (cluster {}; see `pgcluster status`)",
            record.name
        ))),
        // The target's agent may say why it did not take over.
        Err(OpsError::Refused {
            operation: "fail over",
            reason,
            target_held: false,
        }) => {
            let target = to.unwrap_or_default();
            let said = target_note(record, target).await.map_or_else(
                || format!("{target} gave no reason (was its agent running and responsive?)"),
                |note| format!("{target} says: {note}"),
            );
            Err(CliError::Failed(format!(
                "failed to fail over to {target}: {reason}; {said}. See `pgcluster status` and {}",
                layout.agent_log(target).display()
            )))
        }
        Err(e) => Err(CliError::Failed(format!(
            "{e}; see `pgcluster status` and the agent logs in {}",
            layout.root().join("members").display()
        ))),
    }
}

/// What `target`'s agent says about the request (its `/status` note).
async fn target_note(record: &ClusterRecord, target: &str) -> Option<String> {
    super::status::agent_status(record.member(target)?.api_port)
        .await?
        .note
}

/// Runs the switchover and prints the result.
pub fn exec(args: Args) -> Result<(), CliError> {
    let target = match args.target.route() {
        Route::Kube(target) => {
            let timeout = Duration::from_secs(args.timeout.unwrap_or(120));
            let new = kube::switchover(&target, args.to.as_deref(), timeout)?;
            println!("switchover done: the primary is now {new}");
            return Ok(());
        }
        Route::Local(target) => target,
    };
    let layout = target.layout()?;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    require_running(&layout, &record)?;
    let done = runtime()?.block_on(request_and_wait(
        &layout,
        &record,
        args.to.as_deref(),
        Duration::from_secs(args.timeout.unwrap_or(30)),
    ))?;
    println!(
        "switchover done: {} -> {} in {} ms",
        done.from.as_ref().map_or("-", |m| m.as_str()),
        done.to,
        done.took.as_millis()
    );
    Ok(())
}
