//! Pure builders: [`build`] turns a [`ValidatedCluster`] into a [`Bundle`] of
//! typed Kubernetes objects. One module per resource kind; no I/O, no clock,
//! no randomness, so two builds of the same input are equal.
//!
//! Left out on purpose:
//! - the leader Lease: the agents create and renew it; a rendered Lease would
//!   make a GitOps sync fight the agents over `holderIdentity`;
//! - a config checksum on the pod template: the agent reloads PostgreSQL when
//!   the mounted ConfigMap changes, a restart of every pod would be a needless
//!   failover;
//! - egress NetworkPolicies (see [`network_policy`]);
//! - a CPU limit by default (throttling hurts latency; `spec.resources` can set one);
//! - tolerations, nodeSelector, priorityClassName, imagePullSecrets: the spec
//!   has no fields for them yet;
//! - the controller's own Deployment, ServiceAccount and ClusterRoleBinding: they
//!   are installed once with the controller; [`rbac::controller_cluster_role`]
//!   gives its ClusterRole to whoever renders them.

pub mod config;
pub mod labels;
pub mod monitoring;
pub mod network_policy;
pub mod pdb;
pub mod rbac;
pub mod secrets;
pub mod security;
pub mod services;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use pgcluster_core::ValidatedCluster;
use pgcluster_core::names::ClusterName;

pub use monitoring::{PrometheusRule, ServiceMonitor};

/// Port PostgreSQL listens on in every pod.
pub const POSTGRES_PORT: i32 = 5432;
/// Port of the agent API the members use (`/status`, `/member`,
/// `/failsafe`): only the cluster's own pods may reach it.
pub const AGENT_PORT: i32 = 8008;
/// Port of the agent's `/metrics`, `/healthz` and `/readyz` (kubelet probes,
/// Prometheus): the only agent port the monitoring namespace may reach.
pub const METRICS_PORT: i32 = 9187;
/// Name of the PostgreSQL container port (Services target it by name).
pub const POSTGRES_PORT_NAME: &str = "postgres";
/// Name of the agent API's container port.
pub const AGENT_PORT_NAME: &str = "http";
/// Name of the agent's metrics container port.
pub const METRICS_PORT_NAME: &str = "metrics";
/// Namespace the controller runs in by default (its NetworkPolicy peer).
pub const DEFAULT_CONTROLLER_NAMESPACE: &str = "pgcluster-system";

/// Inputs of [`build`] besides the cluster: values generated or known only at runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildOptions {
    /// Owner of every namespaced object (the `PostgresCluster`), when known.
    pub owner: Option<OwnerReference>,
    /// Passwords by PostgreSQL role name. Empty when rendering to files: the
    /// Secrets are then shapes whose `password` key the controller fills.
    pub passwords: BTreeMap<String, String>,
    /// Namespace of the controller; its pods may reach PostgreSQL and the agents.
    pub controller_namespace: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            owner: None,
            passwords: BTreeMap::new(),
            controller_namespace: DEFAULT_CONTROLLER_NAMESPACE.to_owned(),
        }
    }
}

/// Why the objects of a cluster could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A LoadBalancer without any CIDR source would be open to every address
    /// (an empty `loadBalancerSourceRanges` means "allow all").
    #[error(
        "failed to build the LoadBalancer {service}: no access rule with CIDR sources admits the loadBalancer endpoint, and an empty loadBalancerSourceRanges would admit every address"
    )]
    LoadBalancerWithoutSources {
        /// The Service name.
        service: String,
    },
    /// A public source range reached the LoadBalancer without the explicit opt-in.
    #[error(
        "failed to build the LoadBalancer {service}: source range {cidr} is public and services.loadBalancer.allowPublic is not set"
    )]
    PublicSourceRange {
        /// The Service name.
        service: String,
        /// The offending range.
        cidr: String,
    },
    /// The Grafana dashboard could not be serialized.
    #[error("failed to serialize the Grafana dashboard of {cluster}")]
    Dashboard {
        /// Cluster name.
        cluster: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
}

impl BuildError {
    /// A bounded category, usable as a metric label or Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            BuildError::LoadBalancerWithoutSources { .. } => "load_balancer_without_sources",
            BuildError::PublicSourceRange { .. } => "public_source_range",
            BuildError::Dashboard { .. } => "dashboard",
        }
    }
}

/// Every object of one cluster. [`Bundle::objects`] lists them in the stable
/// render/apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// Agent ServiceAccount.
    pub service_account: ServiceAccount,
    /// Agent Role.
    pub role: Role,
    /// Agent RoleBinding.
    pub role_binding: RoleBinding,
    /// postgresql.conf and pg_hba.conf.
    pub config: ConfigMap,
    /// The superuser's, then one per declared role, in that order.
    pub secrets: Vec<Secret>,
    /// Headless, rw, ro, LoadBalancer, metrics (those that exist, in that order).
    pub services: Vec<Service>,
    /// The instances.
    pub statefulset: StatefulSet,
    /// Disruption budget of the instances.
    pub pdb: PodDisruptionBudget,
    /// Default deny first, then the allows.
    pub network_policies: Vec<NetworkPolicy>,
    /// Monitoring objects (when enabled).
    pub monitoring: monitoring::MonitoringObjects,
}

