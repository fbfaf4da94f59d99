//! `pgcluster status|switchover|failover [NAME]`: a positional NAME routes
//! to Kubernetes (with `-n` and `--context`), none to the local cluster;
//! the same command line works as `kubectl pgcluster ...`; the Kubernetes
//! status has the local status's fields. (The API calls behind the routes are
//! tested in pgcluster-k8s's client_ops against tower-test mocks.)

use std::collections::BTreeMap;
use std::process::Command;

use pgcluster_cli::dispatch::kube::{KubeTarget, Route, status_of};
use pgcluster_cli::{Cli, Command as Sub, try_parse_from};
use pgcluster_ha::machine::{ClusterView, MemberName, MemberRole};
use pgcluster_k8s::client_ops::{ClusterReport, PodInfo};
use pgcluster_k8s::testing::objects::{lease, member_state, postgres_cluster};

fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("pgcluster").chain(args.iter().copied());
    try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn route(cli: Cli) -> Route {
    match cli.command {
        Sub::Status(a) => a.target.route(),
        Sub::Switchover(a) => a.target.route(),
        Sub::Failover(a) => a.target.route(),
        other => panic!("not a cluster command: {other:?}"),
    }
}

fn kube(name: &str, namespace: Option<&str>, context: Option<&str>) -> KubeTarget {
    KubeTarget {
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        context: context.map(str::to_owned),
    }
}

/// NAME routes status, switchover and failover to Kubernetes with -n and --context.
#[test]
fn name_routes_to_kubernetes() {
    let cases: [(&[&str], KubeTarget); 5] = [
        (&["status", "main"], kube("main", None, None)),
        (
            &["status", "main", "-n", "databases", "--context", "homelab"],
            kube("main", Some("databases"), Some("homelab")),
        ),
        (
            &["switchover", "main", "--namespace", "db", "--to", "main-1"],
            kube("main", Some("db"), None),
        ),
        (
            &["switchover", "-n", "db", "main"],
            kube("main", Some("db"), None),
        ),
        (
            &["failover", "main", "--to", "main-1", "--context", "lab"],
            kube("main", None, Some("lab")),
        ),
    ];
    for (args, expected) in cases {
        match route(parse(args)) {
            Route::Kube(t) => assert_eq!(t, expected, "{args:?}"),
            Route::Local(t) => panic!("{args:?} went local: {t:?}"),
        }
    }
}

/// Without NAME the commands act on the local cluster (--data-dir, --name).
#[test]
fn no_name_routes_to_local() {
    for args in [
        &["status"][..],
        &["status", "-o", "json"],
        &["switchover", "--to", "local-1"],
        &["failover", "--to", "local-1"],
    ] {
        match route(parse(args)) {
            Route::Local(t) => assert_eq!(t.name, None, "{args:?}: the running cluster is found"),
            Route::Kube(t) => panic!("{args:?} went to Kubernetes: {t:?}"),
        }
    }
    match route(parse(&[
        "status",
        "--data-dir",
        "/tmp/x",
        "--name",
        "other",
    ])) {
        Route::Local(t) => {
            assert_eq!(t.data_dir.as_deref(), Some(std::path::Path::new("/tmp/x")));
            assert_eq!(t.name.as_deref(), Some("other"));
        }
        Route::Kube(t) => panic!("went to Kubernetes: {t:?}"),
    }
}

/// -n/--context without NAME, and NAME with the local --name, are refused
/// rather than silently acting on another cluster; failover needs --to; -n
/// never means a local cluster's name.
#[test]
fn ambiguous_targets_are_refused() {
    for args in [
        &["status", "-n", "db"][..],
        &["switchover", "--context", "lab"],
        &["status", "main", "--name", "local"],
        &["failover", "main"],
        &["kube", "status", "main"],
        // -n is a namespace everywhere; local commands name a cluster with --name.
        &["down", "-n", "local"],
        &["router", "--local", "-n", "local"],
    ] {
        let argv = std::iter::once("pgcluster").chain(args.iter().copied());
        assert!(try_parse_from(argv).is_err(), "{args:?} was accepted");
    }
}

/// Invoked as kubectl-pgcluster (what `kubectl pgcluster` runs), the same
/// arguments parse the same way, and help names `kubectl pgcluster`.
#[test]
fn kubectl_plugin_argv0_behaves_the_same() {
    let cli = try_parse_from([
        "/usr/local/bin/kubectl-pgcluster",
        "status",
        "main",
        "-n",
        "databases",
    ])
    .expect("parses");
    match route(cli) {
        Route::Kube(t) => assert_eq!(t, kube("main", Some("databases"), None)),
        Route::Local(t) => panic!("went local: {t:?}"),
    }
    let help = try_parse_from(["kubectl-pgcluster", "status", "--help"])
        .expect_err("--help ends parsing")
        .to_string();
    assert!(help.contains("kubectl pgcluster status"), "{help}");
}

