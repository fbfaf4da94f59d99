//! Generated valid specs validate, survive YAML and JSON unchanged, and resolve idempotently.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pgcluster_core::api::v1alpha1::*;
use pgcluster_core::load::load_one;
use pgcluster_core::{resolve, validate};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,12}[a-z0-9])?"
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)].boxed()
}

/// Parameter names that are not managed, and values that stress YAML quoting.
fn parameters() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "max_connections",
            "shared_buffers",
            "work_mem",
            "jit",
            "log_min_duration_statement",
            "auto_explain.log_min_duration",
        ]),
        prop::sample::select(vec![
            "200", "256MB", "on", "off", "yes", "null", "~", "1e3", "-1", "", "a b", "'q'", "0x10",
            "true",
        ]),
        0..4,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

fn mebibytes(n: u32) -> String {
    if n.is_multiple_of(1024) {
        format!("{}Gi", n / 1024)
    } else {
        format!("{n}Mi")
    }
}

prop_compose! {
    fn resources()(req_cpu in 1u32..4000, extra_cpu in opt(0u32..4000), req_mem in 64u32..8192, extra_mem in 0u32..8192, explicit in any::<bool>())
        -> Option<ResourcesSpec> {
        explicit.then(|| ResourcesSpec {
            requests: Some(ResourceAmounts { cpu: Some(format!("{req_cpu}m")), memory: Some(mebibytes(req_mem)) }),
            limits: Some(ResourceAmounts {
                cpu: extra_cpu.map(|e| format!("{}m", req_cpu + e)),
                memory: Some(mebibytes(req_mem + extra_mem)),
            }),
        })
    }
}

prop_compose! {
    fn failover()(lease_ms in 1000u64..20_000, automatic in opt(any::<bool>()), explicit in any::<bool>()) -> Option<FailoverSpec> {
        // renew 60%, stop 10%, drift 5% of the lease: safe; loop a quarter of renew.
        let renew = lease_ms * 6 / 10;
        explicit.then(|| FailoverSpec {
            lease_duration: Some(format!("{lease_ms}ms")),
            loop_interval: Some(format!("{}ms", renew / 4)),
            renew_deadline: Some(format!("{renew}ms")),
            stop_writes_timeout: Some(format!("{}ms", lease_ms / 10)),
            max_clock_drift: Some(format!("{}ms", lease_ms / 20)),
            automatic,
        })
    }
}

const PRIVATE: &[&str] = &[
    "10.0.10.0/24",
    "192.168.1.0/24",
    "172.16.0.0/12",
    "100.64.0.0/10",
    "fd00:10::/64",
    "10.0.0.0/8",
];

