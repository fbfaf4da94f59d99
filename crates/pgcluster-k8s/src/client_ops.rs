//! The CLI's operations against a Kubernetes cluster (`pgcluster apply`,
//! and `status` / `switchover` / `failover` in Kubernetes mode): library code
//! so the CLI stays wiring only. Tested only through tower-test mocks.
//!
//! - [`apply`]: server-side apply of a validated `PostgresCluster` with the
//!   field manager [`CLI_FIELD_MANAGER`] (not the controller's: a person's
//!   apply owns the spec, the controller owns what it derives from it).
//! - [`wait_ready`]: polls the object until its Ready condition is True for
//!   the applied generation, reporting each change, or gives the reason.
//! - [`status`]: the object's status plus the live view from the Lease and
//!   the pods (what `pgcluster status` shows in local mode).
//! - [`switchover`] / [`failover`]: pgcluster-ha's [`ops`] (the same code
//!   local mode runs) over the [`KubeLeaseCoordinator`]: the request goes in
//!   the Lease's [`ANNOTATION_SWITCHOVER`](crate::lease::ANNOTATION_SWITCHOVER)
//!   annotation, which every agent reads with the Lease.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use pgcluster_core::api::v1alpha1::{PostgresCluster, PostgresClusterStatus};
use pgcluster_core::names::ClusterName;
use pgcluster_ha::coordinator::CoordinatorError;
use pgcluster_ha::machine::ClusterView;
use pgcluster_ha::ops::{self, Wait};

use crate::lease::KubeLeaseCoordinator;

pub use pgcluster_ha::machine::MemberRole;

/// Field manager of `pgcluster apply`.
pub const CLI_FIELD_MANAGER: &str = "pgcluster-cli";

/// A failed cluster operation.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The object has no name or namespace.
    #[error("failed to address the cluster: {what} is missing")]
    Incomplete {
        /// What is missing.
        what: &'static str,
    },
    /// An API call failed.
    #[error("failed to {action} PostgresCluster {name}")]
    Api {
        /// What was attempted.
        action: &'static str,
        /// The cluster.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The coordinator (Lease) call failed.
    #[error("failed to {action} through the leader Lease of {name}")]
    Coordinator {
        /// What was attempted.
        action: &'static str,
        /// The cluster.
        name: String,
        /// The coordinator's error.
        #[source]
        source: CoordinatorError,
    },
    /// A switchover or failover was refused, timed out or could not be
    /// requested (pgcluster-ha's [`ops`], shared with local mode).
    #[error(transparent)]
    Operation(#[from] pgcluster_ha::ops::OpsError),
    /// The wait ran out of time.
    #[error("timed out after {waited:?}: {reason}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// Why the cluster is not there yet.
        reason: String,
    },
    /// No usable kubeconfig or in-cluster configuration.
    #[error("failed to load a Kubernetes configuration: {reason}")]
    Connect {
        /// Why (the kubeconfig loader's message).
        reason: String,
    },
    /// The cluster name is not valid.
    #[error("failed to use cluster name {name}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl OpsError {
    /// A bounded category (exit-code mapping, metrics).
    pub fn category(&self) -> &'static str {
        match self {
            OpsError::Incomplete { .. } | OpsError::InvalidName { .. } => "invalid",
            OpsError::Connect { .. } => "connect",
            OpsError::Api { .. } => "api",
            OpsError::Coordinator { .. } => "coordinator",
            OpsError::Operation(e) => e.category(),
            OpsError::Timeout { .. } => "timeout",
        }
    }
}

