use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::api::v1alpha1::AccessEndpoint;

/// The validated access rules of one cluster.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AccessModel {
    /// Rules in spec order; the first that allows a connection is the one `explain` names.
    pub rules: Vec<Rule>,
}

/// One validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Rule name (unique within the cluster).
    pub name: String,
    /// Who the rule admits; a client matching any source matches the rule.
    pub sources: Vec<Source>,
    /// Endpoints it admits through (never empty).
    pub endpoints: BTreeSet<AccessEndpoint>,
    /// Databases (declared).
    pub databases: BTreeSet<String>,
    /// Roles (declared).
    pub roles: BTreeSet<String>,
}

/// A source of connections.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Pods in these namespaces (empty: the cluster's own namespace) carrying these labels.
    Pods {
        /// Namespaces (resolved: never empty; the cluster's namespace when the user gave none).
        namespaces: BTreeSet<String>,
        /// Required pod labels (empty: any pod).
        pod_labels: BTreeMap<String, String>,
    },
    /// An address range on the internal network.
    Cidr(IpNet),
}