/// The installed symlink works: `kubectl-pgcluster status NAME` goes to
/// Kubernetes (here: no kubeconfig, so it says so, exit 2) and its usage
/// line says `kubectl pgcluster`.
#[test]
fn kubectl_plugin_symlink_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("kubectl-pgcluster");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pgcluster"), &plugin).expect("symlink");
    let run = |args: &[&str]| {
        Command::new(&plugin)
            .args(args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("runs")
    };
    let out = run(&["status", "main", "-n", "databases"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("failed to load a Kubernetes configuration"),
        "{stderr}"
    );
    let out = run(&["status", "-n", "db"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kubectl pgcluster status"), "{stderr}");
}

fn report() -> ClusterReport {
    let mut replica = member_state("pg-1", MemberRole::Replica, 0x300);
    replica.received_lsn = pgcluster_ha::machine::Lsn(0x380);
    replica.following = Some(MemberName::from("pg-0"));
    let members: BTreeMap<_, _> = [
        (
            MemberName::from("pg-0"),
            member_state("pg-0", MemberRole::Primary, 0x400),
        ),
        (MemberName::from("pg-1"), replica),
    ]
    .into();
    let pod = |name: &str, node: Option<&str>, ready: bool| PodInfo {
        name: name.to_owned(),
        node: node.map(str::to_owned),
        phase: "Running".to_owned(),
        ready,
    };
    ClusterReport {
        cluster: postgres_cluster(),
        view: ClusterView {
            lease: Some(lease(Some("pg-0"), 5, 0x200)),
            members,
            switchover: None,
        },
        pods: vec![
            pod("pg-0", Some("node-a"), true),
            pod("pg-1", Some("node-b"), true),
            pod("pg-2", None, false),
        ],
    }
}

/// The Kubernetes status: one row per pod, the primary's own flushed LSN
/// as the lag reference, pods and nodes instead of PIDs, Service endpoints.
#[test]
fn kubernetes_status_rows() {
    let status = status_of(&report());
    assert_eq!(status.lease_holder.as_deref(), Some("pg-0"));
    assert_eq!(status.lease_term, 5);
    assert_eq!(status.rw_endpoint.as_deref(), Some("pg-rw.db.svc:5432"));
    assert_eq!(status.ro_endpoint.as_deref(), Some("pg-ro.db.svc:5432"));
    let rows: Vec<_> = status
        .instances
        .iter()
        .map(|i| {
            (
                i.instance.as_str(),
                i.role.as_str(),
                i.ready,
                i.lag_bytes,
                i.node.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("pg-0", "primary", true, 0, Some("node-a")),
            ("pg-1", "replica", true, 0x100, Some("node-b")),
            ("pg-2", "down", false, 0, None),
        ]
    );
    assert_eq!(
        status.instances[1].lsn, "0/380",
        "a replica shows what it received"
    );
    assert_eq!(status.instances[1].following.as_deref(), Some("pg-0"));
    assert!(status.instances.iter().all(|i| i.agent_pid.is_none()));
    let text = pgcluster_cli::dispatch::status::render(&status);
    assert!(text.contains("node-b"), "{text}");
    assert!(!text.contains("agent pid"), "{text}");
}

/// `-o json` in Kubernetes mode has exactly the documented field set (the
/// local mode's; fields that do not apply are null).
#[test]
fn kubernetes_status_json_fields() {
    let json = serde_json::to_value(status_of(&report())).expect("serializes");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    };
    let mut top = keys(&json);
    top.sort();
    assert_eq!(
        top,
        [
            "conditions",
            "data_dir",
            "instances",
            "lease_holder",
            "lease_term",
            "mode",
            "name",
            "namespace",
            "phase",
            "ro_endpoint",
            "ro_port",
            "rw_endpoint",
            "rw_port",
            "state",
        ]
    );
    assert_eq!(json["mode"], "kubernetes");
    assert_eq!(json["data_dir"], serde_json::Value::Null);
    let mut instance = keys(&json["instances"][0]);
    instance.sort();
    assert_eq!(
        instance,
        [
            "agent_pid",
            "api_port",
            "following",
            "instance",
            "lag_bytes",
            "lsn",
            "node",
            "pg_port",
            "pod",
            "postgres_pid",
            "ready",
            "restarts",
            "role",
            "state",
            "timeline",
        ]
    );
    assert_eq!(json["instances"][0]["restarts"], serde_json::Value::Null);
    assert_eq!(json["instances"][0]["pod"], "pg-0");
    assert_eq!(json["instances"][0]["api_port"], 8008);
}

/// clap's own consistency checks pass (no clashing short flags such as the
/// local `--name` and the Kubernetes `-n`).
#[test]
fn command_definition_is_consistent() {
    <Cli as clap::CommandFactory>::command().debug_assert();
}