prop_compose! {
    fn cluster()(
        name in name(),
        namespace in name(),
        instances in 1u32..=9,
        version in opt(prop::sample::select(vec![15u32, 16, 17])),
        parameters in parameters(),
        size in opt((1u32..2048).prop_map(|g| format!("{g}Gi"))),
        retention in opt(prop_oneof![Just(RetentionPolicy::Retain), Just(RetentionPolicy::Delete)]),
        resources in resources(),
        sync in any::<bool>(),
        fallback in opt(prop_oneof![Just(NoStandbyPolicy::Block), Just(NoStandbyPolicy::FallbackToAsync)]),
        lag in opt((0u32..1024).prop_map(|m| format!("{m}Mi"))),
        failover in failover(),
        ro in opt(any::<bool>()),
        lb_enabled in any::<bool>(),
        lb_host in 200u8..=220,
        lb_endpoint in opt(prop_oneof![Just(ServiceEndpoint::Rw), Just(ServiceEndpoint::Ro)]),
        n_dbs in 0usize..4,
        rules in prop::collection::vec((prop::collection::vec(name(), 0..3), prop::collection::vec(prop::sample::select(PRIVATE), 0..3), any::<bool>(), any::<bool>()), 0..4),
        monitoring in opt((any::<bool>(), opt(name()), opt(prop::sample::select(vec!["15s", "1m", "30s"])))),
    ) -> PostgresCluster {
        let roles: Vec<RoleSpec> = (0..n_dbs)
            .map(|i| RoleSpec {
                name: format!("role-{i}"),
                grants: (0..n_dbs)
                    .filter(|j| *j != i)
                    .map(|j| GrantSpec { database: format!("db_{j}"), privileges: (j % 2 == 0).then_some(Privileges::ReadWrite) })
                    .collect(),
                connection_limit: (i % 2 == 0).then_some(i as i32 * 10),
            })
            .collect();
        let databases: Vec<DatabaseSpec> = (0..n_dbs)
            .map(|i| DatabaseSpec { name: format!("db_{i}"), owner: format!("role-{i}"), extensions: if i == 0 { vec!["pg_stat_statements".into()] } else { vec![] } })
            .collect();
        let ro_enabled = ro.unwrap_or(true);
        let mut access: Vec<AccessRule> = Vec::new();
        if n_dbs > 0 {
            for (i, (namespaces, cidrs, use_ro, use_lb)) in rules.into_iter().enumerate() {
                let mut endpoints = vec![AccessEndpoint::Rw];
                if use_ro && ro_enabled { endpoints.push(AccessEndpoint::Ro); }
                if use_lb && lb_enabled { endpoints.push(AccessEndpoint::LoadBalancer); }
                let mut from = AccessSource { namespaces, cidrs: cidrs.into_iter().map(str::to_owned).collect(), ..Default::default() };
                if from.namespaces.is_empty() && from.cidrs.is_empty() {
                    from.pod_labels.insert("app".into(), format!("app-{i}"));
                }
                access.push(AccessRule {
                    name: format!("rule-{i}"),
                    from,
                    endpoints,
                    databases: vec![format!("db_{}", i % n_dbs)],
                    roles: vec![format!("role-{}", i % n_dbs)],
                });
            }
            if lb_enabled {
                access.push(AccessRule {
                    name: "admins".into(),
                    from: AccessSource { cidrs: vec!["10.0.10.0/24".into()], ..Default::default() },
                    endpoints: vec![AccessEndpoint::LoadBalancer],
                    databases: vec!["db_0".into()],
                    roles: vec!["role-0".into()],
                });
            }
        }
        let lb_enabled = lb_enabled && n_dbs > 0;
        PostgresCluster {
            metadata: ObjectMeta { name: Some(name), namespace: Some(namespace), ..Default::default() },
            spec: PostgresClusterSpec {
                instances: Some(instances),
                postgres: Some(PostgresSpec { version, image: None, parameters }),
                storage: Some(StorageSpec { size, storage_class: None, retention }),
                resources,
                replication: Some(ReplicationSpec {
                    mode: Some(if sync && instances >= 2 { ReplicationMode::Sync } else { ReplicationMode::Async }),
                    when_no_standby: fallback,
                    max_failover_lag: lag,
                }),
                failover,
                services: Some(ServicesSpec {
                    rw: None,
                    ro: ro.map(|e| EndpointSpec { enabled: Some(e) }),
                    load_balancer: lb_enabled.then(|| LoadBalancerSpec {
                        enabled: Some(true),
                        address: Some(format!("10.0.20.{lb_host}")),
                        pool: Some("cluster-vlan".into()),
                        endpoint: lb_endpoint,
                        allowed_ranges: vec!["10.0.20.192/27".into()],
                        allow_public: None,
                    }),
                }),
                access,
                databases,
                roles,
                network: None,
                monitoring: monitoring.map(|(enabled, namespace, interval)| MonitoringSpec {
                    enabled: Some(enabled),
                    namespace,
                    interval: interval.map(str::to_owned),
                    ..Default::default()
                }),
            },
            status: None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Generated specs are valid, and their YAML and JSON forms load back unchanged.
    #[test]
    fn valid_specs_round_trip(c in cluster()) {
        let v = validate(&c);
        prop_assert!(v.is_ok(), "{}", v.expect_err("checked"));
        let yaml = serde_norway::to_string(&c).expect("serializes");
        let from_yaml = load_one(&yaml).expect("own YAML loads");
        prop_assert!(from_yaml.problems.is_empty());
        prop_assert_eq!(&from_yaml.cluster, &c, "YAML:\n{}", yaml);
        let json = serde_json::to_string_pretty(&c).expect("serializes");
        let from_json = load_one(&json).expect("own JSON loads");
        prop_assert!(from_json.problems.is_empty());
        prop_assert_eq!(&from_json.cluster, &c);
    }

    /// Resolving is idempotent, and the resolved spec validates to the same cluster.
    #[test]
    fn resolve_is_idempotent(c in cluster()) {
        let once = resolve(&c.spec);
        prop_assert_eq!(&resolve(&once), &once);
        let original = validate(&c).expect("generated specs are valid");
        let explicit = PostgresCluster { spec: once, ..c.clone() };
        prop_assert_eq!(validate(&explicit).expect("resolved is valid"), original);
    }

    /// The resolved YAML the agents in Kubernetes read (the ConfigMap's
    /// `cluster.yaml`) loads and validates to the same cluster.
    #[test]
    fn resolved_yaml_is_the_same_cluster(c in cluster()) {
        let validated = validate(&c).expect("generated specs are valid");
        let yaml = validated.resolved_yaml();
        let loaded = load_one(&yaml).expect("the resolved YAML loads");
        prop_assert!(loaded.problems.is_empty(), "{:?}\n{}", loaded.problems, yaml);
        prop_assert_eq!(loaded.validate().expect("the resolved YAML is valid"), validated);
    }
}
