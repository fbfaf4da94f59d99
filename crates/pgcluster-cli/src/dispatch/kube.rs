//! Kubernetes mode of `pgcluster status|switchover|failover NAME`: which
//! cluster a command addresses (a positional NAME means a PostgresCluster in
//! Kubernetes, none means the local cluster), and the calls into
//! `pgcluster_k8s::client_ops`, where the logic lives. The same commands run
//! as `kubectl pgcluster ...` (see [`crate::parse_from`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgcluster_core::names::ClusterName;
use pgcluster_ha::machine::MemberName;
use pgcluster_k8s::build::{AGENT_PORT, POSTGRES_PORT};
use pgcluster_k8s::client_ops::{self, ClusterReport, MemberRole, PodInfo};

use super::local;
use super::status::{ClusterStatus, ConditionStatus, InstanceStatus, Mode};
use crate::CliError;

/// Which cluster: NAME in Kubernetes, or the local cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// A PostgresCluster in Kubernetes (current kubeconfig context); without it, the local cluster.
    #[arg(value_name = "NAME")]
    pub cluster: Option<String>,
    /// Namespace of NAME (default: the kubeconfig context's).
    #[arg(short = 'n', long, requires = "cluster")]
    pub namespace: Option<String>,
    /// kubeconfig context for NAME (default: the current one).
    #[arg(long, requires = "cluster")]
    pub context: Option<String>,
    /// Local mode: the cluster's data directory (default: the running cluster's, see --name).
    #[arg(long, value_name = "DIR", env = "PGCLUSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Local mode: the cluster's name, to find its default data directory (default: the one
    /// local cluster that is running; refused when several are).
    #[arg(long = "name", value_name = "LOCAL_NAME", conflicts_with = "cluster")]
    pub local_name: Option<String>,
}

/// A PostgresCluster in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeTarget {
    /// The object's name.
    pub name: String,
    /// `-n`, else the context's default namespace.
    pub namespace: Option<String>,
    /// `--context`, else the current context.
    pub context: Option<String>,
}

/// Where a command goes.
#[derive(Debug, Clone)]
pub enum Route {
    /// A PostgresCluster in Kubernetes.
    Kube(KubeTarget),
    /// A local cluster (`pgcluster up`).
    Local(local::Target),
}

impl ClusterArgs {
    /// NAME present: Kubernetes; absent: the local cluster.
    pub fn route(&self) -> Route {
        match &self.cluster {
            Some(name) => Route::Kube(KubeTarget {
                name: name.clone(),
                namespace: self.namespace.clone(),
                context: self.context.clone(),
            }),
            None => Route::Local(local::Target {
                data_dir: self.data_dir.clone(),
                name: self.local_name.clone(),
            }),
        }
    }
}

fn request_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Connects to `target`'s context and runs `op` with the client and namespace.
fn with_client<T, F>(
    target: &KubeTarget,
    op: impl FnOnce(kube::Client, String) -> F,
) -> Result<T, CliError>
where
    F: Future<Output = Result<T, client_ops::OpsError>>,
{
    client_ops::block_on(async {
        let (client, default_ns) = client_ops::connect(target.context.as_deref())
            .await
            .map_err(CliError::from)?;
        let ns = target.namespace.clone().unwrap_or(default_ns);
        op(client, ns).await.map_err(CliError::from)
    })
}

/// `pgcluster status NAME`: the object, the Lease and the pods.
pub fn status(target: &KubeTarget) -> Result<ClusterStatus, CliError> {
    let report = with_client(target, |client, ns| async move {
        client_ops::status(&client, &ns, &target.name).await
    })?;
    Ok(status_of(&report))
}

/// `pgcluster switchover NAME [--to I]`; returns the new primary.
pub fn switchover(
    target: &KubeTarget,
    to: Option<&str>,
    timeout: Duration,
) -> Result<String, CliError> {
    with_client(target, |client, ns| async move {
        client_ops::switchover(&client, &ns, &target.name, to, request_id(), timeout).await
    })
}

/// `pgcluster failover NAME --to I` (refused while the primary is healthy); returns the new primary.
pub fn failover(target: &KubeTarget, to: &str, timeout: Duration) -> Result<String, CliError> {
    with_client(target, |client, ns| async move {
        client_ops::failover(&client, &ns, &target.name, to, request_id(), timeout).await
    })
}

