//! Which pod changes wake the controller: those that change what the
//! status says (role label, readiness, phase, IP, deletion, restarts, the
//! member's role, health and lineage), not the WAL positions the agents
//! write into their annotation at most every 30 s (the status takes those
//! at the next reconcile, at the latest the 5-minute resync). Without this
//! a database under write load would have the controller re-apply every
//! object twice a minute per member.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use crate::build::labels::LABEL_ROLE;
use crate::lease::pod_member_state;
use crate::lease::publication::material;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// A digest of what the status reads from `pod`.
pub fn relevance(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    pod.labels().get(LABEL_ROLE).hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    if let Some(status) = &pod.status {
        status.phase.hash(&mut h);
        status.pod_ip.hash(&mut h);
        for c in status.conditions.iter().flatten() {
            (&c.type_, &c.status).hash(&mut h);
        }
        for c in status.container_statuses.iter().flatten() {
            (&c.name, c.ready, c.restart_count).hash(&mut h);
        }
    }
    pod_member_state(pod).map(|s| material(&s)).hash(&mut h);
    h.finish()
}

/// The last relevance seen per pod (`namespace/name`).
#[derive(Debug, Default)]
pub struct PodTriggers {
    seen: Mutex<HashMap<String, u64>>,
}

impl PodTriggers {
    /// Whether `pod` changed in a way the status shows (always true the
    /// first time a pod is seen).
    pub fn changed(&self, pod: &Pod) -> bool {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let digest = relevance(pod);
        // A panic while holding the lock leaves at worst one extra reconcile.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(key, digest) != Some(digest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::testing::objects::{PodFixture, pod};
    use pgcluster_ha::machine::MemberRole;

    /// New pods and role, readiness or member-role changes wake the
    /// controller; moving WAL positions and heartbeats do not.
    #[test]
    fn positions_do_not_wake_the_controller() {
        let triggers = PodTriggers::default();
        let typed = |v: serde_json::Value| serde_json::from_value::<Pod>(v).unwrap();
        let at = |lsn| {
            typed(
                pod("pg-1")
                    .ready()
                    .role("replica")
                    .state(MemberRole::Replica, lsn),
            )
        };
        assert!(triggers.changed(&at(100)), "a new pod");
        assert!(!triggers.changed(&at(100)), "nothing changed");
        assert!(!triggers.changed(&at(5_000)), "only the positions moved");
        let unready = typed(
            pod("pg-1")
                .role("replica")
                .state(MemberRole::Replica, 5_000),
        );
        assert!(triggers.changed(&unready), "readiness changed");
        let promoted = typed(
            pod("pg-1")
                .role("primary")
                .state(MemberRole::Primary, 5_000),
        );
        assert!(triggers.changed(&promoted), "role changed");
    }
}