/// Server-side applies `cluster` (already validated by the caller) and
/// returns the stored object (its generation is what [`wait_ready`] waits for).
pub async fn apply(
    client: &Client,
    cluster: &PostgresCluster,
) -> Result<PostgresCluster, OpsError> {
    let name = cluster.metadata.name.clone().ok_or(OpsError::Incomplete {
        what: "metadata.name",
    })?;
    let namespace = cluster
        .metadata
        .namespace
        .clone()
        .ok_or(OpsError::Incomplete {
            what: "metadata.namespace",
        })?;
    let api: Api<PostgresCluster> = Api::namespaced(client.clone(), &namespace);
    let mut object = cluster.clone();
    object.status = None;
    object.metadata.managed_fields = None;
    object.metadata.resource_version = None;
    api.patch(
        &name,
        &PatchParams::apply(CLI_FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|source| OpsError::Api {
        action: "apply",
        name,
        source,
    })
}

/// One line of progress: the phase and the Ready condition's reason and message.
pub fn progress_line(status: Option<&PostgresClusterStatus>) -> String {
    let Some(status) = status else {
        return "waiting for the controller to report status".to_owned();
    };
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    format!(
        "phase {}{}",
        status
            .phase
            .map_or_else(|| "unknown".to_owned(), |p| format!("{p:?}")),
        ready.map_or_else(String::new, |c| format!(" ({}): {}", c.reason, c.message))
    )
}

/// Whether `cluster` is Ready for its current generation.
pub fn is_ready(cluster: &PostgresCluster) -> bool {
    let Some(status) = &cluster.status else {
        return false;
    };
    status.observed_generation >= cluster.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Polls every `every` until `name` is Ready or `timeout` passes; calls
/// `report` with each new progress line.
pub async fn wait_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    every: Duration,
    mut report: impl FnMut(&str),
) -> Result<PostgresCluster, OpsError> {
    let api: Api<PostgresCluster> = Api::namespaced(client.clone(), namespace);
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        let cluster = api.get(name).await.map_err(|source| OpsError::Api {
            action: "read",
            name: name.to_owned(),
            source,
        })?;
        let line = progress_line(cluster.status.as_ref());
        if line != last {
            report(&line);
            last = line;
        }
        if is_ready(&cluster) {
            return Ok(cluster);
        }
        if start.elapsed() >= timeout {
            return Err(OpsError::Timeout {
                waited: timeout,
                reason: last,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// A cluster as `pgcluster status` shows it.
#[derive(Clone, Debug)]
pub struct ClusterReport {
    /// The object (spec and the controller's status).
    pub cluster: PostgresCluster,
    /// The live view: the Lease and every member's published state.
    pub view: ClusterView,
    /// The instance pods, sorted by name.
    pub pods: Vec<PodInfo>,
}

/// What status shows of an instance pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's name (the member's name).
    pub name: String,
    /// The node it is scheduled on.
    pub node: Option<String>,
    /// `Pending`, `Running`, ..., or `Terminating` once deleted.
    pub phase: String,
    /// Its Ready condition is True (the agent's `/readyz`).
    pub ready: bool,
}

impl PodInfo {
    /// The summary of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let phase = if pod.metadata.deletion_timestamp.is_some() {
            "Terminating".to_owned()
        } else {
            status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".to_owned())
        };
        Self {
            name: pod.name_any(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            phase,
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        }
    }
}

fn coordinator(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<KubeLeaseCoordinator, OpsError> {
    let cluster = ClusterName::new(name).map_err(|e| OpsError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(KubeLeaseCoordinator::new(
        client.clone(),
        namespace,
        &cluster,
    ))
}

/// Reads the object and the live view.
pub async fn status(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<ClusterReport, OpsError> {
    let api: Api<PostgresCluster> = Api::namespaced(client.clone(), namespace);
    let cluster = api.get(name).await.map_err(|source| OpsError::Api {
        action: "read",
        name: name.to_owned(),
        source,
    })?;
    let (view, pods) = coordinator(client, namespace, name)?
        .read_view_and_pods()
        .await
        .map_err(|source| OpsError::Coordinator {
            action: "read the cluster view",
            name: name.to_owned(),
            source,
        })?;
    let mut pods: Vec<PodInfo> = pods.iter().map(PodInfo::of).collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ClusterReport {
        cluster,
        view,
        pods,
    })
}

/// How often the CLI re-reads the Lease while it waits (the API server is
/// shared; the agents react within a loop anyway).
const POLL: Duration = Duration::from_millis(500);

fn wait(timeout: Duration) -> Wait {
    Wait {
        poll: POLL,
        timeout,
    }
}

/// Requests a switchover (to `target`, or the best replica) and waits until
/// another member holds the lease and serves as primary
/// ([`pgcluster_ha::ops::switchover`]). `id` identifies the request (e.g. the
/// current time in ms). Returns the new primary.
pub async fn switchover(
    client: &Client,
    namespace: &str,
    name: &str,
    target: Option<&str>,
    id: u64,
    timeout: Duration,
) -> Result<String, OpsError> {
    let coordinator = coordinator(client, namespace, name)?;
    let done = ops::switchover(&coordinator, target, id, wait(timeout)).await?;
    Ok(done.to.to_string())
}

/// A forced failover to `to` ([`pgcluster_ha::ops::failover`]): refused
/// while the primary is healthy. Returns the new primary.
pub async fn failover(
    client: &Client,
    namespace: &str,
    name: &str,
    to: &str,
    id: u64,
    timeout: Duration,
) -> Result<String, OpsError> {
    let coordinator = coordinator(client, namespace, name)?;
    let done = ops::failover(&coordinator, to, id, wait(timeout)).await?;
    Ok(done.to.to_string())
}

/// Connects with the local kubeconfig (optionally another `context`), or the
/// in-cluster configuration; returns the client and the context's default
/// namespace.
pub async fn connect(context: Option<&str>) -> Result<(Client, String), OpsError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..kube::config::KubeConfigOptions::default()
    };
    let config = match kube::Config::from_kubeconfig(&options).await {
        Ok(config) => config,
        Err(_) if context.is_none() => {
            kube::Config::infer().await.map_err(|e| OpsError::Connect {
                reason: e.to_string(),
            })?
        }
        Err(e) => {
            return Err(OpsError::Connect {
                reason: e.to_string(),
            });
        }
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|source| OpsError::Api {
        action: "connect for",
        name: "*".to_owned(),
        source,
    })?;
    Ok((client, namespace))
}

/// Runs `fut` on a new current-thread runtime (the CLI's commands are
/// synchronous; this keeps the runtime out of the CLI crate).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds because it needs no threads beyond this one")
        .block_on(fut)
}

/// `name`'s identifier for messages: `namespace/name`.
pub fn display_name(cluster: &PostgresCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

#[cfg(test)]
mod tests;
