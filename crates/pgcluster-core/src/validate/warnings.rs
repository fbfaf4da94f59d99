//! Warnings: valid choices whose consequence a user should read before
//! relying on them. They never fail validation.

use serde::Serialize;

use crate::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use crate::validated::ValidatedCluster;

/// A valid choice with a consequence worth saying out loud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationWarning {
    /// The field path, e.g. `spec.replication.whenNoStandby`.
    pub path: String,
    /// What the choice means.
    pub message: String,
    /// What to choose instead, if that is not what the user wants.
    pub hint: String,
}

/// Every warning for `cluster` (empty for choices without a surprise).
pub fn warnings(cluster: &ValidatedCluster) -> Vec<ValidationWarning> {
    let mut out = Vec::new();
    let r = cluster.replication();
    // With two instances, strict sync cannot survive the loss of either
    // member: after a failover the new primary has no standby left, and
    // every write waits until the dead node is back, which on node-bound
    // storage may be days.
    if r.mode == ReplicationMode::Sync
        && r.when_no_standby == NoStandbyPolicy::Block
        && cluster.instances() == 2
    {
        out.push(ValidationWarning {
            path: "spec.replication.whenNoStandby".to_owned(),
            message: "with 2 instances and `block`, losing either instance stops every write until \
                      it is back: the survivor waits for a synchronous standby that no longer exists"
                .to_owned(),
            hint: "keep `block` if no acknowledged write may ever be lost and writes may wait; \
                   otherwise use `whenNoStandby: fallbackToAsync` (writes continue, unprotected, \
                   while the standby is away) or `instances: 3` (a standby remains after one loss)"
                .to_owned(),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn cluster(spec: &str) -> ValidatedCluster {
        crate::load::load_one(&format!(
            "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: pg}}\nspec: {spec}\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    /// Only strict sync with exactly two instances warns.
    #[test]
    fn strict_sync_with_two_instances_warns() {
        let sync = |n: u32, policy: &str| {
            cluster(&format!(
                "{{instances: {n}, replication: {{mode: sync, whenNoStandby: {policy}}}}}"
            ))
            .warnings()
        };
        let w = sync(2, "block");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "spec.replication.whenNoStandby");
        assert!(sync(3, "block").is_empty());
        assert!(sync(2, "fallbackToAsync").is_empty());
        assert!(cluster("{instances: 2}").warnings().is_empty());
    }
}
