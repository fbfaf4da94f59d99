//! `pgcluster apply` validates before any network call, and says plainly
//! when no Kubernetes configuration exists. (Against an API server it is
//! tested only through pgcluster-k8s's tower-test mocks of client_ops.)

use std::process::Command;

fn pgcluster() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgcluster"));
    // No kubeconfig and no in-cluster environment: any connection attempt fails.
    c.env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST");
    c
}

/// An invalid spec exits 1 with every problem and "nothing applied", before connecting.
#[test]
fn invalid_spec_is_refused_before_connecting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: pg}\nspec: {instances: 0}\n",
    )
    .expect("write spec");
    let out = pgcluster()
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing applied"), "{stderr}");
    assert!(stderr.contains("spec.instances"), "{stderr}");
    assert!(
        !stderr.contains("kubeconfig"),
        "validation comes first: {stderr}"
    );
}

/// A valid spec without any Kubernetes configuration exits 2 naming the problem.
#[test]
fn valid_spec_without_kubeconfig_fails_to_connect() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/homelab.yaml");
    let out = pgcluster()
        .args(["apply", "-f", example])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("failed to load a Kubernetes configuration"),
        "{stderr}"
    );
}

/// The namespace in the file and -n must agree.
#[test]
fn conflicting_namespace_is_refused() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/homelab.yaml");
    let out = pgcluster()
        .args(["apply", "-f", example, "-n", "other"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-n says"));
}
