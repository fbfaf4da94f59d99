//! What the tests that drive [`KubeLeaseCoordinator`] with the pure HA
//! machine share: the Lease's API path, a member's configuration and the
//! Lease object the scripted API server returns.

use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_core::timing::FailoverTimings;
use pgcluster_core::validated::ResolvedReplication;
use pgcluster_ha::machine::HaConfig;
use serde_json::json;

use super::*;

/// The Lease of cluster `pg` in namespace `db`.
pub(super) const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases/pg-leader";

/// `me`'s configuration in an async cluster of `members`, default timings.
pub(super) fn config(me: &str, members: &[&str]) -> HaConfig {
    HaConfig::new(
        MemberName::from(me),
        members.iter().copied().map(MemberName::from),
        FailoverTimings::default(),
        ResolvedReplication {
            mode: ReplicationMode::Async,
            when_no_standby: NoStandbyPolicy::Block,
            max_failover_lag_bytes: 1 << 20,
        },
        true,
    )
    .expect("default timings are safe")
}

/// The Lease object holding `lease` at resourceVersion `rv`.
pub(super) fn lease_object(rv: u64, lease: &Lease) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": "pg-leader", "namespace": "db", "resourceVersion": rv.to_string(),
            "annotations": {
                ANNOTATION_RECORD: serde_json::to_string(lease).expect("a lease serialises")
            }
        },
        "spec": {}
    })
}
