//! Test fixtures: [`ValidatedCluster`] values for unit tests here and in
//! crates that use the builders. [`cluster`] goes through the loader and
//! `validate()`; the modifiers chained on it still set resolved fields
//! directly (their `resolved_spec` is not updated).

#[cfg(test)]
pub mod api_server;
pub mod objects;

use std::collections::{BTreeMap, BTreeSet};

use pgcluster_core::ValidatedCluster;
use pgcluster_core::access::{Rule, Source};
use pgcluster_core::api::v1alpha1::{AccessEndpoint, ServiceEndpoint};
use pgcluster_core::validated::{ResolvedDatabase, ResolvedLoadBalancer, ResolvedRole};

/// A cluster `name` in namespace `db` with `instances` instances and every
/// default, through the loader and `validate()` like a user's spec.
pub fn cluster(name: &str, instances: u32) -> ValidatedCluster {
    pgcluster_core::load::load_one(&format!(
        "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {{name: {name}, namespace: db}}
spec: {{instances: {instances}}}
"
    ))
    .expect("the fixture spec loads")
    .validate()
    .expect("the fixture spec is valid")
}

/// Modifiers for fixtures.
pub trait Fixture: Sized {
    /// Adds database `name` owned by a new role of the same name.
    fn with_app(self, name: &str) -> Self;
    /// Adds an access rule.
    fn with_rule(
        self,
        name: &str,
        sources: Vec<Source>,
        endpoints: &[AccessEndpoint],
        db: &str,
        role: &str,
    ) -> Self;
    /// Enables a MetalLB LoadBalancer exposing `endpoint`.
    fn with_load_balancer(self, address: &str, endpoint: ServiceEndpoint) -> Self;
    /// Enables monitoring.
    fn with_monitoring(self) -> Self;
}

impl Fixture for ValidatedCluster {
    fn with_app(mut self, name: &str) -> Self {
        self.databases.push(ResolvedDatabase {
            name: name.to_owned(),
            owner: name.to_owned(),
            extensions: vec![],
        });
        self.roles.push(ResolvedRole {
            name: name.to_owned(),
            grants: BTreeMap::new(),
            connection_limit: -1,
        });
        self
    }
    fn with_rule(
        mut self,
        name: &str,
        sources: Vec<Source>,
        endpoints: &[AccessEndpoint],
        db: &str,
        role: &str,
    ) -> Self {
        self.access.rules.push(Rule {
            name: name.to_owned(),
            sources,
            endpoints: endpoints.iter().copied().collect(),
            databases: BTreeSet::from([db.to_owned()]),
            roles: BTreeSet::from([role.to_owned()]),
        });
        self
    }
    fn with_load_balancer(mut self, address: &str, endpoint: ServiceEndpoint) -> Self {
        self.services.load_balancer = Some(ResolvedLoadBalancer {
            address: Some(address.parse().expect("fixture addresses are valid")),
            pool: Some("homelab".to_owned()),
            endpoint,
            allowed_ranges: vec![],
            allow_public: false,
        });
        self
    }
    fn with_monitoring(mut self) -> Self {
        self.monitoring.enabled = true;
        self
    }
}

/// Pods in `namespace` (any labels).
pub fn pods(namespace: &str) -> Source {
    Source::Pods {
        namespaces: BTreeSet::from([namespace.to_owned()]),
        pod_labels: BTreeMap::new(),
    }
}

/// A CIDR source.
pub fn cidr(net: &str) -> Source {
    Source::Cidr(net.parse().expect("fixture CIDRs are valid"))
}

/// A cluster shaped like the reference homelab: 2 instances, an app reached from
/// `apps`, admins on 10.0.10.0/24 through the LoadBalancer, monitoring on.
pub fn homelab() -> ValidatedCluster {
    cluster("pg", 2)
        .with_app("app")
        .with_rule(
            "apps",
            vec![pods("apps")],
            &[AccessEndpoint::Rw, AccessEndpoint::Ro],
            "app",
            "app",
        )
        .with_rule(
            "admins",
            vec![cidr("10.0.10.0/24")],
            &[AccessEndpoint::LoadBalancer],
            "app",
            "app",
        )
        .with_load_balancer("10.0.20.200", ServiceEndpoint::Rw)
        .with_monitoring()
}
