//! (h) Quiet at rest: an idle 2-instance cluster's requests to the API
//! server, counted from the API server's own audit log (every request of a
//! ServiceAccount outside kube-system, written by `pgcluster-testenv`), and
//! the controller's reconciles from its metrics. `pgcluster bench
//! kubernetes` runs this test with a longer window.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use pgcluster_core::api::v1alpha1::PostgresCluster;

use super::running::{self, Running};
use super::{CONTROLLER_ACCOUNT, CONTROLLER_NAMESPACE, cluster, node};
use crate::e2e_support::node::STATE_ENV;
use crate::e2e_support::{TestCluster, wait_for};

/// The measuring window (`PGCLUSTER_BENCH_WINDOW` seconds, default 120).
fn window() -> Duration {
    let secs = std::env::var("PGCLUSTER_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(120);
    Duration::from_secs(secs.max(10))
}

/// One counted request: who (agent or controller), verb, resource.
type Key = (String, String, String);

/// The audit log's ResponseComplete events of requests received in
/// `[from, to)` that concern namespace `ns`: the agents' (its
/// ServiceAccounts) and the controller's on objects there.
fn audited(ns: &str, from: jiff::Timestamp, to: jiff::Timestamp) -> BTreeMap<Key, u64> {
    let state = std::env::var(STATE_ENV).expect("scripts/test-k8s exports the state dir");
    let path = std::path::Path::new(&state).join("audit.log");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (pgcluster-testenv writes the audit log)",
            path.display()
        )
    });
    let agent_prefix = format!("system:serviceaccount:{ns}:");
    let controller = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_ACCOUNT}");
    let mut counts = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { continue };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["stage"] != "ResponseComplete" {
            continue;
        }
        let Some(at) = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        if at < from || at >= to {
            continue;
        }
        let user = event["user"]["username"].as_str().unwrap_or_default();
        let object_ns = event["objectRef"]["namespace"].as_str();
        let who = if user.starts_with(&agent_prefix) {
            "agent"
        } else if user == controller && object_ns == Some(ns) {
            "controller"
        } else {
            continue;
        };
        let mut resource = event["objectRef"]["resource"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if let Some(sub) = event["objectRef"]["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let verb = event["verb"].as_str().unwrap_or("?").to_owned();
        *counts.entry((who.to_owned(), verb, resource)).or_insert(0) += 1;
    }
    counts
}

