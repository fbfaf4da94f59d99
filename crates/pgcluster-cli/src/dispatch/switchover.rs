//! `pgcluster switchover [NAME] [--to I]`: asks the primary (through the
//! coordinator) to hand the primary role to a caught-up replica without
//! losing any acknowledged write, waits, and reports how long it took.
//! Without NAME the local cluster; with NAME a PostgresCluster in Kubernetes
//! (the request goes on its leader Lease, see [`super::kube`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgcluster_ha::coordinator::Coordinator;
use pgcluster_ha::local::cluster;
use pgcluster_ha::local::layout::{ClusterRecord, Layout};
use pgcluster_ha::machine::{MemberName, MemberRole, SwitchoverRequest};

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

/// What happened.
#[derive(Debug, Clone)]
pub struct Handover {
    /// The primary before.
    pub from: Option<String>,
    /// The primary after.
    pub to: String,
    /// From the request until the new primary published itself as primary.
    pub took: Duration,
}

/// Writes a switchover request naming `to` and waits until a member other
/// than the current holder (or `to`) holds the lease and runs as primary.
pub async fn request_and_wait(
    layout: &Layout,
    record: &ClusterRecord,
    to: Option<&str>,
    timeout: Duration,
) -> Result<Handover, CliError> {
    send_and_wait(layout, record, to, false, timeout).await
}

/// [`request_and_wait`] for a switchover (`forced` false) or a forced
/// failover to `to` (`forced` true: once the lease expired, `to` takes it
/// over even when it does not rank first).
pub async fn send_and_wait(
    layout: &Layout,
    record: &ClusterRecord,
    to: Option<&str>,
    forced: bool,
    timeout: Duration,
) -> Result<Handover, CliError> {
    if let Some(t) = to
        && record.member(t).is_none()
    {
        let names: Vec<&str> = record.members.iter().map(|m| m.name.as_str()).collect();
        return Err(CliError::Invalid(format!(
            "{t} is not an instance of cluster {}; instances: {}",
            record.name,
            names.join(", ")
        )));
    }
    let coord = cluster::coordinator(layout, Duration::from_secs(2)).map_err(|e| fail(&e))?;
    let view = coord.read_now().map_err(|e| fail(&e))?;
    let from = view
        .lease
        .as_ref()
        .and_then(|l| l.record.holder.as_ref().map(|h| h.to_string()));
    if to.is_some() && from.as_deref() == to {
        return Err(CliError::Invalid(format!(
            "{} is already the primary",
            to.unwrap_or_default()
        )));
    }
    let id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let started = Instant::now();
    coord
        .request_switchover(SwitchoverRequest {
            id,
            target: to.map(MemberName::from),
            forced,
        })
        .await
        .map_err(|e| fail(&e))?;
    let mut seen_pending = true;
    // Whether the target held the lease at some point (then lost it).
    let mut target_held = false;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let view = coord.read_now().map_err(|e| fail(&e))?;
        let holder = view
            .lease
            .as_ref()
            .and_then(|l| l.record.holder.as_ref().map(|h| h.to_string()));
        if let Some(h) = &holder
            && Some(h) != from.as_ref()
            && to.is_none_or(|t| t == h)
            && view
                .members
                .get(&MemberName::new(h.clone()))
                .is_some_and(|m| m.role == MemberRole::Primary && m.healthy)
        {
            return Ok(Handover {
                from,
                to: h.clone(),
                took: started.elapsed(),
            });
        }
        target_held |= to.is_some() && holder.as_deref() == to;
        let pending = view.switchover.as_ref().is_some_and(|r| r.id == id);
        // A forced failover's target clears it when it refuses, and the
        // lease may then go to someone else.
        if !pending && seen_pending && (holder == from || (forced && holder.as_deref() != to)) {
            // The primary (or the target) cleared our request without handing over: refused.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let again = coord.read_now().map_err(|e| fail(&e))?;
            let still = again
                .lease
                .as_ref()
                .and_then(|l| l.record.holder.as_ref().map(|h| h.to_string()));
            if forced && still.as_deref() != to {
                let target = to.unwrap_or_default();
                let why = if target_held {
                    "it took the lease but lost it before serving as primary".to_owned()
                } else {
                    match target_note(record, target).await {
                        Some(note) => note,
                        // No reason given: it never judged the request,
                        // so another member took the expired lease first.
                        None => format!(
                            "another member took the expired lease before {target} did \
                             ({target} gave no reason: was its agent running and \
                             responsive? It must be a replica of the cluster's data and \
                             lineage, and in sync mode a synchronous standby)"
                        ),
                    }
                };
                return Err(CliError::Other(anyhow::anyhow!(
                    "failed to fail over to {target}: {why}; the lease is now held by {}. See \
                     `pgcluster status` and {}",
                    still.as_deref().unwrap_or("nobody"),
                    layout.agent_log(target).display()
                )));
            }
            if still == from {
                return Err(CliError::Other(anyhow::anyhow!(
                    "failed to switch over: the primary {} refused the request (the target must be a \
                     healthy replica streaming from it); see `pgcluster status`",
                    from.as_deref().unwrap_or("-")
                )));
            }
        }
        seen_pending = pending || seen_pending;
        if started.elapsed() > timeout {
            let _ = coord.clear_switchover(id).await;
            return Err(CliError::Other(anyhow::anyhow!(
                "failed to switch over within {timeout:?}; the request was withdrawn; see `pgcluster status` and the agent logs in {}",
                layout.root().join("members").display()
            )));
        }
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
        done.from.as_deref().unwrap_or("-"),
        done.to,
        done.took.as_millis()
    );
    Ok(())
}
