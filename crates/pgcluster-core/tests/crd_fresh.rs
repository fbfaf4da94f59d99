//! The committed CRD matches the types.

/// `kubernetes/crd.yaml` is exactly what `crd_yaml()` generates; regenerate with
/// `pgcluster crd > kubernetes/crd.yaml` after changing the API types.
#[test]
fn committed_crd_is_not_stale() {
    let committed = include_str!("../../../kubernetes/crd.yaml");
    let generated = pgcluster_core::crd_yaml().expect("the CRD serializes");
    assert!(
        committed == generated,
        "kubernetes/crd.yaml is stale: run `cargo run -p pgcluster-cli --bin pgcluster -- crd > kubernetes/crd.yaml`"
    );
}
