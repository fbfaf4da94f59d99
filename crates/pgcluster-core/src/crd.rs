//! The generated CustomResourceDefinition.

use kube::CustomResourceExt;

use crate::api::v1alpha1::PostgresCluster;

/// The PostgresCluster CRD as YAML (what `pgcluster crd` prints and `kubernetes/crd.yaml` holds).
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&PostgresCluster::crd())
}
