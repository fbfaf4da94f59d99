//! The table of Kubernetes API calls the controller and the agents make,
//! with the code that makes each. The RBAC test compares it with the
//! controller's ClusterRole and the agents' Role from the builders (which
//! `kubernetes/controller/` renders): every call must be granted, and every
//! grant must be a call or be listed as an unused grant with its reason.

/// One API call: `verb` on `group`/`resource` (group `""` is core).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiCall {
    /// API group.
    pub group: &'static str,
    /// Resource (plural, with `/subresource`).
    pub resource: &'static str,
    /// RBAC verb.
    pub verb: &'static str,
    /// The code making the call.
    pub by: &'static str,
}

const fn call(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    by: &'static str,
) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
        by,
    }
}

/// Every call of the controller.
pub const CONTROLLER_CALLS: &[ApiCall] = &[
    call(
        "pgcluster.dev",
        "postgresclusters",
        "list",
        "controller::run (watch)",
    ),
    call(
        "pgcluster.dev",
        "postgresclusters",
        "watch",
        "controller::run (watch)",
    ),
    call(
        "pgcluster.dev",
        "postgresclusters",
        "patch",
        "reconcile::set_finalizers",
    ),
    call(
        "pgcluster.dev",
        "postgresclusters/status",
        "patch",
        "status::write (server-side apply)",
    ),
    // Owner references with blockOwnerDeletion need update on the owner's finalizers.
    call(
        "pgcluster.dev",
        "postgresclusters/finalizers",
        "update",
        "apply::apply (ownerReferences with blockOwnerDeletion)",
    ),
    // Owned kinds: server-side apply (patch; create when absent), orphan scan and delete, watch.
    call("", "serviceaccounts", "patch", "apply::apply"),
    call(
        "",
        "serviceaccounts",
        "create",
        "apply::apply (apply of a new object)",
    ),
    call(
        "",
        "serviceaccounts",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call("", "serviceaccounts", "watch", "controller::run"),
    call("", "serviceaccounts", "delete", "apply::delete_orphans"),
    call(
        "rbac.authorization.k8s.io",
        "roles",
        "patch",
        "apply::apply",
    ),
    call(
        "rbac.authorization.k8s.io",
        "roles",
        "create",
        "apply::apply",
    ),
    call(
        "rbac.authorization.k8s.io",
        "roles",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call(
        "rbac.authorization.k8s.io",
        "roles",
        "watch",
        "controller::run",
    ),
    call(
        "rbac.authorization.k8s.io",
        "roles",
        "delete",
        "apply::delete_orphans",
    ),
    call(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "patch",
        "apply::apply",
    ),
    call(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "create",
        "apply::apply",
    ),
    call(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "watch",
        "controller::run",
    ),
    call(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "delete",
        "apply::delete_orphans",
    ),
    call("", "configmaps", "patch", "apply::apply"),
    call("", "configmaps", "create", "apply::apply"),
    call(
        "",
        "configmaps",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call("", "configmaps", "watch", "controller::run"),
    call("", "configmaps", "delete", "apply::delete_orphans"),
    call("", "secrets", "patch", "apply::apply (new Secrets only)"),
    call("", "secrets", "create", "apply::apply"),
    call(
        "",
        "secrets",
        "list",
        "dereference, apply::delete_orphans, controller::run",
    ),
    call("", "secrets", "watch", "controller::run"),
    call("", "secrets", "delete", "apply::delete_orphans"),
    call("", "services", "patch", "apply::apply"),
    call("", "services", "create", "apply::apply"),
    call(
        "",
        "services",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call("", "services", "watch", "controller::run"),
    call("", "services", "delete", "apply::delete_orphans"),
    call("apps", "statefulsets", "patch", "apply::apply"),
    call("apps", "statefulsets", "create", "apply::apply"),
    call(
        "apps",
        "statefulsets",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call("apps", "statefulsets", "watch", "controller::run"),
    call("apps", "statefulsets", "delete", "apply::delete_orphans"),
    call("policy", "poddisruptionbudgets", "patch", "apply::apply"),
    call("policy", "poddisruptionbudgets", "create", "apply::apply"),
    call(
        "policy",
        "poddisruptionbudgets",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call("policy", "poddisruptionbudgets", "watch", "controller::run"),
    call(
        "policy",
        "poddisruptionbudgets",
        "delete",
        "apply::delete_orphans",
    ),
    call(
        "networking.k8s.io",
        "networkpolicies",
        "patch",
        "apply::apply",
    ),
    call(
        "networking.k8s.io",
        "networkpolicies",
        "create",
        "apply::apply",
    ),
    call(
        "networking.k8s.io",
        "networkpolicies",
        "list",
        "apply::delete_orphans, controller::run",
    ),
    call(
        "networking.k8s.io",
        "networkpolicies",
        "watch",
        "controller::run",
    ),
    call(
        "networking.k8s.io",
        "networkpolicies",
        "delete",
        "apply::delete_orphans",
    ),
    call(
        "monitoring.coreos.com",
        "servicemonitors",
        "patch",
        "apply::apply",
    ),
    call(
        "monitoring.coreos.com",
        "servicemonitors",
        "create",
        "apply::apply",
    ),
    call(
        "monitoring.coreos.com",
        "servicemonitors",
        "list",
        "apply::delete_orphans",
    ),
    call(
        "monitoring.coreos.com",
        "servicemonitors",
        "delete",
        "apply::delete_orphans",
    ),
    call(
        "monitoring.coreos.com",
        "prometheusrules",
        "patch",
        "apply::apply",
    ),
    call(
        "monitoring.coreos.com",
        "prometheusrules",
        "create",
        "apply::apply",
    ),
    call(
        "monitoring.coreos.com",
        "prometheusrules",
        "list",
        "apply::delete_orphans",
    ),
    call(
        "monitoring.coreos.com",
        "prometheusrules",
        "delete",
        "apply::delete_orphans",
    ),
    call("", "pods", "list", "dereference, controller::run"),
    call("", "pods", "watch", "controller::run"),
    call(
        "",
        "persistentvolumeclaims",
        "list",
        "reconcile::cleanup (retention Delete)",
    ),
    call(
        "",
        "persistentvolumeclaims",
        "delete",
        "reconcile::cleanup (retention Delete)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "get",
        "dereference (cluster lease), leader::try_acquire",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "create",
        "leader::try_acquire",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "update",
        "leader::try_acquire",
    ),
    call(
        "events.k8s.io",
        "events",
        "create",
        "Context::event (kube Recorder)",
    ),
    call(
        "events.k8s.io",
        "events",
        "patch",
        "Context::event (kube Recorder, repeated events)",
    ),
];

/// Every call of an agent (the Lease coordinator and the pod labeler).
pub const AGENT_CALLS: &[ApiCall] = &[
    call(
        "coordination.k8s.io",
        "leases",
        "get",
        "KubeLeaseCoordinator (read_view, cas, switchover)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "update",
        "KubeLeaseCoordinator (cas, switchover)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "create",
        "KubeLeaseCoordinator (first acquire)",
    ),
    call(
        "",
        "pods",
        "list",
        "KubeLeaseCoordinator::read_view (member states)",
    ),
    call(
        "",
        "pods",
        "patch",
        "KubeLeaseCoordinator::publish_member, PodLabeler",
    ),
];

/// Grants of the controller's ClusterRole that no code uses yet, with why
/// they stay (the test fails when this list is stale in either direction).
pub const UNUSED_CONTROLLER_GRANTS: &[(&str, &str, &str)] = &[
    // The controller must hold every permission it grants the agents (no escalation).
    ("", "pods", "get"),
    ("", "pods", "patch"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("coordination.k8s.io", "leases", "watch"),
    ("coordination.k8s.io", "leases", "patch"),
];

/// Grants of the agents' Role that no code uses yet (the agent driver may).
pub const UNUSED_AGENT_GRANTS: &[(&str, &str, &str)] = &[
    ("coordination.k8s.io", "leases", "watch"),
    ("coordination.k8s.io", "leases", "patch"),
    ("", "pods", "get"),
    ("", "pods", "watch"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::rbac::v1::PolicyRule;

    use super::*;
    use crate::build::rbac::{agent_role, controller_cluster_role};

    type Grant = (String, String, String);

    fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
        let mut out = BTreeSet::new();
        for r in rules {
            for g in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    for v in &r.verbs {
                        out.insert((g.clone(), res.clone(), v.clone()));
                    }
                }
            }
        }
        out
    }

    fn calls(table: &[ApiCall]) -> BTreeSet<Grant> {
        table
            .iter()
            .map(|c| (c.group.to_owned(), c.resource.to_owned(), c.verb.to_owned()))
            .collect()
    }

    fn listed(table: &[(&str, &str, &str)]) -> BTreeSet<Grant> {
        table
            .iter()
            .map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check(name: &str, rules: &[PolicyRule], used: &[ApiCall], unused: &[(&str, &str, &str)]) {
        let granted = grants(rules);
        let used = calls(used);
        let missing: Vec<_> = used.difference(&granted).collect();
        assert!(
            missing.is_empty(),
            "{name} lacks grants for calls its code makes: {missing:?}"
        );
        let extra: BTreeSet<Grant> = granted.difference(&used).cloned().collect();
        assert_eq!(
            extra,
            listed(unused),
            "{name}: grants without a call must be listed as unused (and only those)"
        );
    }

    /// The controller's ClusterRole grants every call the controller makes,
    /// and nothing else beyond the listed unused grants.
    #[test]
    fn controller_rbac_matches_its_calls() {
        check(
            "controller ClusterRole",
            &controller_cluster_role().rules.unwrap_or_default(),
            CONTROLLER_CALLS,
            UNUSED_CONTROLLER_GRANTS,
        );
    }

    /// The agents' Role grants every call the Lease coordinator and the pod
    /// labeler make, and nothing else beyond the listed unused grants; the
    /// Lease writes are limited to the cluster's own Lease.
    #[test]
    fn agent_rbac_matches_its_calls() {
        let cluster = crate::testing::cluster("pg", 2);
        let rules = agent_role(&cluster, None).rules.unwrap_or_default();
        check("agent Role", &rules, AGENT_CALLS, UNUSED_AGENT_GRANTS);
        for r in rules
            .iter()
            .filter(|r| r.verbs.iter().any(|v| v == "update"))
        {
            assert_eq!(r.resource_names, Some(vec!["pg-leader".to_owned()]));
        }
    }
}
