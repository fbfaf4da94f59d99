//! `kubernetes/controller/` (the kustomize base ArgoCD syncs) and
//! `kubernetes/argocd/`: generated files are fresh, the CRD copy equals
//! `kubernetes/crd.yaml`, and the assembled base passes
//! `../shared/tools/validate-manifests`.
//!
//! Assembly: the base is simple (a `resources` list of local files and a
//! `namespace`), so the test assembles it the way kustomize does for that
//! case (concatenate the resources in order; every namespaced object already
//! carries `pgcluster-system`, which the test checks). When `kubectl` is on
//! PATH, `kubectl kustomize` output is validated as well.
//!
//! Update after an intended change: `UPDATE_GOLDEN=1 cargo test -p pgcluster-k8s --test controller_manifests`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use pgcluster_k8s::controller::install;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn base() -> PathBuf {
    repo().join("kubernetes/controller")
}

/// namespace.yaml, rbac.yaml and deployment.yaml equal their rendering from
/// code (the ClusterRole comes from the same builder the RBAC test checks).
#[test]
fn generated_files_are_fresh() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0" && !v.is_empty());
    let mut stale = vec![];
    for (file, content) in install::files() {
        let path = base().join(file);
        if update {
            std::fs::write(&path, &content).unwrap();
        } else if std::fs::read_to_string(&path).unwrap_or_default() != content {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale in kubernetes/controller: {stale:?}; run UPDATE_GOLDEN=1 cargo test -p pgcluster-k8s --test controller_manifests"
    );
}

/// The base's CRD is a byte-identical copy of `kubernetes/crd.yaml` (kept
/// fresh by pgcluster-core's own staleness test).
#[test]
fn crd_copy_equals_the_source() {
    let source = std::fs::read_to_string(repo().join("kubernetes/crd.yaml")).unwrap();
    let copy_path = base().join("crd.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0" && !v.is_empty()) {
        std::fs::write(&copy_path, &source).unwrap();
    }
    let copy = std::fs::read_to_string(copy_path).unwrap();
    assert!(
        copy == source,
        "kubernetes/controller/crd.yaml differs from kubernetes/crd.yaml; copy it (or run with UPDATE_GOLDEN=1)"
    );
}

fn resources() -> Vec<String> {
    let k: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(base().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(k["namespace"], "pgcluster-system");
    k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// What `kubectl kustomize kubernetes/controller` produces for this base.
fn assemble() -> String {
    let mut out = String::new();
    for file in resources() {
        assert!(!file.contains(".."), "kustomize forbids {file}");
        let text = std::fs::read_to_string(base().join(&file)).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            let kind = v["kind"].as_str().unwrap();
            let cluster_scoped = matches!(
                kind,
                "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
            );
            if !cluster_scoped {
                assert_eq!(
                    v["metadata"]["namespace"], "pgcluster-system",
                    "{file}: {kind} must carry the base's namespace"
                );
            }
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(&v).unwrap());
        }
    }
    out
}

fn python() -> Option<(PathBuf, PathBuf)> {
    let tool = repo().join("../shared/tools/validate-manifests");
    if !tool.exists() {
        println!("skipping schema validation: ../shared/tools/validate-manifests is absent");
        return None;
    }
    let python = std::env::var_os("PGCLUSTER_VALIDATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/pgcluster-venv/bin/python"));
    let python = if python.exists() {
        python
    } else {
        PathBuf::from("python3")
    };
    Some((python, tool))
}

fn validate(dir: &Path) {
    let Some((python, tool)) = python() else {
        return;
    };
    let out = Command::new(python)
        .arg(tool)
        .arg(dir)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "validate-manifests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The assembled base (CRD, Namespace, RBAC, Deployment, Service) and the
/// ArgoCD Applications pass the strict schema check; so does `kubectl
/// kustomize` output when kubectl is installed.
#[test]
fn base_and_argocd_apps_validate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("controller.yaml"), assemble()).unwrap();
    for app in ["controller.yaml", "example-cluster.yaml"] {
        std::fs::copy(
            repo().join("kubernetes/argocd").join(app),
            dir.path().join(format!("argocd-{app}")),
        )
        .unwrap();
    }
    validate(dir.path());

    match Command::new("kubectl")
        .arg("kustomize")
        .arg(base())
        .output()
    {
        Ok(out) if out.status.success() => {
            let kdir = tempfile::tempdir().unwrap();
            std::fs::write(kdir.path().join("kustomized.yaml"), &out.stdout).unwrap();
            validate(kdir.path());
            let count = String::from_utf8_lossy(&out.stdout)
                .matches("\nkind: ")
                .count()
                + usize::from(out.stdout.starts_with(b"kind: "));
            assert_eq!(count, assemble().matches("\nkind: ").count());
        }
        Ok(out) => panic!(
            "kubectl kustomize failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => println!("kubectl not installed: validated the test's own assembly only"),
    }
}