fn role_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Primary => "primary",
        MemberRole::Replica => "replica",
        MemberRole::Starting => "starting",
        MemberRole::Stopped => "stopped",
        MemberRole::Refused => "refused",
    }
}

/// The status rows of a Kubernetes cluster, in the local mode's shape: one
/// row per instance pod (and per member whose pod is gone); PIDs are absent,
/// the pod and its node are given instead; ports are the pods' (PostgreSQL
/// 5432, agent 8008) and the rw/ro endpoints are the Services.
pub fn status_of(report: &ClusterReport) -> ClusterStatus {
    let cluster = &report.cluster;
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let status = cluster.status.clone().unwrap_or_default();
    let view = &report.view;
    let lease = view.lease.as_ref();
    let holder = lease.and_then(|l| l.record.holder.clone());
    // The primary's own flushed position when it publishes one, else the lease's.
    let primary_lsn = holder
        .as_ref()
        .and_then(|h| view.members.get(h))
        .filter(|m| m.role == MemberRole::Primary)
        .map(|m| m.flushed_lsn)
        .or_else(|| lease.map(|l| l.record.primary_lsn));
    let mut names: Vec<String> = report.pods.iter().map(|p| p.name.clone()).collect();
    for member in view.members.keys() {
        if !names.iter().any(|n| n == member.as_str()) {
            names.push(member.to_string());
        }
    }
    names.sort();
    let instances = names
        .iter()
        .map(|n| {
            let pod: Option<&PodInfo> = report.pods.iter().find(|p| &p.name == n);
            let member = view.members.get(&MemberName::from(n.as_str()));
            let state = pod.map_or_else(|| "no pod".to_owned(), |p| p.phase.clone());
            match member {
                Some(m) => {
                    let lsn = if m.role == MemberRole::Primary {
                        m.flushed_lsn
                    } else {
                        m.received_lsn.max(m.replayed_lsn)
                    };
                    InstanceStatus {
                        instance: n.clone(),
                        role: role_name(m.role).to_owned(),
                        state,
                        ready: m.healthy && pod.is_some_and(|p| p.ready),
                        timeline: m.timeline.0,
                        lsn: lsn.to_string(),
                        lag_bytes: match (m.role, primary_lsn) {
                            (MemberRole::Replica, Some(p)) => p.0.saturating_sub(m.replayed_lsn.0),
                            _ => 0,
                        },
                        agent_pid: None,
                        postgres_pid: None,
                        pg_port: port(POSTGRES_PORT),
                        api_port: port(AGENT_PORT),
                        following: m.following.as_ref().map(MemberName::to_string),
                        pod: pod.map(|p| p.name.clone()),
                        node: pod.and_then(|p| p.node.clone()),
                        restarts: None,
                    }
                }
                // No state published: the agent has not started (or its pod is new).
                None => InstanceStatus {
                    instance: n.clone(),
                    role: "down".to_owned(),
                    state,
                    ready: false,
                    timeline: 0,
                    lsn: "-".to_owned(),
                    lag_bytes: 0,
                    agent_pid: None,
                    postgres_pid: None,
                    pg_port: port(POSTGRES_PORT),
                    api_port: port(AGENT_PORT),
                    following: None,
                    pod: pod.map(|p| p.name.clone()),
                    node: pod.and_then(|p| p.node.clone()),
                    restarts: None,
                },
            }
        })
        .collect();
    let service = |suffix: fn(&ClusterName) -> String| {
        ClusterName::new(&name)
            .ok()
            .map(|c| format!("{}.{namespace}.svc:{POSTGRES_PORT}", suffix(&c)))
    };
    ClusterStatus {
        mode: Mode::Kubernetes,
        name: name.clone(),
        state: None,
        namespace: Some(namespace.clone()),
        phase: status.phase.map(|p| format!("{p:?}")),
        data_dir: None,
        rw_endpoint: service(ClusterName::rw_service),
        ro_endpoint: service(ClusterName::ro_service),
        rw_port: port(POSTGRES_PORT),
        ro_port: port(POSTGRES_PORT),
        lease_holder: holder.map(|h| h.to_string()),
        lease_term: lease.map_or(0, |l| l.record.term),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionStatus {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        instances,
    }
}

fn port(p: i32) -> u16 {
    u16::try_from(p).expect("pgcluster's container ports are constants below 65536")
}
