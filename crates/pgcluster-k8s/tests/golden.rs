//! Golden files of the rendered manifests, and their schema check with
//! `../shared/tools/validate-manifests`.
//!
//! Update after an intended change: `UPDATE_GOLDEN=1 cargo test -p pgcluster-k8s --test golden`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use pgcluster_core::ValidatedCluster;
use pgcluster_k8s::build::rbac::controller_cluster_role;
use pgcluster_k8s::{BuildOptions, build, render};

/// Held while golden files are compared or written, so validation never reads a half-written file.
static GOLDEN_LOCK: Mutex<()> = Mutex::new(());

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

mod cases {
    include!("support/cases.rs");
}

fn render_case(cluster: &ValidatedCluster) -> String {
    let bundle = build(cluster, &BuildOptions::default()).expect("example clusters build");
    render::to_yaml(&bundle).expect("example bundles render")
}

fn controller_rbac_yaml() -> String {
    format!(
        "---\n{}",
        serde_norway::to_string(&controller_cluster_role()).expect("ClusterRole serializes")
    )
}

/// Rendered output equals the committed golden files (or rewrites them with UPDATE_GOLDEN=1).
#[test]
fn golden_files_match() {
    let _guard = GOLDEN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0" && !v.is_empty());
    let mut outputs: Vec<(String, String)> = cases::all(&repo_root())
        .into_iter()
        .map(|(name, cluster)| (format!("{name}.yaml"), render_case(&cluster)))
        .collect();
    outputs.push(("controller-rbac.yaml".to_owned(), controller_rbac_yaml()));
    let mut stale = Vec::new();
    for (file, rendered) in outputs {
        let path = golden_dir().join(&file);
        if update {
            std::fs::write(&path, &rendered).expect("golden dir is writable");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != rendered {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ from the rendered output: {stale:?}\nreview, then run: UPDATE_GOLDEN=1 cargo test -p pgcluster-k8s --test golden"
    );
}

/// Two renders of the same input are byte-identical (no timestamps, no map-order noise).
#[test]
fn rendering_is_deterministic() {
    for (name, cluster) in cases::all(&repo_root()) {
        assert_eq!(
            render_case(&cluster),
            render_case(&cluster.clone()),
            "{name}"
        );
    }
}

fn validator_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PGCLUSTER_VALIDATE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from("/root/.cache/pgcluster-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Every golden file passes validate-manifests (strict, its default Kubernetes version).
#[test]
fn golden_files_pass_validate_manifests() {
    let validator = repo_root().join("../shared/tools/validate-manifests");
    if !validator.exists() {
        println!("skipped: ../shared/tools/validate-manifests not found");
        return;
    }
    let _guard = GOLDEN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let output = Command::new(validator_python())
        .arg(&validator)
        .arg("-q")
        .arg(golden_dir())
        .output()
        .expect("the validator's Python runs");
    assert!(
        output.status.success(),
        "validate-manifests failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
