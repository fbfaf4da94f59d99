//! Security properties of the rendered objects, checked on every golden case
//! and on targeted fixtures.

use std::collections::BTreeMap;

use pgcluster_core::access::cidr::is_private_net;
use pgcluster_core::api::v1alpha1::{AccessEndpoint, ServiceEndpoint};
use pgcluster_k8s::build::secrets::PASSWORD_KEY;
use pgcluster_k8s::render::{self, RenderError};
use pgcluster_k8s::testing::{homelab, pods, spec};
use pgcluster_k8s::{BuildOptions, Bundle, build};

mod cases {
    include!("support/cases.rs");
}

fn bundles() -> Vec<(&'static str, Bundle)> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    cases::all(&repo)
        .into_iter()
        .map(|(name, c)| {
            (
                name,
                build(&c, &BuildOptions::default()).expect("cases build"),
            )
        })
        .collect()
}

/// No container runs as root, escalates privileges, keeps a capability or runs unconfined.
#[test]
fn containers_are_locked_down() {
    for (name, bundle) in bundles() {
        let pod = bundle
            .statefulset
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("the StatefulSet has a pod spec");
        let psc = pod.security_context.as_ref().expect("pod securityContext");
        assert_eq!(psc.run_as_non_root, Some(true), "{name}");
        assert!(psc.run_as_user.is_some_and(|u| u != 0), "{name}");
        assert!(psc.run_as_group.is_some_and(|g| g != 0), "{name}");
        assert!(psc.fs_group.is_some(), "{name}");
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}"
        );
        assert_ne!(pod.host_network, Some(true));
        assert_ne!(pod.host_pid, Some(true));
        assert_ne!(pod.host_ipc, Some(true));
        let containers = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for c in containers {
            let sc = c
                .security_context
                .as_ref()
                .expect("container securityContext");
            assert_eq!(sc.run_as_non_root, Some(true), "{name}/{}", c.name);
            assert!(sc.run_as_user.is_some_and(|u| u != 0), "{name}/{}", c.name);
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{name}/{}",
                c.name
            );
            assert_eq!(sc.privileged, Some(false), "{name}/{}", c.name);
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{name}/{}",
                c.name
            );
            let caps = sc.capabilities.as_ref().expect("capabilities");
            assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]), "{name}/{}", c.name);
            assert!(
                caps.add.as_ref().is_none_or(Vec::is_empty),
                "{name}/{}",
                c.name
            );
            assert_eq!(
                sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
                Some("RuntimeDefault"),
                "{name}/{}",
                c.name
            );
        }
    }
}

/// Deleting the cluster keeps the data unless the spec says Delete.
#[test]
fn volumes_are_retained_by_default() {
    let policy = |storage: &str| {
        let c = pgcluster_core::load::load_one(&format!(
            "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {{name: db, namespace: db}}
spec: {{instances: 2{storage}}}
"
        ))
        .expect("the spec loads")
        .validate()
        .expect("the spec is valid");
        let b = build(&c, &BuildOptions::default()).expect("builds");
        let p = b
            .statefulset
            .spec
            .and_then(|s| s.persistent_volume_claim_retention_policy)
            .expect("retention policy is always set");
        (p.when_deleted, p.when_scaled)
    };
    let retain = Some("Retain".to_owned());
    let delete = Some("Delete".to_owned());
    // No `storage` at all, and `storage` without `retention`: the default.
    assert_eq!(policy(""), (retain.clone(), retain.clone()));
    assert_eq!(policy(", storage: {size: 5Gi}"), (retain.clone(), retain));
    assert_eq!(
        policy(", storage: {retention: Delete}"),
        (delete.clone(), delete)
    );
}

