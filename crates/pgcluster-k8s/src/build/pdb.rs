//! The PodDisruptionBudget: a voluntary disruption (drain, eviction) never
//! takes the last ready instance.
//!
//! - `instances >= 2`: `maxUnavailable: 1`. The eviction API allows an
//!   eviction only while every other pod is healthy, so with one instance
//!   already down nothing more can be evicted, and the last ready instance
//!   always survives. (With 2 instances this equals `minAvailable: 1`.)
//! - `instances == 1`: `maxUnavailable: 0`. Evicting the only instance is
//!   the outage the budget exists to prevent; `kubectl drain` will wait until
//!   the admin scales up or deletes the pod (or this budget) deliberately.
//!
//! `unhealthyPodEvictionPolicy: IfHealthyBudget` (the safe default) keeps a
//! not-ready instance (e.g. a replica catching up) from being evicted while
//! the budget is exhausted.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgcluster_core::ValidatedCluster;

use super::K8sNames;
use super::labels::{Component, match_labels, meta, pod_selector_labels};

/// `maxUnavailable` for a cluster of `instances` pods.
pub fn max_unavailable(instances: u32) -> i32 {
    if instances >= 2 { 1 } else { 0 }
}

/// The budget `<name>` over the instance pods.
pub fn pod_disruption_budget(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(cluster, cluster.name().pdb(), Component::Postgres, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(cluster.instances()))),
            min_available: None,
            selector: Some(match_labels(pod_selector_labels(cluster))),
            unhealthy_pod_eviction_policy: Some("IfHealthyBudget".to_owned()),
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eviction rule (an eviction is allowed iff healthy - 1 >= instances - maxUnavailable)
    /// never lets the last healthy instance go, for every size and every number already down.
    #[test]
    fn last_ready_instance_is_never_evicted() {
        for instances in 1..=9u32 {
            let desired_healthy = instances as i32 - max_unavailable(instances);
            for healthy in 1..=instances as i32 {
                let allowed = healthy - desired_healthy > 0;
                if healthy == 1 {
                    assert!(
                        !allowed,
                        "instances={instances}: last ready instance evictable"
                    );
                }
            }
        }
    }
}