/// A borrowed object of a [`Bundle`], for rendering and applying in order.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    /// ServiceAccount.
    ServiceAccount(&'a ServiceAccount),
    /// Role.
    Role(&'a Role),
    /// RoleBinding.
    RoleBinding(&'a RoleBinding),
    /// ConfigMap.
    ConfigMap(&'a ConfigMap),
    /// Secret.
    Secret(&'a Secret),
    /// Service.
    Service(&'a Service),
    /// StatefulSet.
    StatefulSet(&'a StatefulSet),
    /// PodDisruptionBudget.
    PodDisruptionBudget(&'a PodDisruptionBudget),
    /// NetworkPolicy.
    NetworkPolicy(&'a NetworkPolicy),
    /// monitoring.coreos.com/v1 ServiceMonitor.
    ServiceMonitor(&'a ServiceMonitor),
    /// monitoring.coreos.com/v1 PrometheusRule.
    PrometheusRule(&'a PrometheusRule),
}

impl Object<'_> {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::Service(_) => "Service",
            Object::StatefulSet(_) => "StatefulSet",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::ServiceMonitor(_) => "ServiceMonitor",
            Object::PrometheusRule(_) => "PrometheusRule",
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::ServiceAccount(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::ServiceMonitor(o) => &o.metadata,
            Object::PrometheusRule(o) => &o.metadata,
        }
    }
}

impl Bundle {
    /// Every object, in the stable order: identity and permissions, configuration,
    /// credentials, Services, the StatefulSet, its budget, network policies, monitoring.
    pub fn objects(&self) -> Vec<Object<'_>> {
        let mut out = vec![
            Object::ServiceAccount(&self.service_account),
            Object::Role(&self.role),
            Object::RoleBinding(&self.role_binding),
            Object::ConfigMap(&self.config),
        ];
        out.extend(self.secrets.iter().map(Object::Secret));
        out.extend(self.services.iter().map(Object::Service));
        out.push(Object::StatefulSet(&self.statefulset));
        out.push(Object::PodDisruptionBudget(&self.pdb));
        out.extend(self.network_policies.iter().map(Object::NetworkPolicy));
        if let Some(dashboard) = &self.monitoring.dashboard {
            out.push(Object::ConfigMap(dashboard));
        }
        if let Some(sm) = &self.monitoring.service_monitor {
            out.push(Object::ServiceMonitor(sm));
        }
        if let Some(rule) = &self.monitoring.prometheus_rule {
            out.push(Object::PrometheusRule(rule));
        }
        out
    }
}

/// Builds every object of `cluster`.
pub fn build(cluster: &ValidatedCluster, options: &BuildOptions) -> Result<Bundle, BuildError> {
    let owner = options.owner.as_ref();
    let mut services = services::services(cluster, owner)?;
    let monitoring = monitoring::monitoring(cluster, owner)?;
    if let Some(metrics) = &monitoring.metrics_service {
        services.push(metrics.clone());
    }
    Ok(Bundle {
        service_account: rbac::agent_service_account(cluster, owner),
        role: rbac::agent_role(cluster, owner),
        role_binding: rbac::agent_role_binding(cluster, owner),
        config: config::config_map(cluster, owner),
        secrets: secrets::secrets(cluster, owner, &options.passwords),
        services,
        statefulset: statefulset::statefulset(cluster, owner),
        pdb: pdb::pod_disruption_budget(cluster, owner),
        network_policies: network_policy::network_policies(
            cluster,
            owner,
            &options.controller_namespace,
        ),
        monitoring,
    })
}

/// Names of objects that only exist in Kubernetes (the shared ones live in
/// [`ClusterName`]).
pub trait K8sNames {
    /// Agent Role and RoleBinding.
    fn agent_role(&self) -> String;
    /// Service the ServiceMonitor scrapes.
    fn metrics_service(&self) -> String;
    /// PodDisruptionBudget.
    fn pdb(&self) -> String;
    /// NetworkPolicy with a suffix.
    fn network_policy(&self, suffix: &str) -> String;
    /// Grafana dashboard ConfigMap.
    fn dashboard(&self) -> String;
    /// ServiceMonitor and PrometheusRule.
    fn monitoring(&self) -> String;
}

impl K8sNames for ClusterName {
    fn agent_role(&self) -> String {
        format!("{}-agent", self.as_str())
    }
    fn metrics_service(&self) -> String {
        format!("{}-metrics", self.as_str())
    }
    fn pdb(&self) -> String {
        self.as_str().to_owned()
    }
    fn network_policy(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.as_str())
    }
    fn dashboard(&self) -> String {
        format!("{}-dashboard", self.as_str())
    }
    fn monitoring(&self) -> String {
        self.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::homelab;

    /// With an owner given, every object of the bundle is owned by it (garbage
    /// collected with the PostgresCluster); without one, none is.
    #[test]
    fn owner_references_on_everything() {
        let owner = OwnerReference {
            api_version: "pgcluster.dev/v1alpha1".to_owned(),
            kind: "PostgresCluster".to_owned(),
            name: "pg".to_owned(),
            uid: "00000000-0000-0000-0000-000000000001".to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let options = BuildOptions {
            owner: Some(owner.clone()),
            ..BuildOptions::default()
        };
        let owned = build(&homelab(), &options).expect("builds");
        let unowned = build(&homelab(), &BuildOptions::default()).expect("builds");
        let refs = |o: &Object<'_>| -> Option<Vec<OwnerReference>> {
            let yaml = crate::render::object_yaml(o).expect("renders");
            let v: serde_json::Value = serde_norway::from_str(&yaml).expect("parses");
            v["metadata"]
                .get("ownerReferences")
                .map(|r| serde_json::from_value(r.clone()).expect("owner references deserialize"))
        };
        for o in owned.objects() {
            assert_eq!(
                refs(&o),
                Some(vec![owner.clone()]),
                "{} {}",
                o.kind(),
                o.name()
            );
        }
        assert!(unowned.objects().iter().all(|o| refs(o).is_none()));
    }
}
