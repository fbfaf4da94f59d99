//! [`ValidatedCluster`]: a spec that passed validation, with every default
//! resolved and every value parsed into its type. Builders, the agent and the
//! controller take only this, so none of them re-parses or guesses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::access::AccessModel;
use crate::api::v1alpha1::{
    NoStandbyPolicy, PostgresCluster, PostgresClusterSpec, Privileges, ReplicationMode,
    RetentionPolicy, ServiceEndpoint,
};
use crate::names::ClusterName;
use crate::timing::FailoverTimings;

/// A cluster spec that passed validation, fully resolved. Only
/// [`validate`](crate::validate::validate) makes one and nothing changes it
/// afterwards (its fields are private), so holding one proves the spec was
/// checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCluster {
    /// Cluster name (DNS-1123, short enough for every derived object name).
    pub(crate) name: ClusterName,
    /// Namespace of the cluster object.
    pub(crate) namespace: String,
    /// The user's spec with every default filled in (what `resolve` returns).
    pub(crate) resolved_spec: PostgresClusterSpec,
    /// Number of instances (1..=9).
    pub(crate) instances: u32,
    /// PostgreSQL settings.
    pub(crate) postgres: ResolvedPostgres,
    /// Storage of each instance.
    pub(crate) storage: ResolvedStorage,
    /// Container resources.
    pub(crate) resources: ResolvedResources,
    /// Replication behaviour.
    pub(crate) replication: ResolvedReplication,
    /// HA loop timings (already checked by [`FailoverTimings::check`]).
    pub(crate) timings: FailoverTimings,
    /// Whether replicas take over automatically on lease expiry.
    pub(crate) automatic_failover: bool,
    /// Endpoints.
    pub(crate) services: ResolvedServices,
    /// The access model every rendering (NetworkPolicy, LB source ranges, pg_hba) derives from.
    pub(crate) access: AccessModel,
    /// Application databases, in spec order.
    pub(crate) databases: Vec<ResolvedDatabase>,
    /// Application roles, in spec order.
    pub(crate) roles: Vec<ResolvedRole>,
    /// Kubernetes network ranges.
    pub(crate) network: ResolvedNetwork,
    /// Monitoring objects to render.
    pub(crate) monitoring: ResolvedMonitoring,
}

impl ValidatedCluster {
    /// Cluster name (DNS-1123, short enough for every derived object name).
    pub fn name(&self) -> &ClusterName {
        &self.name
    }
    /// Namespace of the cluster object.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The user's spec with every default filled in.
    pub fn resolved_spec(&self) -> &PostgresClusterSpec {
        &self.resolved_spec
    }
    /// Number of instances (1..=9).
    pub fn instances(&self) -> u32 {
        self.instances
    }
    /// PostgreSQL settings.
    pub fn postgres(&self) -> &ResolvedPostgres {
        &self.postgres
    }
    /// Storage of each instance.
    pub fn storage(&self) -> &ResolvedStorage {
        &self.storage
    }
    /// Container resources.
    pub fn resources(&self) -> &ResolvedResources {
        &self.resources
    }
    /// Replication behaviour.
    pub fn replication(&self) -> ResolvedReplication {
        self.replication
    }
    /// HA loop timings (already checked by [`FailoverTimings::check`]).
    pub fn timings(&self) -> FailoverTimings {
        self.timings
    }
    /// Whether replicas take over automatically on lease expiry.
    pub fn automatic_failover(&self) -> bool {
        self.automatic_failover
    }
    /// Endpoints.
    pub fn services(&self) -> &ResolvedServices {
        &self.services
    }
    /// The access model every rendering (NetworkPolicy, LB source ranges, pg_hba) derives from.
    pub fn access(&self) -> &AccessModel {
        &self.access
    }
    /// Application databases, in spec order.
    pub fn databases(&self) -> &[ResolvedDatabase] {
        &self.databases
    }
    /// Application roles, in spec order.
    pub fn roles(&self) -> &[ResolvedRole] {
        &self.roles
    }
    /// Kubernetes network ranges.
    pub fn network(&self) -> &ResolvedNetwork {
        &self.network
    }
    /// Monitoring objects to render.
    pub fn monitoring(&self) -> &ResolvedMonitoring {
        &self.monitoring
    }

