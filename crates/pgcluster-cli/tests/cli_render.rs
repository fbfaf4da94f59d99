//! `pgcluster render`: prints the golden manifests of the examples, writes one
//! file per object with `--out`, and refuses invalid specs with exit code 1.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pgcluster() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgcluster"))
}

/// stdout is exactly the golden file of the example (one source of truth for both).
#[test]
fn prints_the_golden_manifests() {
    for name in ["homelab", "single", "three-no-lb"] {
        let out = pgcluster()
            .args(["render", "-f"])
            .arg(repo().join(format!("examples/{name}.yaml")))
            .output()
            .expect("pgcluster runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let golden = std::fs::read_to_string(
            repo().join(format!("crates/pgcluster-k8s/tests/golden/{name}.yaml")),
        )
        .expect("golden file exists");
        assert!(String::from_utf8_lossy(&out.stdout) == golden, "{name}");
    }
}

/// `--out DIR` writes one document per object, Secrets without passwords.
#[test]
fn writes_one_file_per_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = pgcluster()
        .args(["render", "-f"])
        .arg(repo().join("examples/homelab.yaml"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("pgcluster runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.contains(&"statefulset-main.yaml".to_owned()),
        "{files:?}"
    );
    assert!(
        files.contains(&"secret-main-superuser.yaml".to_owned()),
        "{files:?}"
    );
    let secret = std::fs::read_to_string(dir.path().join("secret-main-superuser.yaml"))
        .expect("secret file");
    assert!(secret.starts_with("---\n# Secret shape only"));
    assert!(!secret.contains("password:"));
}

/// An invalid spec is refused with exit code 1 and the field path.
#[test]
fn refuses_invalid_specs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata:\n  name: db\nspec:\n  instances: 0\n",
    )
    .expect("write spec");
    let out = pgcluster()
        .args(["render", "-f"])
        .arg(&spec)
        .output()
        .expect("pgcluster runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.instances"));
}

/// An `--out` that cannot be written names the path, the OS's reason and
/// what to do, with exit code 2 (not the invalid-input code 1).
#[test]
fn an_unwritable_out_dir_says_why_and_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A file where the directory should be: create_dir_all fails.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "").expect("write blocker");
    let out = pgcluster()
        .args(["render", "-f"])
        .arg(repo().join("examples/homelab.yaml"))
        .arg("--out")
        .arg(blocker.join("manifests"))
        .output()
        .expect("pgcluster runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "failed to write {}",
            blocker.join("manifests").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Not a directory"), "{stderr}");
    assert!(
        stderr.contains("hint: check that the directory"),
        "{stderr}"
    );
}
