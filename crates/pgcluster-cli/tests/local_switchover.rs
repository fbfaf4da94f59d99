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
