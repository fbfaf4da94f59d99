use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AccessRule, DatabaseSpec, FailoverSpec, MonitoringSpec, NetworkSpec, PostgresClusterStatus,
    PostgresSpec, ReplicationSpec, ResourcesSpec, RoleSpec, ServicesSpec, StorageSpec,
};

/// Desired state of a highly available PostgreSQL cluster: one primary and
/// `instances - 1` streaming replicas with automatic failover.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "pgcluster.dev",
    version = "v1alpha1",
    kind = "PostgresCluster",
    plural = "postgresclusters",
    shortname = "pgc",
    namespaced,
    derive = "PartialEq",
    status = "PostgresClusterStatus",
    printcolumn = r#"{"name":"Instances","type":"integer","jsonPath":".spec.instances"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresClusterSpec {
    /// Number of PostgreSQL instances: one primary plus `instances - 1` streaming replicas (1 to 9, default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// PostgreSQL version, container image and server parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// Persistent storage of each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// CPU and memory requests and limits of each PostgreSQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Streaming replication mode and the failover eligibility of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,
    /// Leader lease and loop timings that bound failover time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
    /// The rw, ro and LoadBalancer endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesSpec>,
    /// Who may connect, through which endpoint, to which databases as which roles.
    /// Rendered consistently into NetworkPolicies, LoadBalancer source ranges and pg_hba.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessRule>,
    /// Application databases created and owned by declared roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseSpec>,
    /// Application roles (least privilege); passwords live only in generated Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleSpec>,
    /// The Kubernetes network the cluster lives in (K3s defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Prometheus ServiceMonitor, alert rules and Grafana dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}
