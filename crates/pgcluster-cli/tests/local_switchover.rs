//! Switchover with real PostgreSQL under a steady writer: zero acknowledged
//! writes lost, and the old primary follows the new one.

mod local_support;

use std::time::Duration;

use local_support::{WrittenCluster, missing};

/// `pgcluster switchover` hands the primary role over without losing an
/// acknowledged write; the old primary becomes a streaming replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_loses_nothing_and_old_primary_follows() {
    let written = WrittenCluster::start(
        "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: swo, namespace: default}
spec:
  instances: 2
  replication: {mode: sync}
",
        50,
    )
    .await;
    let old = written.primary_name();
    let WrittenCluster {
        cluster,
        password: pw,
        writer,
        ..
    } = written;
    let out = cluster.run(&["switchover", "--timeout", "30"]);
    assert!(out.status.success(), "switchover failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{old} ->")), "{text}");
    // The writer commits through the new primary too before it stops.
    let before = writer.acked();
    writer
        .wait_acked_over(before + 10, Duration::from_secs(30))
        .await;
    let acked = writer.finish().await;
    assert!(acked.len() > 60);
    let lost = missing(cluster.rw(), &pw, &acked).await;
    assert!(
        lost.is_empty(),
        "switchover lost acknowledged writes: {lost:?}"
    );
    let status = cluster.wait_ready(1, Duration::from_secs(30));
    let old_now = status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["instance"] == old.as_str())
        .cloned()
        .expect("old primary listed");
    assert_eq!(old_now["role"], "replica");
    assert_ne!(old_now["following"], serde_json::Value::Null);
}

/// A switchover whose pre-stop CHECKPOINT outlasts the renew deadline (many
/// dirty buffers, a short lease) keeps renewing the lease while it stops
/// cleanly: nothing is fenced, the switchover succeeds, and the old primary
/// follows the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_checkpoint_does_not_fence_the_switching_primary() {
    let written = WrittenCluster::start(
        "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: swslow, namespace: default}
spec:
  instances: 2
  replication: {mode: async}
  postgres:
    parameters: {shared_buffers: 2GB, checkpoint_timeout: 1h, max_wal_size: 16GB}
  failover: {leaseDuration: 800ms, loopInterval: 100ms, renewDeadline: 400ms, stopWritesTimeout: 150ms, maxClockDrift: 100ms}
",
        20,
    )
    .await;
    let old = written.primary_name();
    let WrittenCluster {
        cluster,
        password: pw,
        writer,
        ..
    } = written;
    // Dirty about 1.4 GB of shared buffers that no checkpoint has written yet.
    let c = local_support::connect(cluster.rw(), &pw)
        .await
        .expect("rw connects");
    c.batch_execute(
        "CHECKPOINT;
         CREATE TABLE big AS SELECT g AS id, repeat('x', 900) AS pad FROM generate_series(1, 1500000) g;",
    )
    .await
    .expect("fill shared buffers");
    drop(c);
    let out = cluster.run(&["switchover", "--timeout", "60"]);
    let members = cluster.data().join("members");
    let mut fenced = Vec::new();
    for m in std::fs::read_dir(&members).expect("members").flatten() {
        for log in ["agent.log", "log/postgresql.log"] {
            let text = std::fs::read_to_string(m.path().join(log)).unwrap_or_default();
            fenced.extend(
                text.lines()
                    .filter(|l| l.contains("fencing") || l.contains("to=Fenced"))
                    .map(str::to_owned),
            );
        }
    }
    let checkpoint_ms: Vec<String> = std::fs::read_dir(&members)
        .expect("members")
        .flatten()
        .flat_map(|m| {
            std::fs::read_to_string(m.path().join("agent.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("checkpoint before the clean stop"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    eprintln!("pre-stop checkpoint: {checkpoint_ms:?}");
    assert!(
        fenced.is_empty(),
        "a primary was fenced during its switchover: {fenced:#?}"
    );
    assert!(out.status.success(), "switchover failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{old} ->")), "{text}");
    let before = writer.acked();
    writer
        .wait_acked_over(before + 10, Duration::from_secs(30))
        .await;
    let acked = writer.finish().await;
    let lost = missing(cluster.rw(), &pw, &acked).await;
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
}
