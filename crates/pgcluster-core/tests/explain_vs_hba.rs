//! `explain` and the rendered pg_hba agree on random access models.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use pgcluster_core::access::explain::{Client, explain};
use pgcluster_core::access::{AccessModel, Rule, Source, hba_allows, hba_lines};
use pgcluster_core::api::v1alpha1::AccessEndpoint;
use proptest::prelude::*;

const POD_CIDR: &str = "10.42.0.0/16";
const CIDRS: &[&str] = &[
    "10.0.10.0/24",
    "10.0.11.0/24",
    "10.0.0.0/16",
    "192.168.1.0/24",
    "192.168.1.128/25",
    "fd00:10::/64",
    "10.42.7.0/24",
];
const IPS: &[&str] = &[
    "10.0.10.7",
    "10.0.11.200",
    "10.0.12.1",
    "192.168.1.5",
    "192.168.1.200",
    "8.8.8.8",
    "fd00:10::5",
    "fd00:11::5",
    "10.42.7.9",
    "10.42.1.1",
];
const NAMESPACES: &[&str] = &["apps", "web", "databases"];
const DATABASES: &[&str] = &["app", "wiki", "git"];
const ROLES: &[&str] = &["app", "wiki", "admin"];
const ENDPOINTS: &[AccessEndpoint] = &[
    AccessEndpoint::Rw,
    AccessEndpoint::Ro,
    AccessEndpoint::LoadBalancer,
];

fn subset<T: Clone + Ord + std::fmt::Debug + 'static>(
    items: &'static [T],
    min: usize,
) -> impl Strategy<Value = BTreeSet<T>> {
    prop::sample::subsequence(items.to_vec(), min..=items.len())
        .prop_map(|v| v.into_iter().collect())
}

fn strs(items: &'static [&'static str], min: usize) -> impl Strategy<Value = BTreeSet<String>> {
    subset(items, min).prop_map(|s| s.into_iter().map(str::to_owned).collect())
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier"]),
        prop::sample::select(vec!["a", "b"]),
        0..=2,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        (strs(NAMESPACES, 1), labels()).prop_map(|(namespaces, pod_labels)| Source::Pods {
            namespaces,
            pod_labels
        }),
        prop::sample::select(CIDRS).prop_map(|c| Source::Cidr(c.parse().expect("constant CIDR"))),
    ]
}

fn model() -> impl Strategy<Value = AccessModel> {
    prop::collection::vec(
        (
            prop::collection::vec(source(), 1..3),
            subset(ENDPOINTS, 1),
            strs(DATABASES, 1),
            strs(ROLES, 1),
        ),
        0..5,
    )
    .prop_map(|rules| AccessModel {
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, (sources, endpoints, databases, roles))| Rule {
                name: format!("r{i}"),
                sources,
                endpoints,
                databases,
                roles,
            })
            .collect(),
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("constant IP")
}

fn allowed_somewhere(model: &AccessModel, client: &Client, db: &str, role: &str) -> bool {
    ENDPOINTS
        .iter()
        .any(|e| explain(model, client, *e, db, role).is_allowed())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For clients outside the pod CIDR, pg_hba admits exactly what explain admits through some endpoint.
    #[test]
    fn cidr_clients_agree(
        model in model(),
        addr in prop::sample::select(IPS),
        db in prop::sample::select(vec!["app", "wiki", "git", "other"]),
        role in prop::sample::select(vec!["app", "wiki", "admin", "nobody"]),
    ) {
        let pod_cidr: IpNet = POD_CIDR.parse().expect("constant");
        let lines = hba_lines(&model, pod_cidr);
        let addr = ip(addr);
        prop_assume!(!pod_cidr.contains(&addr));
        let client = Client::Address { ip: addr };
        prop_assert_eq!(hba_allows(&lines, addr, db, role), allowed_somewhere(&model, &client, db, role));
    }

    /// For pods (with an IP in the pod CIDR), whatever explain allows pg_hba admits, and
    /// pg_hba admits a pod only for a (database, role) some rule pairs for pods or for its IP.
    #[test]
    fn pod_clients_agree(
        model in model(),
        namespace in prop::sample::select(NAMESPACES),
        labels in labels(),
        addr in prop::sample::select(vec!["10.42.7.9", "10.42.1.1"]),
        db in prop::sample::select(vec!["app", "wiki", "git", "other"]),
        role in prop::sample::select(vec!["app", "wiki", "admin", "nobody"]),
    ) {
        let pod_cidr: IpNet = POD_CIDR.parse().expect("constant");
        let lines = hba_lines(&model, pod_cidr);
        let addr = ip(addr);
        let client = Client::Pod { namespace: namespace.to_owned(), labels, ip: Some(addr) };
        let hba = hba_allows(&lines, addr, db, role);
        if allowed_somewhere(&model, &client, db, role) {
            prop_assert!(hba, "explain allows but pg_hba refuses");
        }
        let any_pod_or_ip_rule = model.rules.iter().any(|r| {
            r.databases.contains(db) && r.roles.contains(role) && r.sources.iter().any(|s| match s {
                Source::Pods { .. } => true,
                Source::Cidr(net) => net.contains(&addr),
            })
        });
        prop_assert_eq!(hba, any_pod_or_ip_rule);
    }
}
