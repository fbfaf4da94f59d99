//! `pgcluster kube status|switchover|failover NAME`: the local-mode commands
//! against a PostgresCluster in Kubernetes (current kubeconfig context or
//! `--context`, namespace `-n`). The logic lives in
//! `pgcluster_k8s::client_ops`; this module parses and prints.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgcluster_k8s::client_ops::MemberRole;
use pgcluster_k8s::client_ops::{self, ClusterReport};

use super::apply::ops_error;
use crate::CliError;

/// Arguments of `pgcluster kube`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The operation.
    #[command(subcommand)]
    pub command: KubeCommand,
}

/// Where the cluster is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The PostgresCluster's name.
    pub name: String,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
}

/// Operations on a cluster in Kubernetes.
#[derive(Debug, clap::Subcommand)]
pub enum KubeCommand {
    /// Show the cluster: phase, conditions, and each instance's role, state, timeline, LSN and lag.
    Status {
        /// The cluster.
        #[command(flatten)]
        target: Target,
    },
    /// Move the primary role to a caught-up replica without losing writes.
    Switchover {
        /// The cluster.
        #[command(flatten)]
        target: Target,
        /// The instance to promote (default: the best replica).
        #[arg(long, value_name = "INSTANCE")]
        to: Option<String>,
        /// How long to wait, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Force INSTANCE to become primary when the primary is gone (refused while it is healthy).
    Failover {
        /// The cluster.
        #[command(flatten)]
        target: Target,
        /// The instance to promote.
        #[arg(long, value_name = "INSTANCE")]
        to: String,
        /// How long to wait, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
}

fn request_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The status table (the same columns as local mode's).
pub fn render(report: &ClusterReport) -> String {
    let status = report.cluster.status.clone().unwrap_or_default();
    let mut out = format!(
        "cluster {}  phase {}  primary {}  term {}\n",
        client_ops::display_name(&report.cluster),
        status
            .phase
            .map_or_else(|| "-".to_owned(), |p| format!("{p:?}")),
        status.primary.as_deref().unwrap_or("-"),
        status
            .lease_term
            .map_or_else(|| "-".to_owned(), |t| t.to_string()),
    );
    for c in &status.conditions {
        out.push_str(&format!(
            "  {:<12} {:<6} {}: {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    let primary_lsn = report.view.lease.as_ref().map(|l| l.record.primary_lsn);
    out.push_str(&format!(
        "\n{:<16} {:<9} {:<8} {:>8} {:>14} {:>12}\n",
        "INSTANCE", "ROLE", "HEALTHY", "TIMELINE", "LSN", "LAG"
    ));
    for (name, m) in &report.view.members {
        let role = match m.role {
            MemberRole::Primary => "primary",
            MemberRole::Replica => "replica",
            MemberRole::Starting => "starting",
            MemberRole::Stopped => "stopped",
            MemberRole::Refused => "refused",
        };
        let lag = match (m.role, primary_lsn) {
            (MemberRole::Replica, Some(p)) => p.0.saturating_sub(m.replayed_lsn.0).to_string(),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<16} {:<9} {:<8} {:>8} {:>14} {:>12}\n",
            name.as_str(),
            role,
            if m.healthy { "yes" } else { "no" },
            m.timeline.0,
            m.replayed_lsn.to_string(),
            lag
        ));
    }
    out
}

/// Runs the subcommand.
pub fn exec(args: Args) -> Result<(), CliError> {
    client_ops::block_on(async {
        let target = match &args.command {
            KubeCommand::Status { target }
            | KubeCommand::Switchover { target, .. }
            | KubeCommand::Failover { target, .. } => target,
        };
        let (client, default_ns) = client_ops::connect(target.context.as_deref())
            .await
            .map_err(|e| ops_error(&e))?;
        let ns = target.namespace.clone().unwrap_or(default_ns);
        match &args.command {
            KubeCommand::Status { target } => {
                let report = client_ops::status(&client, &ns, &target.name)
                    .await
                    .map_err(|e| ops_error(&e))?;
                print!("{}", render(&report));
            }
            KubeCommand::Switchover {
                target,
                to,
                timeout,
            } => {
                let new = client_ops::switchover(
                    &client,
                    &ns,
                    &target.name,
                    to.as_deref(),
                    request_id(),
                    Duration::from_secs(*timeout),
                )
                .await
                .map_err(|e| ops_error(&e))?;
                println!("switchover done: the primary is now {new}");
            }
            KubeCommand::Failover {
                target,
                to,
                timeout,
            } => {
                let new = client_ops::failover(
                    &client,
                    &ns,
                    &target.name,
                    to,
                    request_id(),
                    Duration::from_secs(*timeout),
                )
                .await
                .map_err(|e| ops_error(&e))?;
                println!("failover done: the primary is now {new}");
            }
        }
        Ok(())
    })
}
