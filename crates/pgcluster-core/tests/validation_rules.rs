//! Every validation rule, tripped one at a time in the homelab example, names
//! the right field path; several seeded at once are all reported.

mod common;

use common::{Modify, homelab};
use pgcluster_core::Check;
use pgcluster_core::api::v1alpha1::*;
use pgcluster_core::validate;

fn pg(c: &mut PostgresCluster) -> &mut PostgresSpec {
    c.spec.postgres.get_or_insert_with(Default::default)
}
fn lb(c: &mut PostgresCluster) -> &mut LoadBalancerSpec {
    c.spec
        .services
        .get_or_insert_with(Default::default)
        .load_balancer
        .get_or_insert_with(Default::default)
}
fn failover(c: &mut PostgresCluster) -> &mut FailoverSpec {
    c.spec.failover.get_or_insert_with(Default::default)
}
fn resources(c: &mut PostgresCluster) -> &mut ResourcesSpec {
    c.spec.resources.get_or_insert_with(Default::default)
}
fn requests(c: &mut PostgresCluster) -> &mut ResourceAmounts {
    resources(c).requests.get_or_insert_with(Default::default)
}
fn limits(c: &mut PostgresCluster) -> &mut ResourceAmounts {
    resources(c).limits.get_or_insert_with(Default::default)
}
fn storage(c: &mut PostgresCluster) -> &mut StorageSpec {
    c.spec.storage.get_or_insert_with(Default::default)
}
fn network(c: &mut PostgresCluster) -> &mut NetworkSpec {
    c.spec.network.get_or_insert_with(Default::default)
}
fn monitoring(c: &mut PostgresCluster) -> &mut MonitoringSpec {
    c.spec.monitoring.get_or_insert_with(Default::default)
}
fn param(c: &mut PostgresCluster, k: &str, v: &str) {
    pg(c).parameters.insert(k.into(), v.into());
}

type Case = (&'static str, fn(&mut PostgresCluster), &'static str, Check);

