//! `pgcluster access explain` and `access hba`, run as the built binary.

use std::process::{Command, Output};

fn pgcluster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgcluster"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const HOMELAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/homelab.yaml");

/// An admin on the management VLAN reaches the LoadBalancer by the `admins`
/// rule (exit 0), whether the endpoint is spelled as in the spec or as `lb`.
#[test]
fn admin_via_lb_is_allowed() {
    for endpoint in ["loadBalancer", "lb"] {
        let out = pgcluster(&[
            "access",
            "explain",
            "-f",
            HOMELAB,
            "--from",
            "10.0.10.7",
            "--database",
            "gitea",
            "--role",
            "admin",
            "--endpoint",
            endpoint,
        ]);
        assert!(
            out.status.success(),
            "{endpoint}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("by rule `admins`"));
    }
}

/// A denied connection exits 1 and says per rule why, and what to add.
#[test]
fn denied_explains_each_rule() {
    let out = pgcluster(&[
        "access",
        "explain",
        "-f",
        HOMELAB,
        "--from",
        "10.0.11.7",
        "--database",
        "gitea",
        "--role",
        "admin",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("DENIED"), "{stdout}");
    assert!(
        stdout.contains("rule `admins`: client is not a source"),
        "{stdout}"
    );
    assert!(
        stdout.contains("to allow it: add a CIDR containing 10.0.11.7"),
        "{stdout}"
    );
}

/// Pods are matched by namespace and labels; JSON output carries the decision.
#[test]
fn pod_client_json() {
    let out = pgcluster(&[
        "access",
        "explain",
        "-f",
        HOMELAB,
        "--from",
        "namespace/apps,app.kubernetes.io/name=gitea",
        "--database",
        "gitea",
        "--role",
        "gitea",
        "--endpoint",
        "ro",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["decision"], "allowed");
    assert_eq!(v["rule"], "gitea");
}

/// `access hba` prints scram-only lines ending in explicit rejects.
#[test]
fn hba_is_printed() {
    let out = pgcluster(&["access", "hba", "-f", HOMELAB]);
    assert!(out.status.success());
    let hba = text(&out.stdout);
    assert!(
        hba.contains(
            "host   \"gitea\"        \"admin\"                  10.0.10.0/24       scram-sha-256"
        ),
        "{hba}"
    );
    assert!(hba.trim_end().ends_with("reject"));
}