/// The controller's counter `pgcluster_controller_<name>_total`, summed
/// over its running pods (only the leader reconciles), through the API
/// server's proxy.
async fn controller_counter(c: &TestCluster, name: &str) -> u64 {
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), CONTROLLER_NAMESPACE);
    let running: Vec<Pod> = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=pgcluster,app.kubernetes.io/component=controller"),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running")
        })
        .collect();
    assert!(!running.is_empty(), "no running controller pod");
    let prefix = format!("pgcluster_controller_{name}_total ");
    let mut sum = 0;
    for pod in running {
        let uri = format!(
            "/api/v1/namespaces/{CONTROLLER_NAMESPACE}/pods/{}:8080/proxy/metrics",
            pod.name_any()
        );
        let request = http::Request::get(uri).body(Vec::new()).unwrap();
        let text = c.admin.request_text(request).await.unwrap();
        sum += text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64);
    }
    sum
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// An idle 2-instance cluster on the real API server, over the window:
/// at most 90 writes and 2 reconciles a minute, none of them a pod
/// patch per tick or a status rewrite, and reads by watch.
#[tokio::test]
async fn idle_cluster_is_quiet_on_the_api_server() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r: Running = running::start(&c, "quiet", 2, |_| {}).await;
    running::settled_primary(&c, &r, Duration::from_secs(60)).await;
    let window = window();
    let reconciles_before = controller_counter(&c, "reconciliations").await;
    let from = jiff::Timestamp::now();
    eprintln!("measuring {}/{} at rest for {window:?}", r.ns, r.name);
    tokio::time::sleep(window).await; // the measurement itself: a fixed window
    let to = jiff::Timestamp::now();
    let reconciles = controller_counter(&c, "reconciliations").await - reconciles_before;
    let counts = audited(&r.ns, from, to);
    let minutes = window.as_secs_f64() / 60.0;
    let per_min = |n: u64| n as f64 / minutes;
    eprintln!(
        "{:<11} {:<7} {:<28} {:>9}",
        "WHO", "VERB", "RESOURCE", "PER MIN"
    );
    for ((who, verb, resource), n) in &counts {
        eprintln!("{who:<11} {verb:<7} {resource:<28} {:>9.1}", per_min(*n));
    }
    let requests: u64 = counts.values().sum();
    let writes: u64 = counts
        .iter()
        .filter(|((_, verb, _), _)| is_write(verb))
        .map(|(_, n)| n)
        .sum();
    let count = |who: &str, verbs: &[&str], resource: &str| -> u64 {
        counts
            .iter()
            .filter(|((w, v, res), _)| w == who && verbs.contains(&v.as_str()) && res == resource)
            .map(|(_, n)| n)
            .sum()
    };
    let summary = format!(
        "k8s-idle requests_per_min={:.0} writes_per_min={:.0} reconciles_per_min={:.1}",
        per_min(requests),
        per_min(writes),
        per_min(reconciles)
    );
    println!("{summary}");
    eprintln!("{summary}");
    assert!(
        per_min(writes) <= 90.0,
        "{:.0} writes a minute at rest (goal: at most 90)",
        per_min(writes)
    );
    assert!(
        per_min(reconciles) <= 2.0,
        "{:.1} reconciles a minute at rest (goal: at most 2)",
        per_min(reconciles)
    );
    // The annotation policy (lease::publication): WAL positions at most
    // every 30 s per member, so at most two writes a minute per member even
    // while PostgreSQL writes some WAL at rest (a per-tick publication
    // would be about 150).
    let pod_patches = count("agent", &["patch", "update"], "pods");
    let per_member = per_min(pod_patches) / f64::from(r.instances);
    assert!(
        per_member <= 2.0,
        "the agents patched their pods {pod_patches} times at rest ({per_member:.1} a minute per member): member states are published on change and positions every 30 s, not per tick"
    );
    let status_writes = count(
        "controller",
        &["patch", "update"],
        "postgresclusters/status",
    );
    assert!(
        per_min(status_writes) <= 2.0,
        "the controller wrote the status {status_writes} times at rest: only a changed condition or role (or positions every 30 s) is written"
    );
    let polls = count("agent", &["get", "list"], "leases") + count("agent", &["list"], "pods");
    assert!(
        per_min(polls) <= 30.0,
        "the agents polled the Lease or the pods {polls} times at rest: reads go by watch"
    );

    // A reconcile with nothing new (an annotation changes nothing the
    // controller reads) runs no SQL and writes no status.
    let sql_before = controller_counter(&c, "sql_runs").await;
    let reconciles_before = controller_counter(&c, "reconciliations").await;
    let clusters: Api<PostgresCluster> = Api::namespaced(c.admin.clone(), &r.ns);
    let status_before = clusters.get(r.name.as_str()).await.unwrap().status;
    let poke =
        serde_json::json!({ "metadata": { "annotations": { "e2e.pgcluster.dev/poke": "1" } } });
    clusters
        .patch(
            r.name.as_str(),
            &PatchParams::default(),
            &Patch::Merge(&poke),
        )
        .await
        .unwrap();
    wait_for(
        "the controller to reconcile the poked cluster",
        Duration::from_secs(60),
        || async {
            (controller_counter(&c, "reconciliations").await > reconciles_before).then_some(())
        },
    )
    .await;
    assert_eq!(
        controller_counter(&c, "sql_runs").await,
        sql_before,
        "the controller ran the roles and databases SQL again with unchanged inputs"
    );
    let status_after = clusters.get(r.name.as_str()).await.unwrap().status;
    assert_eq!(
        status_after, status_before,
        "the status changed with nothing new"
    );
    assert!(
        status_after.and_then(|s| s.sql_applied).is_some(),
        "status.sqlApplied records what the SQL was applied from"
    );
}
