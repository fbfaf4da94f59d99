//! High availability on the real node: traffic through the Services from a
//! pod, failover by kill -9 of the primary's container, switchover and
//! forced failover through the `pgcluster` CLI, failsafe while the API
//! server is paused, and the fence of a primary whose agent is paused.
//!
//! The writers and SQL checks run in the node's network namespace (pod IPs
//! and ClusterIPs are routed there); processes are found through the pod's
//! cgroup on the node and signalled by PID (`e2e_support::node`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use pgcluster_core::api::v1alpha1::{PostgresCluster, ReplicationMode};

use super::running::{
    self, CONTAINER, Running, cluster_ip, lease_holder, members, pod, role_target, settled_primary,
};
use super::{describe_pods, node};
use crate::e2e_support::node::{Paused, apiserver_pid, container_processes};
use crate::e2e_support::sql::{self, Target, Writer, missing};
use crate::e2e_support::{TestCluster, cluster, wait_for};

/// The application role (and database) of the homelab spec the tests use.
const APP: &str = "gitea";

/// Runs SQL on one instance pod (by IP) until it answers, bounded.
async fn on_pod(target: &Target, sql: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        match sql::scalar(target, sql).await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{sql} on {}: no answer in 50 tries: {last}", target.host)
}

/// `pg_is_in_recovery()` of each pod, by name.
async fn recovery(c: &TestCluster, r: &Running, app: &Target) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, m) in members(c, r).await {
        let ip = m.ip.unwrap_or_else(|| panic!("{name} has no IP"));
        out.push((
            name,
            on_pod(&app.at(&ip), "SELECT pg_is_in_recovery()").await,
        ));
    }
    out
}

/// Asserts `primary` is the only member not in recovery.
async fn assert_roles_in_postgres(c: &TestCluster, r: &Running, app: &Target, primary: &str) {
    for (name, in_recovery) in recovery(c, r, app).await {
        let want = if name == primary { "f" } else { "t" };
        assert_eq!(
            in_recovery, want,
            "{name}: pg_is_in_recovery() = {in_recovery}, but {primary} should be the only primary"
        );
    }
}

