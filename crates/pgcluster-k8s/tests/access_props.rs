//! One access model, three renderings: for random valid access models and
//! random connections, what `explain` allows is allowed by every rendering on
//! the connection's path (NetworkPolicy, LoadBalancer source ranges, pg_hba),
//! and what it denies is denied by at least one of them, except where the
//! denial needs information no single layer has (see `layers_cannot_combine`).
//!
//! Paths: a pod reaches `rw`/`ro` through a ClusterIP Service (NetworkPolicy of
//! the target pod, then pg_hba); an address outside the cluster reaches the
//! `loadBalancer` (source ranges, NetworkPolicy with the preserved client
//! address, then pg_hba).

#[path = "support/eval.rs"]
mod eval;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use eval::{Peer, network_policy_allows, source_ranges_allow};
use pgcluster_core::ValidatedCluster;
use pgcluster_core::access::explain::source_matches;
use pgcluster_core::access::{Client, Rule, Source, explain, hba_allows, hba_lines};
use pgcluster_core::api::v1alpha1::{AccessEndpoint, ServiceEndpoint};
use pgcluster_k8s::build::labels::{LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};
use pgcluster_k8s::build::{AGENT_PORT, AGENT_PORT_NAME, POSTGRES_PORT, POSTGRES_PORT_NAME};
use pgcluster_k8s::testing::spec;
use pgcluster_k8s::{BuildOptions, Bundle, build};
use proptest::prelude::*;

const NAMESPACES: &[&str] = &["apps", "db", "reports"];
const CIDRS: &[&str] = &[
    "10.0.10.0/24",
    "10.0.10.0/25",
    "10.0.20.0/24",
    "192.168.1.0/24",
    "10.42.1.0/24",
    "10.42.0.0/16",
];
const DATABASES: &[&str] = &["d1", "d2"];
const ROLES: &[&str] = &["r1", "r2"];
const POD_IPS: &[&str] = &["10.42.1.5", "10.42.200.7"];
const EXTERNAL_IPS: &[&str] = &[
    "10.0.10.7",
    "10.0.10.200",
    "10.0.20.5",
    "192.168.1.9",
    "172.16.0.1",
];

fn subset<T: Clone + std::fmt::Debug + 'static>(
    items: &'static [T],
) -> impl Strategy<Value = Vec<T>> {
    proptest::sample::subsequence(items.to_vec(), 1..=items.len())
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        (
            subset(NAMESPACES),
            proptest::option::of(prop_oneof![Just("a"), Just("b")])
        )
            .prop_map(|(ns, app)| Source::Pods {
                namespaces: ns.iter().map(|s| (*s).to_owned()).collect(),
                pod_labels: app
                    .map(|v| BTreeMap::from([("app".to_owned(), v.to_owned())]))
                    .unwrap_or_default(),
            }),
        proptest::sample::select(CIDRS)
            .prop_map(|c| Source::Cidr(c.parse().expect("literal CIDRs parse"))),
    ]
}

