//! Test fixtures: [`ValidatedCluster`] values for unit tests here and in
//! crates that use the builders. [`cluster`] goes through the loader and
//! `validate()`; a [`Draft`] from [`spec`] takes chained modifiers and is
//! validated once at the end, so a fixture is always a cluster a user could
//! have written.

#[cfg(test)]
pub mod api_server;
pub mod objects;

use std::collections::{BTreeMap, BTreeSet};

use pgcluster_core::ValidatedCluster;
use pgcluster_core::access::Source;
use pgcluster_core::api::v1alpha1::{
    AccessEndpoint, PostgresCluster, PostgresClusterSpec, ServiceEndpoint,
};
use pgcluster_core::validate::ValidationErrors;
use serde_json::{Value, json};

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
    .validate_on(pgcluster_core::Platform::Kubernetes)
    .expect("the fixture spec is valid")
}

/// A spec being put together by a test: chain modifiers, then
/// [`Draft::validated`]. Validation runs once at the end, as for a user's
/// file, so the modifiers may come in any order.
#[derive(Clone, Debug)]
pub struct Draft(Value);

/// A draft of cluster `name` in namespace `db` with `instances` instances.
pub fn spec(name: &str, instances: u32) -> Draft {
    Draft(json!({
        "apiVersion": "pgcluster.dev/v1alpha1",
        "kind": "PostgresCluster",
        "metadata": {"name": name, "namespace": "db"},
        "spec": {"instances": instances},
    }))
}

impl Draft {
    /// Moves the cluster to namespace `namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(namespace);
        self
    }

    /// Adds database `name` owned by a new role of the same name.
    pub fn with_app(mut self, name: &str) -> Self {
        push(
            &mut self.0["spec"],
            "databases",
            json!({"name": name, "owner": name}),
        );
        push(&mut self.0["spec"], "roles", json!({"name": name}));
        self
    }

    /// Adds role `name` with a grant (default privileges) on each of
    /// `databases`.
    pub fn with_role(mut self, name: &str, databases: &[&str]) -> Self {
        let grants: Vec<Value> = databases.iter().map(|db| json!({"database": db})).collect();
        push(
            &mut self.0["spec"],
            "roles",
            json!({"name": name, "grants": grants}),
        );
        self
    }

    /// Adds an access rule admitting `sources` (one `from`: the pods'
    /// namespaces and labels, and the CIDRs) to `databases` as `roles`.
    pub fn with_rule(
        mut self,
        name: &str,
        sources: Vec<Source>,
        endpoints: &[AccessEndpoint],
        databases: &[&str],
        roles: &[&str],
    ) -> Self {
        let mut from = json!({});
        for source in sources {
            match source {
                Source::Pods {
                    namespaces,
                    pod_labels,
                } => {
                    from["namespaces"] = json!(namespaces);
                    from["podLabels"] = json!(pod_labels);
                }
                Source::Cidr(net) => push(&mut from, "cidrs", json!(net.to_string())),
            }
        }
        let rule = json!({
            "name": name,
            "from": from,
            "endpoints": endpoints,
            "databases": databases,
            "roles": roles,
        });
        push(&mut self.0["spec"], "access", rule);
        self
    }

    /// Enables a MetalLB LoadBalancer exposing `endpoint`.
    pub fn with_load_balancer(mut self, address: &str, endpoint: ServiceEndpoint) -> Self {
        self.0["spec"]["services"]["loadBalancer"] = json!({
            "enabled": true,
            "address": address,
            "pool": "homelab",
            "endpoint": endpoint,
        });
        self
    }

    /// Enables monitoring.
    pub fn with_monitoring(mut self) -> Self {
        self.0["spec"]["monitoring"]["enabled"] = json!(true);
        self
    }

    /// Any other change of the spec.
    pub fn with_spec(self, change: impl FnOnce(&mut PostgresClusterSpec)) -> Self {
        let mut object = self.object();
        change(&mut object.spec);
        Self(serde_json::to_value(object).expect("a cluster serializes"))
    }

    /// The draft as the API object.
    pub fn object(&self) -> PostgresCluster {
        serde_json::from_value(self.0.clone()).expect("the draft has the API's shape")
    }

    /// What `validate()` says of the draft.
    pub fn validate(&self) -> Result<ValidatedCluster, ValidationErrors> {
        pgcluster_core::validate_on(&self.object(), pgcluster_core::Platform::Kubernetes)
    }

    /// The validated cluster; panics with every problem when it is invalid.
    pub fn validated(&self) -> ValidatedCluster {
        self.validate()
            .unwrap_or_else(|errors| panic!("the fixture's spec is invalid:\n{errors}"))
    }
}

/// Appends `item` to the array `key` of `object`, creating it.
fn push(object: &mut Value, key: &str, item: Value) {
    match &mut object[key] {
        Value::Array(items) => items.push(item),
        slot => *slot = json!([item]),
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
    spec("pg", 2)
        .with_app("app")
        .with_rule(
            "apps",
            vec![pods("apps")],
            &[AccessEndpoint::Rw, AccessEndpoint::Ro],
            &["app"],
            &["app"],
        )
        .with_rule(
            "admins",
            vec![cidr("10.0.10.0/24")],
            &[AccessEndpoint::LoadBalancer],
            &["app"],
            &["app"],
        )
        .with_load_balancer("10.0.20.200", ServiceEndpoint::Rw)
        .with_monitoring()
        .validated()
}