/// Creates the writers' table through `target` (retried while the
/// controller is still creating the role and database).
async fn create_table(target: &Target, table: &str) {
    let sql = format!("CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, at timestamptz)");
    let mut last = String::new();
    for _ in 0..100 {
        match sql::query(target, &sql).await {
            Ok(_) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("creating {table} through {}: {last}", target.host);
}

/// Every id in `table`, read through `target`.
async fn ids(target: &Target, table: &str) -> BTreeSet<i64> {
    sql::query(target, &format!("SELECT id FROM {table}"))
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e}"))
        .into_iter()
        .filter_map(|row| row.first().cloned().flatten()?.parse().ok())
        .collect()
}

/// Waits until `writer` acknowledged `more` commits beyond `from`.
async fn writes_flow(writer: &Writer, from: u64, more: u64, what: &str) {
    wait_for(what, Duration::from_secs(90), || async {
        (writer.acked() >= from + more).then_some(())
    })
    .await;
}

/// A pod in the cluster's namespace, running the instance image's psql as
/// an application would: writes a row through `<cluster>-rw.<ns>.svc`
/// (CoreDNS, then kube-proxy's DNAT to the primary), reads it back through
/// `-ro` (a replica) and prints what each side said it is.
async fn traffic_from_a_pod(c: &TestCluster, r: &Running) {
    let image = pgcluster_core::validate(&super::homelab_on_the_node(&r.ns))
        .unwrap()
        .postgres
        .image;
    let token = format!("e2e-{}", std::process::id());
    let script = format!(
        r#"set -e
rw={rw}.{ns}.svc
ro={ro}.{ns}.svc
psql -h "$rw" -v ON_ERROR_STOP=1 -qtA -c "CREATE TABLE IF NOT EXISTS e2e_traffic (v text)" \
  -c "INSERT INTO e2e_traffic VALUES ('{token}')"
echo "rw in recovery: $(psql -h "$rw" -qtA -c 'SELECT pg_is_in_recovery()')"
got=
for i in $(seq 1 100); do
  got=$(psql -h "$ro" -qtA -c "SELECT pg_is_in_recovery(), count(*) FROM e2e_traffic WHERE v = '{token}'" || true)
  if [ "$got" = "t|1" ]; then echo "read back through ro: $got"; exit 0; fi
  sleep 0.1
done
echo "not read back through ro after 100 tries: $got"
exit 1
"#,
        rw = r.name.rw_service(),
        ro = r.name.ro_service(),
        ns = r.ns,
    );
    let secret = r.name.role_secret(APP);
    let object: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "e2e-app", "labels": { "app.kubernetes.io/name": APP } },
        "spec": {
            "restartPolicy": "Never",
            "securityContext": { "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999 },
            "containers": [{
                "name": "psql",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "env": [
                    { "name": "PGUSER", "valueFrom": { "secretKeyRef": { "name": secret, "key": "username" } } },
                    { "name": "PGPASSWORD", "valueFrom": { "secretKeyRef": { "name": secret, "key": "password" } } },
                    { "name": "PGDATABASE", "valueFrom": { "secretKeyRef": { "name": secret, "key": "dbname" } } },
                    { "name": "PGCONNECT_TIMEOUT", "value": "5" }
                ]
            }]
        }
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &r.ns);
    pods.create(&PostParams::default(), &object).await.unwrap();
    let phase = wait_for(
        "the application pod to finish",
        Duration::from_secs(120),
        || async {
            let p = pods.get("e2e-app").await.unwrap();
            let phase = p.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        },
    )
    .await;
    let logs = pods
        .logs("e2e-app", &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"));
    assert_eq!(
        phase,
        "Succeeded",
        "the application pod failed:\n{logs}{}",
        describe_pods(c, &r.ns).await
    );
    assert!(
        logs.contains("rw in recovery: f") && logs.contains("read back through ro: t|1"),
        "the pod's writes and reads did not go to a primary and a replica:\n{logs}"
    );
    eprintln!("traffic from a pod through rw and ro:\n{logs}");
}

/// (e) The whole path on a real node: the controller runs as its Deployment
/// (image imported into containerd), a homelab-like 2-instance cluster is
/// applied as `pgcluster apply` does, the kubelet runs its pods, a primary
/// and a streaming replica come up (pods Ready, `pgcluster.dev/role`
/// labels, status Ready), and an application pod writes through the rw
/// Service and reads the row back through ro (CoreDNS and kube-proxy).
#[tokio::test]
async fn cluster_runs_on_a_real_node() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r = running::start(&c, "node", 2, |_| {}).await;
    let clusters: Api<PostgresCluster> = Api::namespaced(c.admin.clone(), &r.ns);
    let status = clusters.get(r.name.as_str()).await.unwrap().status.unwrap();
    let primary = status.primary.clone().expect("status names the primary");
    let replica = status
        .instances
        .iter()
        .find(|i| i.role == "replica")
        .unwrap_or_else(|| panic!("no replica in the status: {status:?}"));
    assert!(replica.ready, "{status:?}");
    assert_ne!(replica.name, primary);
    assert!(
        replica.lsn.is_some(),
        "the replica reports no replay position: {status:?}"
    );
    let started = Instant::now();
    traffic_from_a_pod(&c, &r).await;
    eprintln!(
        "benchmark: write through rw + read through ro from a pod in {:.1}s (pod start included)",
        started.elapsed().as_secs_f64()
    );
}

