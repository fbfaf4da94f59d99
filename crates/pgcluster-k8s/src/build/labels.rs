//! Standard labels, selectors and object metadata shared by every builder.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use pgcluster_core::ValidatedCluster;

/// `app.kubernetes.io/name` value on everything pgcluster renders.
pub const APP_NAME: &str = "pgcluster";
/// `app.kubernetes.io/managed-by` value.
pub const MANAGED_BY: &str = "pgcluster";
/// Label carrying the cluster name; the controller deletes orphans by it.
pub const LABEL_CLUSTER: &str = "pgcluster.dev/cluster";
/// Label the agents set on their pod: `primary` or `replica`.
pub const LABEL_ROLE: &str = "pgcluster.dev/role";
/// [`LABEL_ROLE`] value of the primary.
pub const ROLE_PRIMARY: &str = "primary";
/// [`LABEL_ROLE`] value of a replica.
pub const ROLE_REPLICA: &str = "replica";
/// `app.kubernetes.io/component` key.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// The namespace-name label every namespace carries (Kubernetes >= 1.22).
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// The `app.kubernetes.io/component` of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// PostgreSQL instances (StatefulSet, pods, PDB, instance Services).
    Postgres,
    /// Agent identity and permissions.
    Agent,
    /// postgresql.conf / pg_hba.conf.
    Config,
    /// Credentials.
    Credentials,
    /// Network access.
    Access,
    /// Metrics, alerts and dashboards.
    Metrics,
    /// The controller (cluster-wide objects).
    Controller,
}

impl Component {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Postgres => "postgres",
            Component::Agent => "agent",
            Component::Config => "config",
            Component::Credentials => "credentials",
            Component::Access => "access",
            Component::Metrics => "metrics",
            Component::Controller => "controller",
        }
    }
}

/// The standard labels of an object of `cluster` with `component`.
pub fn labels(cluster: &ValidatedCluster, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        (
            "app.kubernetes.io/instance".to_owned(),
            cluster.name().as_str().to_owned(),
        ),
        (LABEL_COMPONENT.to_owned(), component.as_str().to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (LABEL_CLUSTER.to_owned(), cluster.name().as_str().to_owned()),
    ])
}

/// Labels selecting the cluster's instance pods (the StatefulSet selector; immutable).
pub fn pod_selector_labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_CLUSTER.to_owned(), cluster.name().as_str().to_owned()),
        (
            LABEL_COMPONENT.to_owned(),
            Component::Postgres.as_str().to_owned(),
        ),
    ])
}

/// [`pod_selector_labels`] plus the role label.
pub fn role_selector_labels(cluster: &ValidatedCluster, role: &str) -> BTreeMap<String, String> {
    let mut selector = pod_selector_labels(cluster);
    selector.insert(LABEL_ROLE.to_owned(), role.to_owned());
    selector
}

/// A `matchLabels` selector.
pub fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}

/// Metadata of a namespaced object of `cluster`.
pub fn meta(
    cluster: &ValidatedCluster,
    name: String,
    component: Component,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace().to_string()),
        labels: Some(labels(cluster, component)),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..ObjectMeta::default()
    }
}