/// A public source range never reaches the LoadBalancer without the rule's
/// and the LoadBalancer's allowPublic: validation refuses it (the builder
/// refuses it again, see `PublicSourceRange`), and with both opt-ins the
/// range is what the Service admits.
#[test]
fn no_public_source_range_without_opt_in() {
    let spec = |allow: bool| {
        format!(
            "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {{name: db, namespace: db}}
spec:
  instances: 2
  databases: [{{name: app, owner: app}}]
  roles: [{{name: app}}]
  services:
    loadBalancer: {{enabled: true, address: 10.0.20.200, endpoint: rw, allowPublic: {allow}}}
  access:
    - name: net
      from: {{cidrs: [8.8.8.0/24], allowPublic: {allow}}}
      endpoints: [loadBalancer]
      databases: [app]
      roles: [app]
"
        )
    };
    let load = |allow| {
        pgcluster_core::load::load_one(&spec(allow))
            .expect("the spec loads")
            .validate()
    };
    let refused = load(false).expect_err("a public range without opt-in is refused");
    assert!(
        refused.has_path("spec.access[0].from.cidrs[0]"),
        "{refused}"
    );
    let opted_in = load(true).expect("opted in");
    let bundle = build(&opted_in, &BuildOptions::default()).expect("opted in builds");
    let ranges: Vec<String> = bundle
        .services
        .iter()
        .filter_map(|s| s.spec.as_ref()?.load_balancer_source_ranges.clone())
        .flatten()
        .collect();
    assert_eq!(ranges, ["8.8.8.0/24"]);
    // and no golden case admits a public range through the LoadBalancer or a NetworkPolicy
    for (name, bundle) in bundles() {
        let mut ranges: Vec<String> = bundle
            .services
            .iter()
            .filter_map(|s| s.spec.as_ref()?.load_balancer_source_ranges.clone())
            .flatten()
            .collect();
        for np in &bundle.network_policies {
            for rule in np.spec.iter().flat_map(|s| s.ingress.iter().flatten()) {
                for peer in rule.from.iter().flatten() {
                    ranges.extend(peer.ip_block.as_ref().map(|b| b.cidr.clone()));
                }
            }
        }
        for range in ranges {
            let net: ipnet::IpNet = range.parse().expect("rendered ranges parse");
            assert!(is_private_net(&net), "{name}: public range {net}");
        }
    }
}

/// A LoadBalancer that no rule admits addresses through would be open to
/// all (a Service with empty source ranges): validation refuses it, also
/// when only pods are admitted (they never come through it).
#[test]
fn load_balancer_needs_source_ranges() {
    for endpoints in [
        &[AccessEndpoint::Rw][..],
        &[AccessEndpoint::Rw, AccessEndpoint::LoadBalancer],
    ] {
        let refused = spec("db", 2)
            .with_app("app")
            .with_rule("apps", vec![pods("apps")], endpoints, &["app"], &["app"])
            .with_load_balancer("10.0.20.200", ServiceEndpoint::Rw)
            .validate()
            .expect_err("a LoadBalancer without CIDR sources is refused");
        assert!(
            refused.has_path("spec.services.loadBalancer.enabled"),
            "{endpoints:?}: {refused}"
        );
    }
}

/// Every NetworkPolicy ingress rule names its peers: an empty `from` would admit everyone.
#[test]
fn no_ingress_rule_admits_everyone() {
    for (name, bundle) in bundles() {
        for np in &bundle.network_policies {
            let spec = np.spec.as_ref().expect("spec");
            assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
            for rule in spec.ingress.iter().flatten() {
                assert!(rule.from.as_ref().is_some_and(|f| !f.is_empty()), "{name}");
                assert!(rule.ports.as_ref().is_some_and(|p| !p.is_empty()), "{name}");
            }
        }
        assert!(
            bundle.network_policies[0]
                .spec
                .as_ref()
                .is_some_and(|s| s.ingress.is_none()),
            "{name}: the first policy is the default deny"
        );
    }
}

/// Passwords given to build() end up in the Secrets but can never be rendered to a file.
#[test]
fn passwords_are_never_rendered() {
    let options = BuildOptions {
        passwords: BTreeMap::from([("postgres".to_owned(), "s3cret".to_owned())]),
        ..BuildOptions::default()
    };
    let bundle = build(&homelab(), &options).expect("builds");
    assert!(
        bundle.secrets[0]
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key(PASSWORD_KEY))
    );
    assert!(matches!(
        render::to_yaml(&bundle),
        Err(RenderError::SecretValue { .. })
    ));
    for (name, bundle) in bundles() {
        let yaml = render::to_yaml(&bundle).expect("renders");
        assert!(!yaml.contains("password:"), "{name}");
    }
}

/// Every object carries the standard labels (the controller deletes orphans by pgcluster.dev/cluster).
#[test]
fn standard_labels_everywhere() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (case, cluster) in cases::all(&repo) {
        let bundle = build(&cluster, &BuildOptions::default()).expect("cases build");
        let name = cluster.name().as_str();
        for object in bundle.objects() {
            let labels = object.metadata().labels.clone().unwrap_or_default();
            let what = format!("{case}: {} {}", object.kind(), object.name());
            let label = |key: &str| labels.get(key).map(String::as_str);
            assert_eq!(label("app.kubernetes.io/name"), Some("pgcluster"), "{what}");
            assert_eq!(label("app.kubernetes.io/instance"), Some(name), "{what}");
            assert_eq!(
                label("app.kubernetes.io/managed-by"),
                Some("pgcluster"),
                "{what}"
            );
            assert_eq!(label("pgcluster.dev/cluster"), Some(name), "{what}");
            assert!(
                label("app.kubernetes.io/component").is_some_and(|c| !c.is_empty()),
                "{what}: no app.kubernetes.io/component label in {labels:?}"
            );
        }
    }
}
