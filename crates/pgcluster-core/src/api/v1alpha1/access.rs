use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One access rule: who may connect, through which endpoints, to which databases as which roles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    /// Rule name, shown by `pgcluster access explain` and in rendered object names.
    pub name: String,
    /// The clients this rule admits.
    pub from: AccessSource,
    /// Endpoints the clients may use: `rw`, `ro`, `loadBalancer` (default `[rw]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<AccessEndpoint>,
    /// Databases the clients may connect to; each must be declared in `spec.databases`.
    pub databases: Vec<String>,
    /// Roles the clients may connect as; each must be declared in `spec.roles`.
    pub roles: Vec<String>,
}

/// Clients inside the cluster (namespaces, pod labels) or on the internal network (CIDRs).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessSource {
    /// Kubernetes namespaces whose pods may connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only pods with these labels (within `namespaces`, or the cluster's own namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Address ranges on the internal network, as CIDRs. Public ranges need `allowPublic`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
    /// Allow public (internet-routable) ranges in `cidrs`. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public: Option<bool>,
}

/// An endpoint an access rule admits clients through.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AccessEndpoint {
    /// The read-write Service `<name>-rw`.
    Rw,
    /// The read-only Service `<name>-ro`.
    Ro,
    /// The MetalLB LoadBalancer.
    LoadBalancer,
}
