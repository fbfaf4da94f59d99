use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The endpoints applications and admins connect to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicesSpec {
    /// The read-write endpoint `<name>-rw`, always routed to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rw: Option<EndpointSpec>,
    /// The read-only endpoint `<name>-ro`, routed to the ready replicas. In
    /// Kubernetes it has no endpoint while no replica is ready (it does not
    /// fall back to the primary); local mode's ro port does fall back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ro: Option<EndpointSpec>,
    /// A MetalLB LoadBalancer for clients outside Kubernetes (the internal network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSpec>,
}

/// An in-cluster Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Whether the Service is created (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A LoadBalancer Service announced by MetalLB.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// Whether the LoadBalancer is created (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Fixed address requested from MetalLB (`metallb.io/loadBalancerIPs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// MetalLB address pool to allocate from (`metallb.io/address-pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Which endpoint the LoadBalancer exposes: `rw` (default) or `ro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ServiceEndpoint>,
    /// Address ranges the fixed address must lie in (the MetalLB pool's ranges), as CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ranges: Vec<String>,
    /// Allow public (internet-routable) addresses and source ranges. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public: Option<bool>,
}

/// An in-cluster endpoint a LoadBalancer can expose.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ServiceEndpoint {
    /// The primary.
    #[default]
    Rw,
    /// The replicas (the primary when no replica is ready).
    Ro,
}

/// Address ranges of the Kubernetes cluster itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Pod CIDR (default `10.42.0.0/16`, K3s's default). In-cluster clients
    /// reach PostgreSQL from these addresses, so pg_hba admits them for pod rules
    /// while NetworkPolicies narrow them to the allowed namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// Service CIDR (default `10.43.0.0/16`, K3s's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
}
