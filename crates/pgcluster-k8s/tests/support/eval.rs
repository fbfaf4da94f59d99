// Small evaluators of the Kubernetes renderings, for the property tests:
// NetworkPolicy ingress (namespace/pod selectors, ipBlocks, ports) and
// LoadBalancer source ranges. They follow the Kubernetes semantics:
// - a pod selected by no Ingress policy accepts everything; once selected, a
//   connection is allowed iff some rule of some selecting policy admits the
//   peer and the port (policies are additive);
// - a rule with no `from` admits every peer, with no `ports` every port;
// - a peer with `namespaceSelector` and/or `podSelector` matches pods only (a
//   missing namespaceSelector means the policy's namespace; a missing
//   podSelector means every pod); `ipBlock` matches by address (conservatively
//   also pod addresses, which some implementations do);
// - an empty `loadBalancerSourceRanges` admits every address.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Who opens the connection, as the receiving pod's network sees it.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A pod in the cluster.
    Pod {
        namespace: String,
        labels: BTreeMap<String, String>,
        ip: IpAddr,
    },
    /// An address outside the cluster (source preserved: externalTrafficPolicy Local).
    External { ip: IpAddr },
}

impl Peer {
    fn ip(&self) -> IpAddr {
        match self {
            Peer::Pod { ip, .. } | Peer::External { ip } => *ip,
        }
    }
}

/// Whether `selector` matches `labels` (matchLabels and matchExpressions).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

fn peer_matches(rule_peer: &NetworkPolicyPeer, policy_ns: &str, peer: &Peer) -> bool {
    if let Some(block) = &rule_peer.ip_block {
        let net: IpNet = block.cidr.parse().expect("rendered ipBlock CIDRs parse");
        let excepted = block.except.iter().flatten().any(|e| {
            e.parse::<IpNet>()
                .expect("rendered except CIDRs parse")
                .contains(&peer.ip())
        });
        return net.contains(&peer.ip()) && !excepted;
    }
    let Peer::Pod {
        namespace, labels, ..
    } = peer
    else {
        return false;
    };
    let ns_ok = match &rule_peer.namespace_selector {
        None => namespace == policy_ns,
        Some(sel) => selector_matches(
            sel,
            &BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), namespace.clone())]),
        ),
    };
    let pod_ok = rule_peer
        .pod_selector
        .as_ref()
        .is_none_or(|sel| selector_matches(sel, labels));
    ns_ok && pod_ok
}

fn port_matches(p: &NetworkPolicyPort, port: i32, named: &BTreeMap<String, i32>) -> bool {
    let protocol_ok = p.protocol.as_deref().unwrap_or("TCP") == "TCP";
    let port_ok = match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => match p.end_port {
            Some(end) => (*n..=end).contains(&port),
            None => *n == port,
        },
        Some(IntOrString::String(name)) => named.get(name) == Some(&port),
    };
    protocol_ok && port_ok
}

/// Whether `policies` let `peer` open a TCP connection to `port` of the pod
/// (`pod_ns`, `pod_labels`, with named container ports `named`).
pub fn network_policy_allows(
    policies: &[NetworkPolicy],
    pod_ns: &str,
    pod_labels: &BTreeMap<String, String>,
    named: &BTreeMap<String, i32>,
    peer: &Peer,
    port: i32,
) -> bool {
    let selecting: Vec<_> = policies
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(pod_ns))
        .filter_map(|p| p.spec.as_ref())
        .filter(|s| {
            s.policy_types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == "Ingress"))
        })
        .filter(|s| {
            s.pod_selector
                .as_ref()
                .is_none_or(|sel| selector_matches(sel, pod_labels))
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|spec| {
        spec.ingress.iter().flatten().any(|rule| {
            let from_ok = rule.from.as_ref().is_none_or(|from| {
                from.is_empty() || from.iter().any(|f| peer_matches(f, pod_ns, peer))
            });
            let port_ok = rule.ports.as_ref().is_none_or(|ports| {
                ports.is_empty() || ports.iter().any(|p| port_matches(p, port, named))
            });
            from_ok && port_ok
        })
    })
}

/// Whether a LoadBalancer Service admits a client address by its source ranges.
pub fn source_ranges_allow(service: &Service, ip: IpAddr) -> bool {
    let ranges = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.clone())
        .unwrap_or_default();
    ranges.is_empty()
        || ranges.iter().any(|r| {
            r.parse::<IpNet>()
                .expect("rendered source ranges parse")
                .contains(&ip)
        })
}
