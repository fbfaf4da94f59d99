//! `pgcluster up` with real PostgreSQL: writes through rw reach the replica,
//! ro serves reads, a second `up` refuses, `down` + `up` keeps every row, and
//! bad prerequisites (missing binaries, a port in use) fail clearly with
//! nothing left running.

mod local_support;

use std::time::Duration;

use local_support::{TestCluster, connect, eventually, fast_spec};

/// Rows written through rw are visible on the replica and through ro; a
/// second `up` refuses; after down + up every row is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_replicates_refuses_twice_and_keeps_data_across_down_up() {
    let cluster = TestCluster::new(&fast_spec("basic", "async", ""));
    cluster.up();
    let status = cluster.wait_ready(1, Duration::from_secs(30));
    let pw = cluster.password();

    let rw = connect(cluster.rw(), &pw).await.expect("rw connects");
    rw.batch_execute(
        "CREATE TABLE t (id int primary key); INSERT INTO t SELECT generate_series(1, 100)",
    )
    .await
    .expect("write through rw");
    let replica_port = status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["role"] == "replica")
        .and_then(|i| i["pg_port"].as_u64())
        .expect("a replica") as u16;
    let replica = connect(replica_port, &pw).await.expect("replica connects");
    eventually(
        "the rows on the replica",
        Duration::from_secs(10),
        || async {
            let n: i64 = replica
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .ok()?
                .get(0);
            (n == 100).then_some(())
        },
    )
    .await;
    let ro = connect(cluster.ro(), &pw).await.expect("ro connects");
    let in_recovery: bool = ro
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("ro answers")
        .get(0);
    assert!(in_recovery, "ro serves reads from the replica");

    // A second up on the running cluster refuses and changes nothing.
    let base = cluster.base.to_string();
    let spec = cluster.spec.display().to_string();
    let second = cluster.run(&["up", "-f", &spec, "--port", &base, "--detach"]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    let n: i64 = rw
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("still up")
        .get(0);
    assert_eq!(n, 100);
    drop((rw, ro, replica));

    let down = cluster.run(&["down"]);
    assert!(down.status.success());
    assert!(
        connect(cluster.rw(), &pw).await.is_err(),
        "nothing listens after down"
    );
    cluster.up();
    cluster.wait_ready(1, Duration::from_secs(30));
    let rw = connect(cluster.rw(), &pw).await.expect("rw after restart");
    let n: i64 = rw
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(n, 100, "down + up keeps every row");
}

/// Missing binaries and a taken port are reported clearly before anything starts.
#[test]
fn bad_prerequisites_fail_clearly() {
    let cluster = TestCluster::new(&fast_spec("prereq", "async", ""));
    let base = cluster.base.to_string();
    let spec = cluster.spec.display().to_string();
    let out = cluster.run(&[
        "up",
        "-f",
        &spec,
        "--port",
        &base,
        "--detach",
        "--pg-bin",
        "/nonexistent/bin",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/bin") && err.contains("--pg-bin"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind(("127.0.0.1", cluster.base)).expect("bind rw port");
    let out = cluster.run(&["up", "-f", &spec, "--port", &base, "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{}", cluster.base)) && err.contains("in use"),
        "{err}"
    );
    drop(taken);
    let status = cluster.run(&["status", "-o", "json"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        !text.contains("\"ready\": true"),
        "nothing was started: {text}"
    );
}
