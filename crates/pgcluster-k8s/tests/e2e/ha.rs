//! High availability on the real node: traffic through the Services from a
//! pod, failover by kill -9 of the primary's container, switchover and
//! forced failover through the `pgcluster` CLI, and failsafe while the API
//! server is paused. (The fence tests are in `fence.rs`.)
//!
//! The writers and SQL checks run in the node's network namespace (pod IPs
//! and ClusterIPs are routed there); processes are found through the pod's
//! cgroup on the node and signalled by PID (`e2e_support::node`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use pgcluster_core::api::v1alpha1::{PostgresCluster, ReplicationMode};

use super::checks::{APP, assert_roles_in_postgres, create_table, ids, on_pod, writes_flow};
use super::running::{
    self, CONTAINER, Running, cluster_ip, lease_holder, members, pod, role_target, settled_primary,
};
use super::{describe_pods, node};
use crate::e2e_support::node::{Paused, apiserver_pid, container_id, container_processes, signal};
use crate::e2e_support::sql::{Writer, min_median_max, missing};
use crate::e2e_support::{TestCluster, cluster, wait_for};
use nix::sys::signal::Signal;

/// A pod in the cluster's namespace, running the instance image's psql as
/// an application would: writes a row through `<cluster>-rw.<ns>.svc`
/// (CoreDNS, then kube-proxy's DNAT to the primary), reads it back through
/// `-ro` (a replica) and prints what each side said it is.
async fn traffic_from_a_pod(c: &TestCluster, r: &Running) {
    let validated = pgcluster_core::validate_on(
        &super::homelab_on_the_node(&r.ns),
        pgcluster_core::Platform::Kubernetes,
    )
    .unwrap();
    let image = &validated.postgres().image;
    let token = format!("e2e-{}", std::process::id());
    let script = format!(
        r#"set -e
rw={rw}.{ns}.svc
ro={ro}.{ns}.svc
# The Service's endpoint reaches kube-proxy's rules up to a sync period after
# the cluster is Ready (seen: connection refused once): wait, bounded.
for i in $(seq 1 50); do
  if psql -h "$rw" -qtA -c 'SELECT 1' >/dev/null 2>&1; then break; fi
  sleep 0.2
done
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

/// Sets the replication mode to sync (the homelab spec's, asserted).
fn synchronous(spec: &mut PostgresCluster) {
    let replication = spec.spec.replication.get_or_insert_with(Default::default);
    replication.mode = Some(ReplicationMode::Sync);
}

/// Kills every process of `name`'s instance container with SIGKILL (as a
/// crash of the container would); returns when.
async fn kill_container(c: &TestCluster, r: &Running, name: &str) -> Instant {
    let p = pod(c, r, name).await;
    let procs = container_processes(&p, CONTAINER);
    assert!(
        procs.iter().any(|p| p.cmdline.contains("pgcluster agent")),
        "{name}: no agent among the container's processes: {procs:?}"
    );
    let killed = Instant::now();
    for p in &procs {
        signal(p.pid, Signal::SIGKILL);
    }
    killed
}

/// A primary whose container crashes and stays down: kill -9 of its
/// processes, and again each time the kubelet restarts it, until another
/// member holds the Lease. (Killed once, the kubelet restarts it within a
/// second and its agent resumes its own unexpired Lease: a restart in
/// place, no failover.) Returns the last kill, the new holder and the
/// number of kills.
async fn crash_until_failover(c: &TestCluster, r: &Running, old: &str) -> (Instant, String, u32) {
    let mut killed: BTreeSet<String> = container_id(&pod(c, r, old).await, CONTAINER)
        .into_iter()
        .collect();
    let mut last_kill = kill_container(c, r, old).await;
    let mut kills = 1;
    let since = Instant::now();
    loop {
        if let Some(holder) = lease_holder(c, r).await.filter(|h| h != old) {
            return (last_kill, holder, kills);
        }
        let p = pod(c, r, old).await;
        if let Some(id) = container_id(&p, CONTAINER)
            && !killed.contains(&id)
            && !container_processes(&p, CONTAINER).is_empty()
        {
            last_kill = kill_container(c, r, old).await;
            killed.insert(id);
            kills += 1;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60) && kills <= 20,
            "no other member took the Lease within {:?} and {kills} kills of {old}:{}",
            since.elapsed(),
            describe_pods(c, &r.ns).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Failover by kill -9, ten times, in sync mode with three instances
/// (the homelab spec's `sync`/`block`; a third instance keeps a synchronous
/// standby while the killed one is down): each time the primary's
/// container is killed and kept down, another member takes the real Lease
/// and is promoted, the rw Service's endpoint follows, the killed pod is
/// restarted by the kubelet and re-joins as a replica, and no commit
/// acknowledged to the writer through rw is lost. Prints the write windows
/// (the writer's last commit before the final kill to its first after),
/// with the Kubernetes default timings.
#[tokio::test]
async fn failover_by_kill_loses_no_acknowledged_write() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r = running::start(&c, "kill", 3, synchronous).await;
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let app = role_target(&c, &r, APP, &rw_ip).await;
    create_table(&app, "e2e_kill").await;
    let writer = Writer::start(
        "e2e-writer",
        app.clone(),
        "e2e_kill",
        1,
        Duration::from_millis(20),
    );
    let mut kills = Vec::new();
    let mut lease_moved = Vec::new();
    for round in 1..=10 {
        running::wait_ready(&c, &r, Duration::from_secs(180)).await;
        let old = settled_primary(&c, &r, Duration::from_secs(60)).await;
        writes_flow(
            &writer,
            writer.acked(),
            5,
            "writes through rw before the kill",
        )
        .await;
        let restarts = members(&c, &r).await[&old].restarts;
        let first_kill = Instant::now();
        let (last_kill, new, times) = crash_until_failover(&c, &r, &old).await;
        let took_lease = last_kill.elapsed();
        let acked_at_move = writer.acked();
        let settled = settled_primary(&c, &r, Duration::from_secs(60)).await;
        assert_eq!(
            settled, new,
            "round {round}: the Lease moved to {new} but {settled} serves rw"
        );
        writes_flow(
            &writer,
            acked_at_move,
            3,
            "writes through rw after the failover",
        )
        .await;
        let new_ip = members(&c, &r).await[&new].ip.clone().unwrap();
        assert_eq!(
            on_pod(&app.at(&new_ip), "SELECT pg_is_in_recovery()").await,
            "f"
        );
        // The kubelet restarts the killed container; it re-joins as a replica.
        wait_for(
            "the killed pod to be restarted and re-join as a ready replica",
            Duration::from_secs(120),
            || async {
                let m = members(&c, &r).await.remove(&old)?;
                (m.restarts > restarts && m.role == "replica" && m.ready).then_some(())
            },
        )
        .await;
        let old_ip = members(&c, &r).await[&old].ip.clone().unwrap();
        assert_eq!(
            on_pod(&app.at(&old_ip), "SELECT pg_is_in_recovery()").await,
            "t"
        );
        eprintln!(
            "round {round}: {old} killed {times}x over {:.1}s; {new} took the Lease {:.1}s after \
             the last kill",
            (last_kill - first_kill).as_secs_f64(),
            took_lease.as_secs_f64()
        );
        kills.push(last_kill);
        lease_moved.push(took_lease);
    }
    let log = writer.finish().await;
    let present = ids(&app, "e2e_kill").await;
    let lost = missing(&log.acks, &present);
    assert!(
        lost.is_empty(),
        "{} acknowledged commits lost (of {}): {:?}",
        lost.len(),
        log.acks.len(),
        &lost[..lost.len().min(20)]
    );
    let windows: Vec<Duration> = kills
        .iter()
        .map(|&k| {
            let before = log
                .last_acked_before(k)
                .expect("writes acknowledged before each kill");
            let after = log
                .first_sent_after(k)
                .expect("writes acknowledged after each kill");
            after.acked - before.acked
        })
        .collect();
    let (min, median, max) = min_median_max(&windows).unwrap();
    let (lmin, lmedian, lmax) = min_median_max(&lease_moved).unwrap();
    eprintln!(
        "benchmark: failover by kill -9 on the node (sync, 3 instances, {} failovers): write \
         window min {} ms, median {} ms, max {} ms; Lease taken after min {} ms, median {} ms, \
         max {} ms; {} acknowledged commits, none lost, {} failed attempts",
        windows.len(),
        min.as_millis(),
        median.as_millis(),
        max.as_millis(),
        lmin.as_millis(),
        lmedian.as_millis(),
        lmax.as_millis(),
        log.acks.len(),
        log.failures.len()
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

/// `pgcluster apply -f`, `status` (text and `-o json`), `failover --to` and `switchover --to`
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
    let spec = super::homelab_on_the_node(&ns);
    let validated =
        pgcluster_core::validate_on(&spec, pgcluster_core::Platform::Kubernetes).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_norway::to_string(&spec).unwrap()).unwrap();
    let path = file.path().to_str().unwrap();
    let applied = Instant::now();
    pgcluster_ok(&["apply", "-f", path, "-n", &ns]);
    let r = Running {
        _cleanup: running::DeleteOnDrop { ns: ns.clone() },
        ns: ns.clone(),
        name: validated.name().clone(),
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

    // switchover --to the old primary, now a replica again. Ready and in
    // recovery do not yet mean streaming from the new primary, and until it
    // streams the primary refuses (as it should): ask again on that refusal
    // only, for at most a minute; the last, accepted call is measured.
    let args = [
        "switchover",
        name.as_str(),
        "-n",
        ns.as_str(),
        "--to",
        first.as_str(),
    ];
    let asked_from = Instant::now();
    let switchover = loop {
        let started = Instant::now();
        let (ok, text) = pgcluster(&args);
        if ok {
            break started.elapsed();
        }
        assert!(
            text.contains("cleared the request without handing over")
                && asked_from.elapsed() < Duration::from_secs(60),
            "pgcluster switchover failed:\n{text}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let started = Instant::now() - switchover;
    assert_eq!(lease_holder(&c, &r).await.as_deref(), Some(first.as_str()));
    assert_eq!(
        settled_primary(&c, &r, Duration::from_secs(60)).await,
        first
    );
    let settled_after_switchover = started.elapsed();
    running::wait_ready(&c, &r, Duration::from_secs(120)).await;
    assert_roles_in_postgres(&c, &r, &app, &first).await;
    eprintln!(
        "benchmark: pgcluster switchover {:.2}s (rw endpoint moved after {:.2}s)",
        switchover.as_secs_f64(),
        settled_after_switchover.as_secs_f64(),
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
    let r = running::start(&c, "failsafe", 2, |_| {}).await;
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