fn rule(i: usize) -> impl Strategy<Value = Rule> {
    (
        proptest::collection::vec(source(), 1..=3),
        subset(&[
            AccessEndpoint::Rw,
            AccessEndpoint::Ro,
            AccessEndpoint::LoadBalancer,
        ]),
        subset(DATABASES),
        subset(ROLES),
    )
        .prop_map(move |(sources, endpoints, dbs, roles)| Rule {
            name: format!("rule{i}"),
            sources,
            endpoints: endpoints.into_iter().collect(),
            databases: dbs.iter().map(|s| (*s).to_owned()).collect(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
        })
}

/// A random valid cluster: 1-4 rules; a LoadBalancer exactly when a rule
/// admits it. Built as a spec and validated like a user's (one spec rule per
/// source of a model rule); combinations validation refuses are skipped.
fn model() -> impl Strategy<Value = ValidatedCluster> {
    (
        (1usize..=4).prop_flat_map(|n| (0..n).map(rule).collect::<Vec<_>>()),
        prop_oneof![Just(ServiceEndpoint::Rw), Just(ServiceEndpoint::Ro)],
        1u32..=3,
    )
        .prop_filter_map(
            "validation refuses the spec",
            |(rules, lb_endpoint, instances)| {
                let admits_lb = rules
                    .iter()
                    .any(|r| r.endpoints.contains(&AccessEndpoint::LoadBalancer));
                let mut c = spec("pg", instances);
                for db in DATABASES {
                    c = c.with_app(db);
                }
                // The rules' roles may use both databases (validation refuses a
                // rule admitting a role to a database it has no privilege on).
                for role in ROLES {
                    c = c.with_role(role, DATABASES);
                }
                if admits_lb {
                    c = c.with_load_balancer("10.0.20.200", lb_endpoint);
                }
                for rule in &rules {
                    let endpoints: Vec<AccessEndpoint> = rule.endpoints.iter().copied().collect();
                    let databases: Vec<&str> = rule.databases.iter().map(String::as_str).collect();
                    let roles: Vec<&str> = rule.roles.iter().map(String::as_str).collect();
                    for (j, source) in rule.sources.iter().enumerate() {
                        c = c.with_rule(
                            &format!("{}-{j}", rule.name),
                            vec![source.clone()],
                            &endpoints,
                            &databases,
                            &roles,
                        );
                    }
                }
                c.validate().ok()
            },
        )
}

#[derive(Clone, Debug)]
struct Query {
    client: Client,
    endpoint: AccessEndpoint,
    database: String,
    role: String,
}

fn query() -> impl Strategy<Value = Query> {
    let pod = (
        proptest::sample::select(NAMESPACES),
        proptest::option::of(prop_oneof![Just("a"), Just("b"), Just("c")]),
        proptest::sample::select(POD_IPS),
        prop_oneof![Just(AccessEndpoint::Rw), Just(AccessEndpoint::Ro)],
    )
        .prop_map(|(ns, app, ip, endpoint)| {
            (
                Client::Pod {
                    namespace: ns.to_owned(),
                    labels: app
                        .map(|v| BTreeMap::from([("app".to_owned(), v.to_owned())]))
                        .unwrap_or_default(),
                    ip: Some(ip.parse().expect("literal IPs parse")),
                },
                endpoint,
            )
        });
    let external = proptest::sample::select(EXTERNAL_IPS).prop_map(|ip| {
        (
            Client::Address {
                ip: ip.parse().expect("literal IPs parse"),
            },
            AccessEndpoint::LoadBalancer,
        )
    });
    (
        prop_oneof![pod, external],
        proptest::sample::select(DATABASES),
        proptest::sample::select(ROLES),
    )
        .prop_map(|((client, endpoint), db, role)| Query {
            client,
            endpoint,
            database: db.to_owned(),
            role: role.to_owned(),
        })
}

/// The pod role behind an endpoint.
fn target_role(c: &ValidatedCluster, endpoint: AccessEndpoint) -> &'static str {
    match endpoint {
        AccessEndpoint::Rw => ROLE_PRIMARY,
        AccessEndpoint::Ro => ROLE_REPLICA,
        AccessEndpoint::LoadBalancer => {
            match c.services().load_balancer.as_ref().map(|l| l.endpoint) {
                Some(ServiceEndpoint::Ro) => ROLE_REPLICA,
                _ => ROLE_PRIMARY,
            }
        }
    }
}

fn target_pod_labels(bundle: &Bundle, role: &str) -> BTreeMap<String, String> {
    let mut labels = bundle
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("the pod template has labels");
    labels.insert(LABEL_ROLE.to_owned(), role.to_owned());
    labels
}

fn client_ip(client: &Client) -> IpAddr {
    match client {
        Client::Address { ip } => *ip,
        Client::Pod { ip, .. } => ip.expect("generated pods have addresses"),
    }
}

