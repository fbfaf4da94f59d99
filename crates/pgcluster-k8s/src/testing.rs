//! Test fixtures: [`ValidatedCluster`] values built in code, for unit tests here
//! and in crates that use the builders. Chain the modifiers on the result.

#[cfg(test)]
pub mod api_server;
pub mod objects;

use std::collections::{BTreeMap, BTreeSet};

use pgcluster_core::ValidatedCluster;
use pgcluster_core::access::{AccessModel, Rule, Source};
use pgcluster_core::api::v1alpha1::{
    AccessEndpoint, NoStandbyPolicy, PostgresClusterSpec, ReplicationMode, RetentionPolicy,
    ServiceEndpoint,
};
use pgcluster_core::names::ClusterName;
use pgcluster_core::timing::FailoverTimings;
use pgcluster_core::validated::{
    ResolvedDatabase, ResolvedLoadBalancer, ResolvedMonitoring, ResolvedNetwork, ResolvedPostgres,
    ResolvedReplication, ResolvedResources, ResolvedRole, ResolvedServices, ResolvedStorage,
};

/// A cluster `name` in namespace `db` with `instances` instances and every default.
pub fn cluster(name: &str, instances: u32) -> ValidatedCluster {
    ValidatedCluster {
        name: ClusterName::new(name).expect("fixture names are valid DNS labels"),
        namespace: "db".to_owned(),
        resolved_spec: PostgresClusterSpec::default(),
        instances,
        postgres: ResolvedPostgres {
            version: 17,
            image: "ghcr.io/pgcluster/postgres:17".to_owned(),
            parameters: BTreeMap::new(),
        },
        storage: ResolvedStorage {
            size: "10Gi".to_owned(),
            size_bytes: 10 << 30,
            storage_class: "local-path".to_owned(),
            retention: RetentionPolicy::Retain,
        },
        resources: ResolvedResources {
            requests_cpu: Some("250m".to_owned()),
            requests_memory: Some("512Mi".to_owned()),
            limits_cpu: None,
            limits_memory: Some("1Gi".to_owned()),
        },
        replication: ResolvedReplication {
            mode: ReplicationMode::Async,
            when_no_standby: NoStandbyPolicy::Block,
            max_failover_lag_bytes: 16 << 20,
        },
        timings: FailoverTimings::default(),
        automatic_failover: true,
        services: ResolvedServices {
            rw: true,
            ro: true,
            load_balancer: None,
        },
        access: AccessModel::default(),
        databases: vec![],
        roles: vec![],
        network: ResolvedNetwork {
            pod_cidr: "10.42.0.0/16".parse().expect("literal CIDR"),
            service_cidr: "10.43.0.0/16".parse().expect("literal CIDR"),
        },
        monitoring: ResolvedMonitoring {
            enabled: false,
            namespace: "monitoring".to_owned(),
            service_monitor: true,
            prometheus_rule: true,
            grafana_dashboard: true,
            labels: BTreeMap::new(),
            interval: std::time::Duration::from_secs(30),
        },
    }
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
