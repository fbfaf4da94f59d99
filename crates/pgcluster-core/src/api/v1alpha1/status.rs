use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a cluster, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresClusterStatus {
    /// Coarse lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,
    /// Name of the instance currently holding the leader lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Term of the leader lease (increases with every failover or switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_term: Option<u64>,
    /// Every instance as its agent last reported it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// Ready, Available, Degraded, Progressing and SpecWarnings (valid choices with a cost, e.g. sync + block with 2 instances).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The most recent failover or switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// Digest of what the roles, databases and grants were last applied
    /// from (spec, credentials, primary and lease term): the SQL runs again
    /// only when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_applied: Option<String>,
}

/// Coarse lifecycle phase of a cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterPhase {
    /// Objects are being created; no primary yet.
    Creating,
    /// A primary serves and every instance is ready.
    Healthy,
    /// A primary serves but some instance is not ready.
    Degraded,
    /// A failover or switchover is under way.
    FailingOver,
    /// No primary is serving.
    Unavailable,
    /// The spec is invalid; see the Ready condition.
    Invalid,
}

/// One instance as its agent reported it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Instance (pod) name.
    pub name: String,
    /// `primary`, `replica` or `unknown`.
    pub role: String,
    /// Whether the instance serves its role.
    pub ready: bool,
    /// Current WAL position (flushed on a primary, replayed on a replica), e.g. `0/3000148`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// Bytes of WAL the replica has not replayed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// PostgreSQL timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
}

/// A past change of primary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// `failover` (lease expired) or `switchover` (requested).
    pub kind: String,
    /// Previous primary, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// New primary.
    pub to: String,
    /// Why it happened.
    pub reason: String,
    /// When it happened (RFC 3339).
    pub time: String,
}
