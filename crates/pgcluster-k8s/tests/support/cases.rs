// The clusters the golden files are rendered from: examples/*.yaml through
// core's validate() once it exists; until then, fixtures built in code.

use std::path::Path;

use pgcluster_core::ValidatedCluster;
use pgcluster_core::api::v1alpha1::{AccessEndpoint, RetentionPolicy};
use pgcluster_k8s::testing::{Fixture, cidr, cluster, homelab, pods};

/// `(golden name, cluster)` for every golden case.
pub fn all(_repo: &Path) -> Vec<(&'static str, ValidatedCluster)> {
    let mut single = cluster("single", 1)
        .with_app("app")
        .with_rule("apps", vec![pods("apps")], &[AccessEndpoint::Rw], "app", "app");
    single.storage.retention = RetentionPolicy::Delete;
    let three = cluster("pg", 3)
        .with_app("app")
        .with_rule("apps", vec![pods("apps")], &[AccessEndpoint::Rw], "app", "app")
        .with_rule("reports", vec![pods("reports"), cidr("10.42.0.0/16")], &[AccessEndpoint::Ro], "app", "app");
    vec![("homelab", homelab()), ("single", single), ("three-no-lb", three)]
}