/// (what, seed one error, expected path, expected check). Homelab indices:
/// access[0]=gitea (pods), access[1]=nextcloud (pods), access[2]=admins (cidr, LB);
/// databases[0]=gitea, [1]=nextcloud; roles[0]=gitea, [1]=nextcloud, [2]=admin (2 grants).
const CASES: &[Case] = &[
    (
        "missing name",
        |c| c.metadata.name = None,
        "metadata.name",
        Check::Object,
    ),
    (
        "uppercase name",
        |c| c.metadata.name = Some("Main".into()),
        "metadata.name",
        Check::InvalidName,
    ),
    (
        "name too long",
        |c| c.metadata.name = Some("a".repeat(41)),
        "metadata.name",
        Check::InvalidName,
    ),
    (
        "bad namespace",
        |c| c.metadata.namespace = Some("data_bases".into()),
        "metadata.namespace",
        Check::InvalidName,
    ),
    (
        "zero instances",
        |c| c.spec.instances = Some(0),
        "spec.instances",
        Check::Instances,
    ),
    (
        "ten instances",
        |c| c.spec.instances = Some(10),
        "spec.instances",
        Check::Instances,
    ),
    (
        "sync with one instance",
        |c| c.spec.instances = Some(1),
        "spec.replication.mode",
        Check::SyncNeedsReplica,
    ),
    (
        "postgres 14",
        |c| pg(c).version = Some(14),
        "spec.postgres.version",
        Check::UnsupportedVersion,
    ),
    (
        "image with space",
        |c| pg(c).image = Some("ghcr.io/x y".into()),
        "spec.postgres.image",
        Check::InvalidImage,
    ),
    (
        "managed port",
        |c| param(c, "port", "5433"),
        "spec.postgres.parameters.port",
        Check::ManagedParameter,
    ),
    (
        "managed listen_addresses",
        |c| param(c, "listen_addresses", "*"),
        "spec.postgres.parameters.listen_addresses",
        Check::ManagedParameter,
    ),
    (
        "managed synchronous_standby_names",
        |c| param(c, "synchronous_standby_names", "*"),
        "spec.postgres.parameters.synchronous_standby_names",
        Check::ManagedParameter,
    ),
    (
        "managed recovery_target_time",
        |c| param(c, "recovery_target_time", "x"),
        "spec.postgres.parameters.recovery_target_time",
        Check::ManagedParameter,
    ),
    (
        "parameter name with space",
        |c| param(c, "work mem", "4MB"),
        "spec.postgres.parameters[\"work mem\"]",
        Check::InvalidParameter,
    ),
    (
        "parameter value with newline",
        |c| param(c, "work_mem", "4MB\nport = 1"),
        "spec.postgres.parameters.work_mem",
        Check::InvalidParameter,
    ),
    (
        "storage size GB",
        |c| storage(c).size = Some("10GB".into()),
        "spec.storage.size",
        Check::InvalidQuantity,
    ),
    (
        "storage size zero",
        |c| storage(c).size = Some("0".into()),
        "spec.storage.size",
        Check::InvalidQuantity,
    ),
    (
        "storage class",
        |c| storage(c).storage_class = Some("Local_Path".into()),
        "spec.storage.storageClass",
        Check::InvalidName,
    ),
    (
        "cpu request",
        |c| requests(c).cpu = Some("lots".into()),
        "spec.resources.requests.cpu",
        Check::InvalidQuantity,
    ),
    (
        "memory limit",
        |c| limits(c).memory = Some("2G B".into()),
        "spec.resources.limits.memory",
        Check::InvalidQuantity,
    ),
    (
        "memory request above limit",
        |c| requests(c).memory = Some("4Gi".into()),
        "spec.resources.requests.memory",
        Check::RequestAboveLimit,
    ),
    (
        "cpu request above limit",
        |c| limits(c).cpu = Some("100m".into()),
        "spec.resources.requests.cpu",
        Check::RequestAboveLimit,
    ),
    (
        "max failover lag",
        |c| {
            c.spec
                .replication
                .get_or_insert_with(Default::default)
                .max_failover_lag = Some("16 MB".into())
        },
        "spec.replication.maxFailoverLag",
        Check::InvalidQuantity,
    ),
    (
        "lease without unit",
        |c| failover(c).lease_duration = Some("2".into()),
        "spec.failover.leaseDuration",
        Check::InvalidDuration,
    ),
    (
        "loop interval bad unit",
        |c| failover(c).loop_interval = Some("1d".into()),
        "spec.failover.loopInterval",
        Check::InvalidDuration,
    ),
    (
        "slow loop",
        |c| failover(c).loop_interval = Some("1s".into()),
        "spec.failover.loopInterval",
        Check::UnsafeTimings,
    ),
    (
        "fencing after expiry",
        |c| failover(c).renew_deadline = Some("1900ms".into()),
        "spec.failover.leaseDuration",
        Check::UnsafeTimings,
    ),
    (
        "zero renew deadline",
        |c| failover(c).renew_deadline = Some("0s".into()),
        "spec.failover.renewDeadline",
        Check::UnsafeTimings,
    ),
    (
        "pod cidr without prefix",
        |c| network(c).pod_cidr = Some("10.42.0.0".into()),
        "spec.network.podCidr",
        Check::InvalidAddress,
    ),
    (
        "overlapping service cidr",
        |c| network(c).service_cidr = Some("10.42.128.0/17".into()),
        "spec.network.serviceCidr",
        Check::OverlappingRanges,
    ),
    (
        "LB address outside pool",
        |c| lb(c).address = Some("10.0.20.230".into()),
        "spec.services.loadBalancer.address",
        Check::AddressOutOfRange,
    ),
    (
        "LB address not an IP",
        |c| lb(c).address = Some("10.0.20".into()),
        "spec.services.loadBalancer.address",
        Check::InvalidAddress,
    ),
    (
        "LB address public",
        |c| {
            lb(c).allowed_ranges.clear();
            lb(c).address = Some("203.0.113.10".into());
        },
        "spec.services.loadBalancer.address",
        Check::PublicAddress,
    ),
    (
        "LB address in pod CIDR",
        |c| {
            lb(c).allowed_ranges.clear();
            lb(c).address = Some("10.42.0.10".into());
        },
        "spec.services.loadBalancer.address",
        Check::AddressOutOfRange,
    ),
    (
        "LB range public",
        |c| lb(c).allowed_ranges.push("203.0.113.0/24".into()),
        "spec.services.loadBalancer.allowedRanges[4]",
        Check::PublicAddress,
    ),
    (
        "LB range host bits",
        |c| lb(c).allowed_ranges[0] = "10.0.20.201/29".into(),
        "spec.services.loadBalancer.allowedRanges[0]",
        Check::InvalidAddress,
    ),
    (
        "LB pool name",
        |c| lb(c).pool = Some("Cluster VLAN".into()),
        "spec.services.loadBalancer.pool",
        Check::InvalidName,
    ),
    (
        "LB disabled but used",
        |c| lb(c).enabled = Some(false),
        "spec.access[2].endpoints[0]",
        Check::EndpointDisabled,
    ),
    (
        "rw disabled but used",
        |c| {
            c.spec.services.get_or_insert_with(Default::default).rw = Some(EndpointSpec {
                enabled: Some(false),
            })
        },
        "spec.access[0].endpoints[0]",
        Check::EndpointDisabled,
    ),
    (
        "LB enabled but unused",
        |c| c.spec.access[2].endpoints = vec![AccessEndpoint::Rw],
        "spec.services.loadBalancer.enabled",
        Check::LoadBalancerUnused,
    ),
    (
        // Pods never come through the LoadBalancer; its Service would have
        // no source ranges (found by access_props once its clusters went
        // through validate()).
        "LB admitted only from pods",
        |c| {
            c.spec.access[2].endpoints = vec![AccessEndpoint::Rw];
            c.spec.access[0]
                .endpoints
                .push(AccessEndpoint::LoadBalancer);
        },
        "spec.services.loadBalancer.enabled",
        Check::LoadBalancerUnused,
    ),
    (
        "public CIDR",
        |c| c.spec.access[2].from.cidrs = vec!["8.8.8.0/24".into()],
        "spec.access[2].from.cidrs[0]",
        Check::PublicAddress,
    ),
    (
        "CIDR with leading zeros (octal elsewhere)",
        |c| c.spec.access[2].from.cidrs = vec!["010.0.10.0/24".into()],
        "spec.access[2].from.cidrs[0]",
        Check::InvalidAddress,
    ),
    (
        "pod CIDR with leading zeros",
        |c| network(c).pod_cidr = Some("010.42.0.0/16".into()),
        "spec.network.podCidr",
        Check::InvalidAddress,
    ),
    (
        "LB range with a zero-padded prefix length",
        |c| lb(c).allowed_ranges[0] = "10.0.20.200/029".into(),
        "spec.services.loadBalancer.allowedRanges[0]",
        Check::InvalidAddress,
    ),
    (
        "pod CIDR of every IPv4 address",
        |c| network(c).pod_cidr = Some("0.0.0.0/0".into()),
        "spec.network.podCidr",
        Check::PublicAddress,
    ),
    (
        "pod CIDR of every IPv6 address",
        |c| network(c).pod_cidr = Some("::/0".into()),
        "spec.network.podCidr",
        Check::PublicAddress,
    ),
    (
        "public pod CIDR",
        |c| network(c).pod_cidr = Some("8.8.0.0/16".into()),
        "spec.network.podCidr",
        Check::PublicAddress,
    ),
    (
        "public CIDR through a LoadBalancer without its opt-in",
        |c| {
            c.spec.access[2].from.cidrs = vec!["8.8.8.0/24".into()];
            c.spec.access[2].from.allow_public = Some(true);
        },
        "spec.access[2].from.cidrs[0]",
        Check::PublicAddress,
    ),
    (
        "CIDR host bits",
        |c| c.spec.access[2].from.cidrs = vec!["10.0.10.7/24".into()],
        "spec.access[2].from.cidrs[0]",
        Check::InvalidAddress,
    ),
    (
        "CIDR garbage",
        |c| c.spec.access[2].from.cidrs.push("management-vlan".into()),
        "spec.access[2].from.cidrs[1]",
        Check::InvalidAddress,
    ),
    (
        "rule without source",
        |c| c.spec.access[2].from = AccessSource::default(),
        "spec.access[2].from",
        Check::EmptyRule,
    ),
    (
        "rule without databases",
        |c| c.spec.access[0].databases.clear(),
        "spec.access[0].databases",
        Check::EmptyRule,
    ),
    (
        "rule without roles",
        |c| c.spec.access[0].roles.clear(),
        "spec.access[0].roles",
        Check::EmptyRule,
    ),
    (
        "rule names undeclared database",
        |c| c.spec.access[0].databases = vec!["wiki".into()],
        "spec.access[0].databases[0]",
        Check::UndeclaredReference,
    ),
    (
        "rule names undeclared role",
        |c| c.spec.access[2].roles.push("root".into()),
        "spec.access[2].roles[1]",
        Check::UndeclaredReference,
    ),
    (
        "rule name invalid",
        |c| c.spec.access[0].name = "Gitea Apps".into(),
        "spec.access[0].name",
        Check::InvalidName,
    ),
    (
        "duplicate rule",
        |c| c.spec.access[1].name = "gitea".into(),
        "spec.access[1].name",
        Check::DuplicateName,
    ),
    (
        "rule namespace invalid",
        |c| c.spec.access[0].from.namespaces = vec!["Apps".into()],
        "spec.access[0].from.namespaces[0]",
        Check::InvalidName,
    ),
    (
        "pod label value invalid",
        |c| {
            c.spec.access[0]
                .from
                .pod_labels
                .insert("app.kubernetes.io/name".into(), "git tea".into());
        },
        "spec.access[0].from.podLabels[\"app.kubernetes.io/name\"]",
        Check::InvalidLabel,
    ),
    (
        "pod label key invalid",
        |c| {
            c.spec.access[0]
                .from
                .pod_labels
                .insert("-tier".into(), "web".into());
        },
        "spec.access[0].from.podLabels[\"-tier\"]",
        Check::InvalidLabel,
    ),
    (
        "duplicate database",
        |c| c.spec.databases[1].name = "gitea".into(),
        "spec.databases[1].name",
        Check::DuplicateName,
    ),
    (
        "reserved database",
        |c| {
            c.spec.databases.push(DatabaseSpec {
                name: "template1".into(),
                owner: "gitea".into(),
                extensions: vec![],
            })
        },
        "spec.databases[2].name",
        Check::ReservedName,
    ),
    (
        "database name invalid",
        |c| {
            c.spec.databases.push(DatabaseSpec {
                name: "1wiki".into(),
                owner: "gitea".into(),
                extensions: vec![],
            })
        },
        "spec.databases[2].name",
        Check::InvalidName,
    ),
    (
        "database owner undeclared",
        |c| c.spec.databases[0].owner = "git".into(),
        "spec.databases[0].owner",
        Check::UndeclaredReference,
    ),
    (
        "database owner superuser",
        |c| c.spec.databases[0].owner = "postgres".into(),
        "spec.databases[0].owner",
        Check::UndeclaredReference,
    ),
    (
        "extension name invalid",
        |c| c.spec.databases[0].extensions.push("pg stat".into()),
        "spec.databases[0].extensions[0]",
        Check::InvalidName,
    ),
    (
        "duplicate role",
        |c| c.spec.roles[1].name = "gitea".into(),
        "spec.roles[1].name",
        Check::DuplicateName,
    ),
    (
        "reserved role postgres",
        |c| {
            c.spec.roles.push(RoleSpec {
                name: "postgres".into(),
                ..Default::default()
            })
        },
        "spec.roles[3].name",
        Check::ReservedName,
    ),
    (
        "reserved role pg_",
        |c| {
            c.spec.roles.push(RoleSpec {
                name: "pg_monitor".into(),
                ..Default::default()
            })
        },
        "spec.roles[3].name",
        Check::ReservedName,
    ),
    (
        "reserved replication role",
        |c| {
            c.spec.roles.push(RoleSpec {
                name: pgcluster_core::names::REPLICATION_ROLE.into(),
                ..Default::default()
            })
        },
        "spec.roles[3].name",
        Check::ReservedName,
    ),
    (
        "role name invalid",
        |c| {
            c.spec.roles.push(RoleSpec {
                name: "Wiki".into(),
                ..Default::default()
            })
        },
        "spec.roles[3].name",
        Check::InvalidName,
    ),
    (
        "grant undeclared database",
        |c| c.spec.roles[2].grants[0].database = "wiki".into(),
        "spec.roles[2].grants[0].database",
        Check::UndeclaredReference,
    ),
    (
        "duplicate grant",
        |c| c.spec.roles[2].grants[1].database = "gitea".into(),
        "spec.roles[2].grants[1].database",
        Check::DuplicateName,
    ),
    (
        "connection limit",
        |c| c.spec.roles[0].connection_limit = Some(-5),
        "spec.roles[0].connectionLimit",
        Check::OutOfRange,
    ),
    (
        "monitoring namespace",
        |c| monitoring(c).namespace = Some("Monitoring".into()),
        "spec.monitoring.namespace",
        Check::InvalidName,
    ),
    (
        "monitoring interval unparsable",
        |c| monitoring(c).interval = Some("fast".into()),
        "spec.monitoring.interval",
        Check::InvalidDuration,
    ),
    (
        "monitoring interval too short",
        |c| monitoring(c).interval = Some("100ms".into()),
        "spec.monitoring.interval",
        Check::InvalidDuration,
    ),
    (
        "monitoring label",
        |c| {
            monitoring(c)
                .labels
                .insert("release".into(), "kube prometheus".into());
        },
        "spec.monitoring.labels.release",
        Check::InvalidLabel,
    ),
];