/// The `pgcluster` binary (built by cargo: `PGCLUSTER_E2E_CLI`, set by
/// scripts/test-k8s) run with the test cluster's kubeconfig; fails the
/// test when it exits non-zero unless `may_fail`.
fn pgcluster(args: &[&str]) -> (bool, String) {
    let cli = std::env::var("PGCLUSTER_E2E_CLI")
        .expect("PGCLUSTER_E2E_CLI is unset: scripts/test-k8s sets it to the pgcluster binary");
    let kubeconfig = std::env::var(crate::e2e_support::KUBECONFIG_ENV).unwrap();
    let out = std::process::Command::new(&cli)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {cli}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ pgcluster {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

fn pgcluster_ok(args: &[&str]) -> String {
    let (ok, text) = pgcluster(args);
    assert!(ok, "pgcluster {} failed:\n{text}", args.join(" "));
    text
}

/// `pgcluster apply -f`, `status` (text and `-o json`) and `failover --to`
/// run as the real CLI binary against the API server: after each, the Lease
/// holder, the pod labels and pg_is_in_recovery() agree on the new primary.
/// (`switchover` back is not here yet: on the node the target releases the
/// handed-over Lease; see docs/testenv.md.)
#[tokio::test]
async fn cli_apply_status_and_failover_to_move_the_primary() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    running::controller_available(&c).await;
    let ns = c.namespace("cli").await;
    let mut spec = super::homelab_on_the_node(&ns);
    running::ci_timings(&mut spec);
    let validated = pgcluster_core::validate(&spec).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_norway::to_string(&spec).unwrap()).unwrap();
    let path = file.path().to_str().unwrap();
    let applied = Instant::now();
    pgcluster_ok(&["apply", "-f", path, "-n", &ns]);
    let r = Running {
        _cleanup: running::DeleteOnDrop { ns: ns.clone() },
        ns: ns.clone(),
        name: validated.name.clone(),
        instances: 2,
        ready_after: Duration::ZERO,
    };
    running::wait_ready(&c, &r, Duration::from_secs(420)).await;
    eprintln!(
        "benchmark: cluster applied by the CLI Ready {:.1}s after apply",
        applied.elapsed().as_secs_f64()
    );
    let name = r.name.as_str().to_owned();
    let first = settled_primary(&c, &r, Duration::from_secs(60)).await;
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let app = role_target(&c, &r, APP, &rw_ip).await;

    // status, as text and as JSON: the same primary as the Lease.
    let text = pgcluster_ok(&["status", &name, "-n", &ns]);
    assert!(
        text.contains(&first),
        "status does not name {first}:\n{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&pgcluster_ok(&["status", &name, "-n", &ns, "-o", "json"]))
            .expect("status -o json prints JSON");
    assert_eq!(
        json["lease_holder"].as_str(),
        Some(first.as_str()),
        "{json}"
    );
    let roles: Vec<(String, String)> = json["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap_or_default().to_owned(),
                i["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        roles.contains(&(first.clone(), "primary".to_owned())),
        "{json}"
    );
    let other = members(&c, &r)
        .await
        .into_keys()
        .find(|m| *m != first)
        .unwrap();
    assert!(
        roles.contains(&(other.clone(), "replica".to_owned())),
        "{json}"
    );
    assert_roles_in_postgres(&c, &r, &app, &first).await;

    // failover --to is refused while the primary is healthy...
    let (ok, text) = pgcluster(&["failover", &name, "-n", &ns, "--to", &other]);
    assert!(
        !ok,
        "failover --to was accepted while the primary was healthy:\n{text}"
    );
    // ...and moves the primary once it is gone: the whole primary paused
    // (agent, fencer and server), as a hung node would be.
    let procs: Vec<i32> = container_processes(&pod(&c, &r, &first).await, CONTAINER)
        .iter()
        .map(|p| p.pid)
        .collect();
    let paused = Paused::stop(&format!("every process of {first}"), procs);
    let started = Instant::now();
    pgcluster_ok(&[
        "failover",
        &name,
        "-n",
        &ns,
        "--to",
        &other,
        "--timeout",
        "60",
    ]);
    let failover = started.elapsed();
    assert_eq!(lease_holder(&c, &r).await.as_deref(), Some(other.as_str()));
    let paused_for = paused.resume();
    assert_eq!(
        settled_primary(&c, &r, Duration::from_secs(60)).await,
        other
    );
    running::wait_ready(&c, &r, Duration::from_secs(180)).await;
    assert_roles_in_postgres(&c, &r, &app, &other).await;
    eprintln!(
        "benchmark: pgcluster failover --to {:.2}s with the primary paused ({:.1}s paused)",
        failover.as_secs_f64(),
        paused_for.as_secs_f64()
    );

    drop(file);
}

/// Failsafe: the API server paused (SIGSTOP) for two lease durations and a second
/// while both members see each other: the primary keeps acknowledging
/// writes the whole time (every peer confirms it directly); resumed,
/// nothing changed: same holder, same term and timeline, same primary.
#[tokio::test]
async fn failsafe_keeps_the_primary_writable_while_the_api_server_is_paused() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r = running::start(&c, "failsafe", 2, running::ci_timings).await;
    let primary = settled_primary(&c, &r, Duration::from_secs(60)).await;
    let primary_ip = members(&c, &r).await[&primary].ip.clone().unwrap();
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let app = role_target(&c, &r, APP, &rw_ip).await;
    create_table(&app, "e2e_failsafe").await;
    let timeline_before = on_pod(
        &app.at(&primary_ip),
        "SELECT timeline_id FROM pg_control_checkpoint()",
    )
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.admin.clone(), &r.ns);
    let lease_before = leases
        .get(&r.name.leader_lease())
        .await
        .unwrap()
        .spec
        .unwrap();
    let duration = Duration::from_secs(
        u64::try_from(lease_before.lease_duration_seconds.unwrap_or(2)).unwrap(),
    );
    // Pinned to the primary's pod IP: no Service may change under it while
    // the API server is away (kube-proxy keeps its rules anyway).
    let writer = Writer::start(
        "e2e-failsafe",
        app.at(&primary_ip),
        "e2e_failsafe",
        1,
        Duration::from_millis(20),
    );
    writes_flow(&writer, 0, 5, "writes before the pause").await;

    let pause_for = duration * 2 + Duration::from_secs(1);
    let paused = Paused::stop("kube-apiserver", vec![apiserver_pid()]);
    let acked_at_pause = writer.acked();
    // Time is what is tested here: writes must keep being acknowledged for
    // longer than the lease lasts. Watched every 100 ms, bounded.
    let mut max_gap = Duration::ZERO;
    let mut last_count = acked_at_pause;
    let mut last_progress = Instant::now();
    while paused.since.elapsed() < pause_for {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = writer.acked();
        if now > last_count {
            last_count = now;
            last_progress = Instant::now();
        }
        max_gap = max_gap.max(last_progress.elapsed());
    }
    let acked_during = writer.acked() - acked_at_pause;
    let paused_for = paused.resume();
    let log = writer.finish().await;
    assert!(
        max_gap < duration,
        "the primary stopped acknowledging writes for {max_gap:?} while the API server was \
         paused (lease {duration:?}); last failures: {:?}",
        log.failures.iter().rev().take(5).collect::<Vec<_>>()
    );
    assert!(
        acked_during > 10,
        "only {acked_during} writes during the pause"
    );

    // Resumed: nothing changed.
    let lease_after = wait_for(
        "the API server to answer again",
        Duration::from_secs(30),
        || async { leases.get(&r.name.leader_lease()).await.ok()?.spec },
    )
    .await;
    assert_eq!(lease_after.holder_identity, lease_before.holder_identity);
    assert_eq!(
        lease_after.lease_transitions,
        lease_before.lease_transitions
    );
    assert_eq!(
        settled_primary(&c, &r, Duration::from_secs(30)).await,
        primary
    );
    let timeline_after = on_pod(
        &app.at(&primary_ip),
        "SELECT timeline_id FROM pg_control_checkpoint()",
    )
    .await;
    assert_eq!(timeline_after, timeline_before, "the timeline changed");
    assert_roles_in_postgres(&c, &r, &app, &primary).await;
    let present = ids(&app, "e2e_failsafe").await;
    let lost = missing(&log.acks, &present);
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    eprintln!(
        "benchmark: failsafe: API server paused {:.1}s (lease {}s): {acked_during} writes \
         acknowledged meanwhile, longest gap {} ms; same primary and timeline after",
        paused_for.as_secs_f64(),
        duration.as_secs(),
        max_gap.as_millis()
    );
}

