//! The table of Kubernetes API calls the controller, the agents and the CLI
//! make, with the code that makes each. The RBAC tests compare it with the
//! agents' Role and the controller's ClusterRole from the builders (which
//! `kubernetes/controller/` renders), exactly:
//!
//! - the agents' Role grants the agents' calls, nothing more;
//! - the controller's ClusterRole grants the controller's calls plus the
//!   agents' Role (Kubernetes lets the controller create that Role only if
//!   it holds every permission in it), nothing more.
//!
//! The CLI has no Role of its own (people use their kubeconfig's
//! credentials); its calls are listed in `kubernetes/README.md`, and a test
//! checks that list against [`CLI_CALLS`].

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
        "coordination.k8s.io",
        "leases",
        "delete",
        "reconcile::cleanup (retention Delete)",
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
        "KubeLeaseCoordinator (read_view when the watch is unconfirmed, cas after a 409, switchover)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "list",
        "LeaseCache::watch (the watcher's initial list, by field selector on the name)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "watch",
        "LeaseCache::watch",
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
        "patch",
        "KubeLeaseCoordinator::publish_member (on change), PodLabeler",
    ),
];

/// Every call of the CLI (`pgcluster apply`, and `status`/`switchover`/
/// `failover` with a NAME), made with the user's kubeconfig credentials.
pub const CLI_CALLS: &[ApiCall] = &[
    call(
        "pgcluster.dev",
        "postgresclusters",
        "patch",
        "client_ops::apply (server-side apply)",
    ),
    call(
        "pgcluster.dev",
        "postgresclusters",
        "create",
        "client_ops::apply (apply of a new object)",
    ),
    call(
        "pgcluster.dev",
        "postgresclusters",
        "get",
        "client_ops::wait_ready, client_ops::status",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "get",
        "client_ops::{status, switchover, failover} (KubeLeaseCoordinator::read_view)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "update",
        "client_ops::{switchover, failover} (request_switchover, clear_switchover)",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "create",
        "client_ops::{switchover, failover} (no Lease yet)",
    ),
    call(
        "",
        "pods",
        "list",
        "client_ops::{status, switchover, failover} (member states)",
    ),
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

    /// `Err` naming what is missing and what is extra unless `rules`
    /// grant exactly `expected`.
    fn exactly(name: &str, rules: &[PolicyRule], expected: &BTreeSet<Grant>) -> Result<(), String> {
        let granted = grants(rules);
        let missing: Vec<_> = expected.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(expected).collect();
        if missing.is_empty() && extra.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{name}: missing grants for calls the code makes: {missing:?}; grants no code uses: {extra:?}"
        ))
    }

    fn agent_rules() -> Vec<PolicyRule> {
        agent_role(&crate::testing::cluster("pg", 2), None)
            .rules
            .unwrap_or_default()
    }

    fn controller_expected() -> BTreeSet<Grant> {
        calls(CONTROLLER_CALLS)
            .union(&grants(&agent_rules()))
            .cloned()
            .collect()
    }

    /// The controller's ClusterRole grants exactly the controller's calls
    /// plus what it grants the agents.
    #[test]
    fn controller_rbac_matches_its_calls() {
        let rules = controller_cluster_role().rules.unwrap_or_default();
        exactly("controller ClusterRole", &rules, &controller_expected()).unwrap();
    }

    /// The agents' Role grants exactly the calls the Lease coordinator and
    /// the pod labeler make; the Lease writes are limited to the cluster's
    /// own Lease.
    #[test]
    fn agent_rbac_matches_its_calls() {
        let rules = agent_rules();
        exactly("agent Role", &rules, &calls(AGENT_CALLS)).unwrap();
        for r in rules
            .iter()
            .filter(|r| r.verbs.iter().any(|v| v == "update"))
        {
            assert_eq!(r.resource_names, Some(vec!["pg-leader".to_owned()]));
        }
    }

    /// The comparison fails on one verb too many or too few, for both roles.
    #[test]
    fn comparison_catches_missing_and_extra_verbs() {
        let agent = agent_rules();
        let controller = controller_cluster_role().rules.unwrap_or_default();
        let cases = [
            ("agent Role", agent, calls(AGENT_CALLS)),
            ("controller ClusterRole", controller, controller_expected()),
        ];
        for (name, rules, expected) in cases {
            let mut extra = rules.clone();
            extra[0].verbs.push("deletecollection".to_owned());
            let err = exactly(name, &extra, &expected).unwrap_err();
            assert!(err.contains("deletecollection"), "{err}");
            let mut missing = rules.clone();
            let dropped = missing[0].verbs.pop().unwrap();
            let err = exactly(name, &missing, &expected).unwrap_err();
            assert!(err.contains(&format!("\"{dropped}\"")), "{err}");
        }
    }

    /// `kubernetes/README.md` lists exactly the CLI's calls (the grants a
    /// user needs), one `| group | resource | verbs |` row per resource.
    #[test]
    fn readme_lists_the_cli_calls() {
        let readme = include_str!("../../../kubernetes/README.md");
        let section = readme
            .split("### What the CLI needs")
            .nth(1)
            .expect("kubernetes/README.md has a `### What the CLI needs` section");
        let mut documented = BTreeSet::new();
        for line in section.lines().skip_while(|l| !l.starts_with('|')) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .collect();
            if cells.len() < 4 || cells[1] == "group" || cells[1].starts_with('-') {
                continue;
            }
            let group = if cells[1] == "core" { "" } else { cells[1] };
            for verb in cells[3].split(',') {
                documented.insert((
                    group.to_owned(),
                    cells[2].to_owned(),
                    verb.trim().to_owned(),
                ));
            }
        }
        assert_eq!(documented, calls(CLI_CALLS));
    }
}
