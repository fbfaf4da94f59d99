//! `pgcluster init` and `pgcluster validate`, run as the built binary.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn pgcluster(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgcluster"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("the binary finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const HOMELAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/homelab.yaml");

/// `pgcluster init | pgcluster validate -f -` succeeds, for default and custom names.
#[test]
fn init_output_validates() {
    for args in [
        vec!["init"],
        vec!["init", "--name", "pg-main", "--namespace", "data"],
    ] {
        let init = pgcluster(&args, None);
        assert!(init.status.success(), "{}", text(&init.stderr));
        let spec = text(&init.stdout);
        let validate = pgcluster(&["validate", "-f", "-"], Some(&spec));
        assert!(
            validate.status.success(),
            "{}{}",
            text(&validate.stdout),
            text(&validate.stderr)
        );
        assert!(text(&validate.stdout).contains("is valid"));
    }
}

/// `init` mentions every field of the API (commented or set), so every field is explained.
#[test]
fn init_mentions_every_field() {
    let spec = text(&pgcluster(&["init"], None).stdout);
    let crd: serde_json::Value =
        serde_norway::from_str(&text(&pgcluster(&["crd"], None).stdout)).expect("CRD is YAML");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut missing = Vec::new();
    let mut stack = vec![schema];
    while let Some(node) = stack.pop() {
        if let Some(props) = node["properties"].as_object() {
            for (name, child) in props {
                if !spec.contains(&format!("{name}:")) {
                    missing.push(name.clone());
                }
                stack.push(child);
            }
        }
        if node["items"].is_object() {
            stack.push(&node["items"]);
        }
    }
    assert!(missing.is_empty(), "init does not mention: {missing:?}");
}

/// The homelab example validates and the summary names its endpoints.
#[test]
fn homelab_validates_with_summary() {
    let out = pgcluster(&["validate", "-f", HOMELAB], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("main-lb 10.0.20.210"), "{stdout}");
    assert!(stdout.contains("1 primary + 1 replica"), "{stdout}");
}

