//! Identity and permissions: the agents' ServiceAccount, Role and RoleBinding
//! (least privilege, one cluster's namespace), and the controller's ClusterRole.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use pgcluster_core::ValidatedCluster;

use super::K8sNames;
use super::labels::{APP_NAME, Component, MANAGED_BY, meta};

/// Name of the controller's ClusterRole (and of its ServiceAccount by convention).
pub const CONTROLLER_NAME: &str = "pgcluster-controller";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[String]) -> PolicyRule {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        non_resource_urls: None,
    }
}

/// The agents' ServiceAccount `<name>-agent`. Its token is mounted: the agent
/// talks to the API server for its Lease and its pod labels.
pub fn agent_service_account(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(
            cluster,
            cluster.name().service_account(),
            Component::Agent,
            owner,
        ),
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

/// The agents' Role: exactly the calls one agent makes in its own namespace
/// ([`crate::api_calls::AGENT_CALLS`]; a test compares them).
///
/// - the leader Lease: get/list/watch/update limited to `<name>-leader`
///   (the watch by a field selector on its name, compare-and-swap by
///   replace, switchover annotation); `create` cannot be limited by name
///   (the authorizer does not know the name of an object being created), so
///   it is a separate rule;
/// - pods: patch, limited to the cluster's instance pods, to publish its
///   own state and set role labels (the new primary relabels the old one).
///   No read: the members read each other over their agent API.
pub fn agent_role(cluster: &ValidatedCluster, owner: Option<&OwnerReference>) -> Role {
    let lease = [cluster.name().leader_lease()];
    let pods: Vec<String> = (0..cluster.instances())
        .map(|i| cluster.name().instance(i))
        .collect();
    Role {
        metadata: meta(
            cluster,
            cluster.name().agent_role(),
            Component::Agent,
            owner,
        ),
        rules: Some(vec![
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "list", "watch", "update"],
                &lease,
            ),
            rule(&["coordination.k8s.io"], &["leases"], &["create"], &[]),
            rule(&[""], &["pods"], &["patch"], &pods),
        ]),
    }
}

/// Binds [`agent_role`] to [`agent_service_account`].
pub fn agent_role_binding(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(
            cluster,
            cluster.name().agent_role(),
            Component::Agent,
            owner,
        ),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: cluster.name().agent_role(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: cluster.name().service_account(),
            namespace: Some(cluster.namespace().to_string()),
            api_group: None,
        }]),
    }
}

/// The controller's ClusterRole: exactly the kinds and verbs the controller
/// touches. It creates the agents' Role, so it must itself hold every
/// permission that Role grants (Kubernetes refuses privilege escalation).
/// Not part of a cluster's [`Bundle`](super::Bundle): it is installed once with the controller.
///
/// The verbs are exactly the controller's calls in [`crate::api_calls`] plus
/// the agents' Role (a test compares them): owned kinds are server-side
/// applied (`patch`, `create`), watched (`list`, `watch`) and deleted as
/// orphans; pods are watched and, for the agents' Role only, patched.
pub fn controller_cluster_role() -> ClusterRole {
    const OWN: &[&str] = &["list", "watch", "create", "patch", "delete"];
    const OWN_UNWATCHED: &[&str] = &["list", "create", "patch", "delete"];
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(CONTROLLER_NAME.to_owned()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
                (
                    "app.kubernetes.io/component".to_owned(),
                    Component::Controller.as_str().to_owned(),
                ),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    MANAGED_BY.to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        aggregation_rule: None,
        rules: Some(vec![
            rule(
                &["pgcluster.dev"],
                &["postgresclusters"],
                &["list", "watch", "patch"],
                &[],
            ),
            rule(
                &["pgcluster.dev"],
                &["postgresclusters/status"],
                &["patch"],
                &[],
            ),
            rule(
                &["pgcluster.dev"],
                &["postgresclusters/finalizers"],
                &["update"],
                &[],
            ),
            rule(&["apps"], &["statefulsets"], OWN, &[]),
            rule(
                &[""],
                &["configmaps", "secrets", "serviceaccounts", "services"],
                OWN,
                &[],
            ),
            // patch: only because the agents' Role grants it.
            rule(&[""], &["pods"], &["list", "watch", "patch"], &[]),
            // kube's Recorder writes events.k8s.io/v1 Events (patch for repeats).
            rule(&["events.k8s.io"], &["events"], &["create", "patch"], &[]),
            rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings", "roles"],
                OWN,
                &[],
            ),
            rule(&["networking.k8s.io"], &["networkpolicies"], OWN, &[]),
            rule(&["policy"], &["poddisruptionbudgets"], OWN, &[]),
            // The controller's leader election, reading the clusters' Leases
            // (the same verbs as the agents' Role), and deleting one with
            // its cluster (retention Delete).
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "list", "watch", "create", "update", "delete"],
                &[],
            ),
            rule(
                &["monitoring.coreos.com"],
                &["prometheusrules", "servicemonitors"],
                OWN_UNWATCHED,
                &[],
            ),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller holds every permission it grants the agents (no escalation needed).
    #[test]
    fn controller_covers_agent_role() {
        let cluster = crate::testing::cluster("db", 2);
        let controller = controller_cluster_role().rules.unwrap_or_default();
        for agent_rule in agent_role(&cluster, None).rules.unwrap_or_default() {
            for group in agent_rule.api_groups.iter().flatten() {
                for resource in agent_rule.resources.iter().flatten() {
                    for verb in &agent_rule.verbs {
                        assert!(
                            controller.iter().any(|r| {
                                r.api_groups.iter().flatten().any(|g| g == group)
                                    && r.resources.iter().flatten().any(|x| x == resource)
                                    && r.verbs.contains(verb)
                                    && r.resource_names.is_none()
                            }),
                            "controller lacks {verb} {group}/{resource}"
                        );
                    }
                }
            }
        }
    }

    /// Agents may only update their own Lease, patch only their cluster's
    /// instance pods, read no pod, and get no access to Secrets.
    #[test]
    fn agent_is_least_privilege() {
        let cluster = crate::testing::cluster("db", 2);
        let rules = agent_role(&cluster, None).rules.unwrap_or_default();
        for r in &rules {
            assert!(!r.resources.iter().flatten().any(|x| x == "secrets"));
            assert!(!r.verbs.iter().any(|v| v == "*" || v == "delete"));
            if r.resources.iter().flatten().any(|x| x == "leases")
                && r.verbs.iter().any(|v| v == "update")
            {
                assert_eq!(r.resource_names, Some(vec!["db-leader".to_owned()]));
            }
            if r.resources.iter().flatten().any(|x| x == "pods") {
                assert_eq!(r.verbs, vec!["patch".to_owned()]);
                assert_eq!(
                    r.resource_names,
                    Some(vec!["db-0".to_owned(), "db-1".to_owned()])
                );
            }
        }
    }
}