    /// Valid choices whose consequence the user should read (never errors).
    pub fn warnings(&self) -> Vec<crate::validate::ValidationWarning> {
        crate::validate::warnings(self)
    }

    /// The cluster as a `PostgresCluster` with every default filled in:
    /// what the agents in Kubernetes read from the cluster's ConfigMap.
    /// Validating it again gives the same value.
    pub fn resolved_object(&self) -> PostgresCluster {
        let mut object = PostgresCluster::new(self.name.as_str(), self.resolved_spec.clone());
        object.metadata.namespace = Some(self.namespace.clone());
        object
    }

    /// The resolved object as YAML (see [`ValidatedCluster::resolved_object`]).
    pub fn resolved_yaml(&self) -> String {
        serde_norway::to_string(&self.resolved_object())
            .expect("a PostgresCluster serializes to YAML: every map in it has string keys")
    }
}

/// PostgreSQL version, image and user parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedPostgres {
    /// Major version.
    pub version: u32,
    /// Container image.
    pub image: String,
    /// User parameters (none of them managed by pgcluster).
    pub parameters: BTreeMap<String, String>,
}

/// Storage of each instance.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedStorage {
    /// Size as the user wrote it (a valid quantity), e.g. `10Gi`.
    pub size: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// StorageClass name.
    pub storage_class: String,
    /// Whether volumes outlive the cluster.
    pub retention: RetentionPolicy,
}

/// Requests and limits; `None` means not set.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ResolvedResources {
    /// CPU request (quantity string, valid).
    pub requests_cpu: Option<String>,
    /// Memory request (quantity string, valid).
    pub requests_memory: Option<String>,
    /// CPU limit.
    pub limits_cpu: Option<String>,
    /// Memory limit.
    pub limits_memory: Option<String>,
}

/// Replication behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedReplication {
    /// async or sync.
    pub mode: ReplicationMode,
    /// Sync mode without a healthy standby: block or fall back to async.
    pub when_no_standby: NoStandbyPolicy,
    /// Largest lag (bytes) a replica may have and still be promoted automatically.
    pub max_failover_lag_bytes: u64,
}

/// Which Services exist.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedServices {
    /// `<name>-rw` exists.
    pub rw: bool,
    /// `<name>-ro` exists.
    pub ro: bool,
    /// The LoadBalancer, when enabled.
    pub load_balancer: Option<ResolvedLoadBalancer>,
}

/// An enabled MetalLB LoadBalancer.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedLoadBalancer {
    /// Fixed address, if requested.
    pub address: Option<IpAddr>,
    /// MetalLB pool, if named.
    pub pool: Option<String>,
    /// Which endpoint it exposes.
    pub endpoint: ServiceEndpoint,
    /// Ranges the address was checked against.
    pub allowed_ranges: Vec<IpNet>,
    /// Public addresses explicitly allowed.
    pub allow_public: bool,
}

/// An application database.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedDatabase {
    /// Name.
    pub name: String,
    /// Owning role.
    pub owner: String,
    /// Extensions to create.
    pub extensions: Vec<String>,
}

/// An application role.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedRole {
    /// Name.
    pub name: String,
    /// Privileges on databases it does not own: database name to level.
    pub grants: BTreeMap<String, Privileges>,
    /// Connection limit (-1 = none).
    pub connection_limit: i32,
}

/// Kubernetes network ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedNetwork {
    /// Pod CIDR.
    pub pod_cidr: IpNet,
    /// Service CIDR.
    pub service_cidr: IpNet,
}

/// Monitoring objects to render.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedMonitoring {
    /// Any monitoring at all.
    pub enabled: bool,
    /// Namespace of Prometheus (allowed to scrape).
    pub namespace: String,
    /// Render a ServiceMonitor.
    pub service_monitor: bool,
    /// Render a PrometheusRule.
    pub prometheus_rule: bool,
    /// Render a Grafana dashboard ConfigMap.
    pub grafana_dashboard: bool,
    /// Extra labels on monitoring objects.
    pub labels: BTreeMap<String, String>,
    /// Scrape interval.
    pub interval: Duration,
}