/// Strict sync with two instances validates, and says plainly that losing
/// either instance stops every write: in the text summary, and on stderr
/// with `-o json` (stdout stays the resolved object); fallbackToAsync does
/// not warn.
#[test]
fn sync_block_with_two_instances_warns_without_failing() {
    let spec = |policy: &str| {
        format!(
            "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: db}}\n\
             spec: {{instances: 2, replication: {{mode: sync, whenNoStandby: {policy}}}}}\n"
        )
    };
    let out = pgcluster(&["validate", "-f", "-"], Some(&spec("block")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warning     spec.replication.whenNoStandby: with 2 instances and `block`, losing either instance stops every write"),
        "{stdout}"
    );
    assert!(stdout.contains("hint: keep `block` if"), "{stdout}");

    let out = pgcluster(&["validate", "-f", "-", "-o", "json"], Some(&spec("block")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let object: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(object["spec"]["replication"]["whenNoStandby"], "block");
    assert!(
        text(&out.stderr).contains("warning: <stdin>: spec.replication.whenNoStandby"),
        "{}",
        text(&out.stderr)
    );

    let out = pgcluster(&["validate", "-f", "-"], Some(&spec("fallbackToAsync")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("warning"),
        "{}",
        text(&out.stdout)
    );
}

/// `-o yaml` prints the resolved object, which itself validates (and has every default written in).
#[test]
fn yaml_output_is_the_resolved_spec() {
    let out = pgcluster(
        &["validate", "-f", "-", "-o", "yaml"],
        Some(
            "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: db}\nspec: {}\n",
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    for field in [
        "instances: 2",
        "storageClass: local-path",
        "leaseDuration: 2s",
        "namespace: default",
        "podCidr: 10.42.0.0/16",
    ] {
        assert!(yaml.contains(field), "missing {field} in\n{yaml}");
    }
    let again = pgcluster(&["validate", "-f", "-"], Some(&yaml));
    assert!(again.status.success(), "{}", text(&again.stderr));
}

const FOUR_PROBLEMS: &str = "\
apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata:
  name: main
  namespace: databases
spec:
  postgres:
    parameters:
      port: \"5433\"
  storage:
    size: 10GB
    storageClas: local-path
  databases:
    - name: app
      owner: app
  roles:
    - name: app
  access:
    - name: office
      from:
        cidrs: [8.8.8.0/24]
      databases: [app]
      roles: [app]
";

/// A public CIDR, an unknown field, a managed parameter and a bad quantity are all reported with paths and lines; exit 1.
#[test]
fn four_problems_reported_together() {
    let out = pgcluster(&["validate", "-f", "-"], Some(FOUR_PROBLEMS));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    for expected in [
        "spec.access[0].from.cidrs[0] (line 21): 8.8.8.0/24 is a public",
        "spec.storage.storageClas (line 12): unknown field",
        "did you mean `storageClass`?",
        "spec.postgres.parameters.port (line 9): `port` is managed by pgcluster",
        "spec.storage.size (line 11): `10GB` is not a quantity",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 problems"), "{stderr}");
}

/// With `-o json` the same problems come out as data, each with path, message, hint and check.
#[test]
fn problems_as_json() {
    let out = pgcluster(&["validate", "-f", "-", "-o", "json"], Some(FOUR_PROBLEMS));
    assert_eq!(out.status.code(), Some(1));
    let problems: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    let checks: Vec<&str> = problems
        .iter()
        .map(|p| p["check"].as_str().expect("check"))
        .collect();
    assert_eq!(checks.len(), 4, "{problems:?}");
    for check in [
        "public-address",
        "unknown-field",
        "managed-parameter",
        "invalid-quantity",
    ] {
        assert!(checks.contains(&check), "{checks:?}");
    }
    assert!(problems.iter().all(
        |p| p["path"].as_str().is_some_and(|s| s.starts_with("spec.")) && p["hint"].is_string()
    ));
}

/// Syntax errors give line and column and exit 1; a missing file exits 2.
#[test]
fn syntax_errors_and_missing_files() {
    let out = pgcluster(
        &["validate", "-f", "-"],
        Some("apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: [x}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
    let out = pgcluster(&["validate", "-f", "/nonexistent/cluster.yaml"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Other kinds of objects are refused by name.
#[test]
fn other_kinds_are_refused() {
    let out = pgcluster(
        &["validate", "-f", "-"],
        Some("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`Deployment`"),
        "{}",
        text(&out.stderr)
    );
}

/// `pgcluster crd` prints the committed CRD.
#[test]
fn crd_command_matches_committed_file() {
    let out = pgcluster(&["crd"], None);
    assert!(out.status.success());
    let committed = include_str!("../../../kubernetes/crd.yaml");
    assert_eq!(
        text(&out.stdout),
        committed,
        "kubernetes/crd.yaml is stale: run `pgcluster crd > kubernetes/crd.yaml`"
    );
}

/// Every committed example under examples/ validates.
#[test]
fn every_example_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            seen += 1;
            let out = pgcluster(
                &["validate", "-f", path.to_str().expect("UTF-8 path")],
                None,
            );
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                text(&out.stderr)
            );
        }
    }
    assert!(seen >= 1);
}

/// A file that cannot be read says why (the OS reason) and what to do, exit 2.
#[test]
fn missing_file_says_why_and_what_to_do() {
    let out = pgcluster(&["validate", "-f", "nope.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("failed to read nope.yaml: No such file or directory"),
        "{err}"
    );
    assert!(
        err.contains("hint: check the path; `pgcluster init --name main > cluster.yaml`"),
        "{err}"
    );
}

/// Wrong types and bad enum values come in the same run as unknown fields
/// and rule violations, each with its path and line (not one per run).
#[test]
fn type_and_enum_errors_reported_together() {
    let spec = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: main}
spec:
  instances: three
  replication:
    mode: synchronous
  storage:
    retention: retain
  instance: 2
  network:
    podCidr: 010.42.0.0/16
";
    let out = pgcluster(&["validate", "-f", "-"], Some(spec));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for expected in [
        "5 problems",
        "spec.instances (line 5): invalid type: string \"three\", expected u32",
        "spec.replication.mode (line 7): unknown variant `synchronous`",
        "spec.storage.retention (line 9): unknown variant `retain`",
        "did you mean `Retain`?",
        "spec.instance (line 10): unknown field `instance`",
        "spec.network.podCidr (line 12): `010.42.0.0/16` has a number with a leading zero",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}
