//! NetworkPolicies: default deny for the cluster's pods, then exactly what the
//! access model allows (one policy per rule), replication and agent traffic
//! between instances, the controller, and metrics scraping.
//!
//! Only ingress is restricted. Egress stays open on purpose: the agents need
//! the API server (on K3s the `kubernetes` Service DNATs to the servers' node
//! addresses on 6443, which are not known when rendering and which
//! NetworkPolicy implementations match after DNAT), DNS and their peers; a
//! wrong egress rule breaks failover, while the threat this protects against
//! (who may reach PostgreSQL) is inbound.
//!
//! Kubelet probes are not affected: K3s's NetworkPolicy controller (kube-router)
//! accepts traffic from the node's own address to its local pods, as Calico and
//! Cilium do.
//!
//! A rule's policy selects only the pods behind the endpoints it admits
//! (`rw` -> `pgcluster.dev/role=primary`, `ro` -> `replica`, `loadBalancer` ->
//! the role of the endpoint the LoadBalancer exposes), so a client admitted to
//! `ro` cannot write by dialling the primary's pod address.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::access::{Rule, Source};
use pgcluster_core::api::v1alpha1::{AccessEndpoint, ServiceEndpoint};

use super::K8sNames;
use super::labels::{
    Component, LABEL_NAMESPACE_NAME, LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA, match_labels, meta,
    pod_selector_labels,
};
use super::services::endpoint_role;
use super::{AGENT_PORT, METRICS_PORT, POSTGRES_PORT};

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        end_port: None,
    }
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    match_labels(BTreeMap::from([(
        LABEL_NAMESPACE_NAME.to_owned(),
        namespace.to_owned(),
    )]))
}

fn policy(
    cluster: &ValidatedCluster,
    suffix: &str,
    owner: Option<&OwnerReference>,
    pod_selector: LabelSelector,
    ingress: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(
            cluster,
            cluster.name().network_policy(suffix),
            Component::Access,
            owner,
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: (!ingress.is_empty()).then_some(ingress),
            egress: None,
        }),
    }
}

/// The pod roles behind the endpoints a rule admits.
pub fn rule_target_roles(cluster: &ValidatedCluster, rule: &Rule) -> BTreeSet<&'static str> {
    rule.endpoints
        .iter()
        .map(|endpoint| match endpoint {
            AccessEndpoint::Rw => ROLE_PRIMARY,
            AccessEndpoint::Ro => ROLE_REPLICA,
            AccessEndpoint::LoadBalancer => endpoint_role(
                cluster
                    .services()
                    .load_balancer
                    .as_ref()
                    .map_or(ServiceEndpoint::Rw, |lb| lb.endpoint),
            ),
        })
        .collect()
}

/// The peers of one rule's sources (namespaces x pod labels, and ipBlocks).
pub fn rule_peers(rule: &Rule) -> Vec<NetworkPolicyPeer> {
    let mut peers = Vec::new();
    for source in &rule.sources {
        match source {
            Source::Pods {
                namespaces,
                pod_labels,
            } => {
                for namespace in namespaces {
                    peers.push(NetworkPolicyPeer {
                        namespace_selector: Some(namespace_selector(namespace)),
                        pod_selector: Some(LabelSelector {
                            match_labels: (!pod_labels.is_empty()).then(|| pod_labels.clone()),
                            match_expressions: None,
                        }),
                        ip_block: None,
                    });
                }
            }
            Source::Cidr(net) => peers.push(NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: net.to_string(),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            }),
        }
    }
    peers
}

fn rule_policy(
    cluster: &ValidatedCluster,
    rule: &Rule,
    owner: Option<&OwnerReference>,
) -> NetworkPolicy {
    let roles = rule_target_roles(cluster, rule);
    let mut selector = match_labels(pod_selector_labels(cluster));
    if roles.len() == 1 {
        selector.match_expressions = Some(vec![LabelSelectorRequirement {
            key: LABEL_ROLE.to_owned(),
            operator: "In".to_owned(),
            values: Some(roles.iter().map(|r| (*r).to_owned()).collect()),
        }]);
    }
    let peers = rule_peers(rule);
    // An empty `from` would admit every source: a rule without sources admits nothing.
    let ingress = if peers.is_empty() {
        vec![]
    } else {
        vec![NetworkPolicyIngressRule {
            from: Some(peers),
            ports: Some(vec![tcp(POSTGRES_PORT)]),
        }]
    };
    policy(
        cluster,
        &format!("access-{}", rule.name),
        owner,
        selector,
        ingress,
    )
}

/// Every NetworkPolicy of the cluster, default deny first.
pub fn network_policies(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
    controller_namespace: &str,
) -> Vec<NetworkPolicy> {
    let pods = || match_labels(pod_selector_labels(cluster));
    let mut out = vec![
        policy(cluster, "default-deny", owner, pods(), vec![]),
        policy(
            cluster,
            "instances",
            owner,
            pods(),
            vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(pods()),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![tcp(POSTGRES_PORT), tcp(AGENT_PORT)]),
            }],
        ),
        policy(
            cluster,
            "controller",
            owner,
            pods(),
            vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(namespace_selector(controller_namespace)),
                    ..NetworkPolicyPeer::default()
                }]),
                // Databases and roles; the controller never calls the agents.
                ports: Some(vec![tcp(POSTGRES_PORT)]),
            }],
        ),
    ];
    if cluster.monitoring().enabled {
        out.push(policy(
            cluster,
            "monitoring",
            owner,
            pods(),
            vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(namespace_selector(&cluster.monitoring().namespace)),
                    ..NetworkPolicyPeer::default()
                }]),
                // Metrics only: the members' API (failsafe probes) is not theirs.
                ports: Some(vec![tcp(METRICS_PORT)]),
            }],
        ));
    }
    out.extend(
        cluster
            .access()
            .rules
            .iter()
            .map(|rule| rule_policy(cluster, rule, owner)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller's namespace reaches PostgreSQL (5432): it creates the
    /// databases and roles as the superuser, which pg_hba admits from the pod CIDR.
    #[test]
    fn controller_namespace_reaches_postgres() {
        let cluster = crate::testing::cluster("pg", 2);
        let policies = network_policies(&cluster, None, super::super::DEFAULT_CONTROLLER_NAMESPACE);
        let controller = policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("pg-controller"))
            .expect("a controller policy exists");
        let rule = &controller
            .spec
            .as_ref()
            .expect("spec")
            .ingress
            .as_ref()
            .expect("ingress")[0];
        let from = &rule.from.as_ref().expect("from")[0];
        let labels = from
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .expect("a namespace selector");
        assert_eq!(
            labels.get(LABEL_NAMESPACE_NAME).map(String::as_str),
            Some("pgcluster-system")
        );
        assert!(
            rule.ports
                .as_ref()
                .expect("ports")
                .iter()
                .any(|p| p.port == Some(IntOrString::Int(POSTGRES_PORT)))
        );
    }
}