/// Issue 10 on Kubernetes: the primary's agent alone paused (SIGSTOP; the
/// fencer and PostgreSQL keep running) for longer than the lease: its
/// server stops acknowledging writes before the replica is promoted (a
/// writer pinned to the old primary's pod IP sees its last commit before a
/// writer pinned to the replica sees its first), then, resumed, the old
/// primary re-joins as a replica. Async mode, so that the new primary
/// writes at once and an overlap would show.
#[tokio::test]
async fn fence_stops_a_primary_whose_agent_is_paused() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r = running::start(&c, "fence", 2, |spec| {
        running::ci_timings(spec);
        let replication = spec.spec.replication.get_or_insert_with(Default::default);
        replication.mode = Some(ReplicationMode::Async);
    })
    .await;
    let old = settled_primary(&c, &r, Duration::from_secs(60)).await;
    let all = members(&c, &r).await;
    let replica = all.keys().find(|m| **m != old).unwrap().clone();
    let old_ip = all[&old].ip.clone().unwrap();
    let replica_ip = all[&replica].ip.clone().unwrap();
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let app = role_target(&c, &r, APP, &rw_ip).await;
    create_table(&app, "e2e_fence").await;
    // Two writers, one pinned to each server; ids apart.
    let on_old = Writer::start(
        "e2e-fence-old",
        app.at(&old_ip),
        "e2e_fence",
        1,
        Duration::from_millis(10),
    );
    let on_new = Writer::start(
        "e2e-fence-new",
        app.at(&replica_ip),
        "e2e_fence",
        1_000_000_000,
        Duration::from_millis(10),
    );
    writes_flow(&on_old, 0, 5, "writes on the primary before the pause").await;
    assert_eq!(
        on_new.acked(),
        0,
        "the replica accepted a write before any failover"
    );

    let procs = container_processes(&pod(&c, &r, &old).await, CONTAINER);
    let agent: Vec<i32> = procs
        .iter()
        .filter(|p| p.cmdline.contains("pgcluster agent"))
        .map(|p| p.pid)
        .collect();
    assert_eq!(agent.len(), 1, "one agent process in {old}: {procs:?}");
    let paused = Paused::stop(&format!("the agent of {old}"), agent);
    let new = wait_for(
        "the replica to take the Lease",
        Duration::from_secs(60),
        || async { lease_holder(&c, &r).await.filter(|h| *h != old) },
    )
    .await;
    assert_eq!(new, replica);
    let promoted_after = paused.since.elapsed();
    writes_flow(&on_new, 0, 5, "writes on the new primary").await;
    let paused_at = paused.since;
    let paused_for = paused.resume();
    let old_log = on_old.finish().await;
    let new_log = on_new.finish().await;
    let last_old = old_log
        .last_acked_before(Instant::now())
        .expect("writes acknowledged by the old primary");
    let first_new = new_log
        .acks
        .first()
        .copied()
        .expect("writes acknowledged by the new primary");
    assert!(
        last_old.acked < first_new.sent,
        "split brain: the old primary acknowledged a commit {:?} after the new primary's first \
         was sent",
        last_old.acked - first_new.sent
    );
    let fenced_after = last_old.acked.saturating_duration_since(paused_at);
    // Resumed: the old primary re-joins as a replica of the new one.
    wait_for(
        "the old primary to re-join as a ready replica",
        Duration::from_secs(120),
        || async {
            let m = members(&c, &r).await.remove(&old)?;
            (m.role == "replica" && m.ready).then_some(())
        },
    )
    .await;
    assert_eq!(settled_primary(&c, &r, Duration::from_secs(60)).await, new);
    assert_roles_in_postgres(&c, &r, &app, &new).await;
    eprintln!(
        "benchmark: fence on the node: agent of {old} paused {:.1}s; its server's last commit \
         {} ms before the new primary's first write was sent; {new} took the Lease {:.1}s into \
         the pause; last old commit {:.1}s into the pause",
        paused_for.as_secs_f64(),
        (first_new.sent - last_old.acked).as_millis(),
        promoted_after.as_secs_f64(),
        fenced_after.as_secs_f64(),
    );
}