/// The homelab example, the fixture every case starts from, is valid.
#[test]
fn fixture_is_valid() {
    validate(&homelab()).expect("homelab is valid");
}

/// Each rule, seeded alone, is reported at its field path with its check.
#[test]
fn each_rule_names_its_path() {
    let mut failures = Vec::new();
    for (what, seed, path, check) in CASES {
        let cluster = homelab().with(seed);
        match validate(&cluster) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(errors) => {
                if !errors
                    .errors
                    .iter()
                    .any(|e| e.path == *path && e.check == *check)
                {
                    failures.push(format!("{what}: expected {check} at {path}, got {errors}"));
                }
                for e in &errors.errors {
                    assert!(
                        !e.message.is_empty() && !e.hint.is_empty(),
                        "{what}: {e:?} lacks message or hint"
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Several errors seeded at once are all reported, not just the first.
#[test]
fn all_problems_are_reported_at_once() {
    // Indices of cases touching unrelated fields.
    let chosen = [
        "ten instances",
        "postgres 14",
        "managed port",
        "storage size GB",
        "slow loop",
        "LB address outside pool",
        "public CIDR",
        "rule names undeclared database",
        "database owner undeclared",
        "reserved role pg_",
        "monitoring interval unparsable",
    ];
    let cases: Vec<&Case> = chosen
        .iter()
        .map(|name| {
            CASES
                .iter()
                .find(|c| c.0 == *name)
                .expect("chosen case exists")
        })
        .collect();
    let mut cluster = homelab();
    for (_, seed, _, _) in &cases {
        seed(&mut cluster);
    }
    let errors = validate(&cluster).expect_err("many problems");
    for (what, _, path, check) in cases {
        assert!(
            errors
                .errors
                .iter()
                .any(|e| e.path == *path && e.check == *check),
            "{what}: expected {check} at {path} in {errors}"
        );
    }
}

/// A spec of just a name, a namespace and an empty `spec` (the CRD requires
/// the field) is a valid 1 primary + 1 replica cluster on local-path.
#[test]
fn two_line_spec_is_a_working_cluster() {
    let loaded = pgcluster_core::load::load_one(
        "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: db, namespace: apps}\nspec: {}\n",
    )
    .expect("loads");
    let v = loaded.validate().expect("valid");
    assert_eq!(v.instances(), 2);
    assert_eq!(v.storage().storage_class, "local-path");
    assert_eq!(v.postgres().version, 17);
    assert!(v.services().rw && v.services().ro && v.services().load_balancer.is_none());
    assert_eq!(
        v.timings(),
        pgcluster_core::timing::FailoverTimings::default()
    );
    assert_eq!(v.network().pod_cidr.to_string(), "10.42.0.0/16");
    // The resolved spec is fully explicit and validates to the same cluster.
    let again = pgcluster_core::validate(&PostgresCluster {
        metadata: loaded.cluster.metadata.clone(),
        spec: v.resolved_spec().clone(),
        status: None,
    })
    .expect("resolved spec is valid");
    assert_eq!(again, v);
}

/// A missing namespace defaults to `default` (what kubectl would use).
#[test]
fn missing_namespace_defaults() {
    let v = validate(&homelab().with(|c| c.metadata.namespace = None)).expect("valid");
    assert_eq!(v.namespace(), "default");
}

/// Pod sources without namespaces resolve to the cluster's namespace in the access model.
#[test]
fn empty_namespaces_resolve_to_cluster_namespace() {
    let v = validate(&homelab().with(|c| c.spec.access[0].from.namespaces.clear())).expect("valid");
    match &v.access().rules[0].sources[0] {
        pgcluster_core::access::Source::Pods { namespaces, .. } => {
            assert_eq!(namespaces.iter().collect::<Vec<_>>(), ["databases"]);
        }
        other => panic!("{other:?}"),
    }
}

/// A hostile or mistyped spec as text: (what, text, expected path, check, line).
/// These are found by the loader, so they are checked on the text.
type TextCase = (&'static str, String, &'static str, Check, usize);

fn homelab_with(find: &str, replace: &str) -> String {
    assert!(common::HOMELAB_YAML.contains(find), "{find}");
    common::HOMELAB_YAML.replacen(find, replace, 1)
}

fn text_cases() -> Vec<TextCase> {
    vec![
        (
            "duplicate key",
            homelab_with("  instances: 2\n", "  instances: 2\n  instances: 3\n"),
            "spec.instances",
            Check::DuplicateKey,
            19,
        ),
        (
            "duplicate key in a list item",
            homelab_with(
                "    - name: gitea\n      owner: gitea\n",
                "    - name: gitea\n      owner: gitea\n      owner: admin\n",
            ),
            "spec.databases[0].owner",
            Check::DuplicateKey,
            58,
        ),
        (
            "duplicate key in JSON",
            r#"{"apiVersion": "pgcluster.dev/v1alpha1", "kind": "PostgresCluster",
"metadata": {"name": "main"},
"spec": {"instances": 2, "instances": 3}}"#
                .to_owned(),
            "spec.instances",
            Check::DuplicateKey,
            3,
        ),
        (
            "wrong type",
            homelab_with("  instances: 2\n", "  instances: two\n"),
            "spec.instances",
            Check::InvalidType,
            18,
        ),
        (
            "bad enum value",
            homelab_with("    retention: Retain\n", "    retention: retain\n"),
            "spec.storage.retention",
            Check::UnknownValue,
            27,
        ),
        (
            "bad enum value in a list",
            homelab_with("      endpoints: [rw, ro]\n", "      endpoints: [rw, lb]\n"),
            "spec.access[0].endpoints[1]",
            Check::UnknownValue,
            77,
        ),
        (
            "missing required field",
            homelab_with(
                "    - name: gitea\n      owner: gitea\n",
                "    - name: gitea\n",
            ),
            "spec.databases[0].owner",
            Check::MissingField,
            56,
        ),
    ]
}

/// Duplicate keys, wrong types and bad values found by the loader are
/// reported at their field path and line, with a hint.
#[test]
fn loader_problems_name_path_and_line() {
    let mut failures = Vec::new();
    for (what, text, path, check, line) in text_cases() {
        let errors = match pgcluster_core::load::load_one(&text) {
            Err(e) => {
                failures.push(format!("{what}: refused whole: {e}"));
                continue;
            }
            Ok(loaded) => match loaded.validate() {
                Ok(_) => {
                    failures.push(format!("{what}: accepted"));
                    continue;
                }
                Err(errors) => errors,
            },
        };
        if !errors
            .errors
            .iter()
            .any(|e| e.path == path && e.check == check && e.line == Some(line))
        {
            failures.push(format!(
                "{what}: expected {check} at {path} line {line}, got {errors:?}"
            ));
        }
        assert!(
            errors.errors.iter().all(|e| !e.hint.is_empty()),
            "{what}: {errors}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Four mistakes of different kinds (a wrong type, two bad enum values, an
/// unknown field) and a rule violation are all reported in one run, each with
/// its path and line, instead of one per run.
#[test]
fn type_and_enum_errors_come_all_at_once() {
    let text = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: main}
spec:
  instances: three
  replication:
    mode: synchronous
  storage:
    retention: retain
  services:
    loadBalancer:
      enabled: yes
  instance: 2
  network:
    podCidr: 0.0.0.0/0
";
    let loaded =
        pgcluster_core::load::load_one(text).expect("the mistakes are in fields, not syntax");
    let errors = loaded.validate().expect_err("five problems");
    let found: Vec<(&str, Check, Option<usize>)> = errors
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.check, e.line))
        .collect();
    for expected in [
        ("spec.instances", Check::InvalidType, Some(5)),
        ("spec.replication.mode", Check::UnknownValue, Some(7)),
        ("spec.storage.retention", Check::UnknownValue, Some(9)),
        (
            "spec.services.loadBalancer.enabled",
            Check::InvalidType,
            Some(12),
        ),
        ("spec.instance", Check::UnknownField, Some(13)),
        ("spec.network.podCidr", Check::PublicAddress, Some(15)),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    let retention = errors
        .errors
        .iter()
        .find(|e| e.path == "spec.storage.retention")
        .expect("reported");
    assert_eq!(
        retention.hint,
        "did you mean `Retain`? (values are case-sensitive)"
    );
}

/// An item dropped for a type error does not shift the paths of later
/// problems: they keep the index written in the file.
#[test]
fn later_items_keep_their_written_index() {
    let text = homelab_with(
        "  access:\n",
        "  access:\n    - name: broken\n      from: {cidrs: 5}\n      databases: [gitea]\n      roles: [gitea]\n",
    )
    .replace("[10.0.10.0/24]", "[10.0.10.1/24]");
    let loaded = pgcluster_core::load::load_one(&text).expect("loads");
    let errors = loaded.validate().expect_err("two problems");
    assert_eq!(
        errors.len(),
        2,
        "no follow-on problem from the dropped value: {errors}"
    );
    assert!(errors.has_path("spec.access[0].from.cidrs"), "{errors}");
    assert!(
        errors
            .errors
            .iter()
            .any(|e| e.path == "spec.access[3].from.cidrs[0]" && e.check == Check::InvalidAddress),
        "{errors}"
    );
}

/// A YAML alias bomb of a few kilobytes is refused at the alias limit, naming it.
#[test]
fn alias_bomb_is_refused_at_the_limit() {
    let err = pgcluster_core::load::load(&alias_bomb()).expect_err("refused");
    assert!(
        matches!(err, pgcluster_core::load::LoadError::Limit { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("10000 copied nodes"), "{err}");
}

/// An input past 1 MiB is refused before it is parsed.
#[test]
fn oversized_input_is_refused() {
    let text = format!("{}# {}\n", common::HOMELAB_YAML, "x".repeat(1024 * 1024));
    let err = pgcluster_core::load::load(&text).expect_err("refused");
    assert!(
        err.to_string()
            .contains("the input is past the loader's limit of 1024 KiB"),
        "{err}"
    );
}

/// About 3 KB that expand to ten million nodes through nested aliases.
pub fn alias_bomb() -> String {
    let leaf = vec!["x"; 1000].join(", ");
    let mut text = format!("a: &a [{leaf}]\n");
    let mut prev = "a".to_owned();
    for i in 1..5 {
        text.push_str(&format!(
            "x{i}: &l{i} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
        prev = format!("l{i}");
    }
    text + "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: bomb}\n"
}