/// What each rendering decides for one query, and what the model says per layer.
struct Outcome {
    explain_allows: bool,
    network_policy: bool,
    /// `None` when the LoadBalancer is not on the path.
    source_ranges: Option<bool>,
    pg_hba: bool,
    /// Some rule admits the client's source towards the target pod's role (what a NetworkPolicy can see).
    model_network: bool,
    /// Some rule admits the address range (pods as the pod CIDR) to the database as the role (what pg_hba can see).
    model_hba: bool,
    /// Some rule admits the client's address through the LoadBalancer (what source ranges can see).
    model_lb: bool,
}

fn evaluate(c: &ValidatedCluster, bundle: &Bundle, q: &Query) -> Outcome {
    let ip = client_ip(&q.client);
    let role = target_role(c, q.endpoint);
    let peer = match &q.client {
        Client::Address { ip } => Peer::External { ip: *ip },
        Client::Pod {
            namespace, labels, ..
        } => Peer::Pod {
            namespace: namespace.clone(),
            labels: labels.clone(),
            ip,
        },
    };
    let named = BTreeMap::from([
        (POSTGRES_PORT_NAME.to_owned(), POSTGRES_PORT),
        (AGENT_PORT_NAME.to_owned(), AGENT_PORT),
    ]);
    let network_policy = network_policy_allows(
        &bundle.network_policies,
        c.namespace(),
        &target_pod_labels(bundle, role),
        &named,
        &peer,
        POSTGRES_PORT,
    );
    let lb_service = bundle
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(c.name().lb_service().as_str()));
    let source_ranges = (q.endpoint == AccessEndpoint::LoadBalancer)
        .then(|| lb_service.is_some_and(|s| source_ranges_allow(s, ip)));
    let lines = hba_lines(c.access(), c.network().pod_cidr);
    let pg_hba = hba_allows(&lines, ip, &q.database, &q.role);

    let rule_roles = |r: &Rule| -> BTreeSet<&'static str> {
        r.endpoints.iter().map(|e| target_role(c, *e)).collect()
    };
    let rules = &c.access().rules;
    Outcome {
        explain_allows: explain(c.access(), &q.client, q.endpoint, &q.database, &q.role)
            .is_allowed(),
        network_policy,
        source_ranges,
        pg_hba,
        model_network: rules.iter().any(|r| {
            rule_roles(r).contains(role) && r.sources.iter().any(|s| source_matches(s, &q.client))
        }),
        model_hba: rules.iter().any(|r| {
            r.databases.contains(&q.database)
                && r.roles.contains(&q.role)
                && r.sources.iter().any(|s| match s {
                    Source::Cidr(net) => net.contains(&ip),
                    Source::Pods { .. } => c.network().pod_cidr.contains(&ip),
                })
        }),
        model_lb: rules.iter().any(|r| {
            r.endpoints.contains(&AccessEndpoint::LoadBalancer)
                && r.sources
                    .iter()
                    .any(|s| matches!(s, Source::Cidr(net) if net.contains(&ip)))
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Allowed by explain => allowed by every rendering on the path; denied =>
    /// denied by one of them, unless only combining layers could deny it.
    #[test]
    fn renderings_agree_with_explain(c in model(), queries in proptest::collection::vec(query(), 1..24)) {
        let bundle = build(&c, &BuildOptions::default()).expect("valid models build");
        for q in &queries {
            let o = evaluate(&c, &bundle, q);
            let path_allows = o.network_policy && o.source_ranges.unwrap_or(true) && o.pg_hba;
            if o.explain_allows {
                prop_assert!(path_allows, "explain allows {q:?} but a rendering denies (netpol {}, ranges {:?}, hba {})", o.network_policy, o.source_ranges, o.pg_hba);
            }
            // Each layer is exactly the model's projection onto what it can see.
            prop_assert_eq!(o.network_policy, o.model_network, "NetworkPolicy vs model for {:?}", q);
            prop_assert_eq!(o.pg_hba, o.model_hba, "pg_hba vs model for {:?}", q);
            if let Some(ranges) = o.source_ranges {
                prop_assert_eq!(ranges, o.model_lb, "source ranges vs model for {:?}", q);
            }
            if !o.explain_allows && path_allows {
                // Only a combination of layers could deny: every projection admits,
                // through different rules (or a LoadBalancer CIDR that can also
                // reach the same pods directly). The role's password is the guard.
                prop_assert!(layers_cannot_combine(&o), "{q:?}");
            }
        }
    }
}

fn layers_cannot_combine(o: &Outcome) -> bool {
    o.model_network && o.model_hba && o.source_ranges.is_none_or(|_| o.model_lb)
}

/// The documented gap exists and is what the layered design implies: a pod
/// admitted by one rule for database d1 and by another rule's pg_hba line (pod
/// CIDR) for d2 passes both layers although no single rule admits it.
#[test]
fn gap_needs_two_rules() {
    let c = spec("pg", 2)
        .with_app("d1")
        .with_app("d2")
        .with_rule(
            "one",
            vec![pgcluster_k8s::testing::pods("apps")],
            &[AccessEndpoint::Rw],
            &["d1"],
            &["d1"],
        )
        .with_rule(
            "two",
            vec![pgcluster_k8s::testing::pods("other")],
            &[AccessEndpoint::Rw],
            &["d2"],
            &["d2"],
        )
        .validated();
    let bundle = build(&c, &BuildOptions::default()).expect("builds");
    let q = Query {
        client: Client::Pod {
            namespace: "apps".to_owned(),
            labels: BTreeMap::new(),
            ip: Some("10.42.1.5".parse().expect("ip")),
        },
        endpoint: AccessEndpoint::Rw,
        database: "d2".to_owned(),
        role: "d2".to_owned(),
    };
    let o = evaluate(&c, &bundle, &q);
    assert!(!o.explain_allows && o.network_policy && o.pg_hba && layers_cannot_combine(&o));
    // while the same pod is denied by the NetworkPolicy on the replicas (rule one admits rw only)
    let ro = Query {
        endpoint: AccessEndpoint::Ro,
        database: "d1".to_owned(),
        role: "d1".to_owned(),
        ..q
    };
    let o = evaluate(&c, &bundle, &ro);
    assert!(!o.explain_allows && !o.network_policy);
}

/// The evaluator itself: a pod selected by no policy accepts everything; the
/// default deny closes it; an allow with a namespace selector opens it to that namespace only.
#[test]
fn evaluator_semantics() {
    let c = spec("pg", 2)
        .with_app("d1")
        .with_rule(
            "one",
            vec![pgcluster_k8s::testing::pods("apps")],
            &[AccessEndpoint::Rw, AccessEndpoint::Ro],
            &["d1"],
            &["d1"],
        )
        .validated();
    let bundle = build(&c, &BuildOptions::default()).expect("builds");
    let named = BTreeMap::new();
    let pod = |ns: &str| Peer::Pod {
        namespace: ns.to_owned(),
        labels: BTreeMap::new(),
        ip: "10.42.1.5".parse().expect("ip"),
    };
    let labels = target_pod_labels(&bundle, ROLE_PRIMARY);
    assert!(network_policy_allows(
        &[],
        "db",
        &labels,
        &named,
        &pod("x"),
        5432
    ));
    assert!(!network_policy_allows(
        &bundle.network_policies[..1],
        "db",
        &labels,
        &named,
        &pod("apps"),
        5432
    ));
    assert!(network_policy_allows(
        &bundle.network_policies,
        "db",
        &labels,
        &named,
        &pod("apps"),
        5432
    ));
    assert!(!network_policy_allows(
        &bundle.network_policies,
        "db",
        &labels,
        &named,
        &pod("apps"),
        8008
    ));
    assert!(!network_policy_allows(
        &bundle.network_policies,
        "db",
        &labels,
        &named,
        &pod("other"),
        5432
    ));
    // instances reach each other on both ports
    let peer = Peer::Pod {
        namespace: "db".to_owned(),
        labels: labels.clone(),
        ip: "10.42.1.6".parse().expect("ip"),
    };
    assert!(network_policy_allows(
        &bundle.network_policies,
        "db",
        &labels,
        &named,
        &peer,
        8008
    ));
}
