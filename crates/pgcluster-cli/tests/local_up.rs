//! `pgcluster up` with real PostgreSQL: writes through rw reach the replica,
//! ro serves reads, a second `up` refuses, `down` + `up` keeps every row, and
//! bad prerequisites (missing binaries, a port in use) fail clearly with
//! nothing left running.

mod local_support;

use std::time::Duration;

use pgcluster_ha::local::layout::Layout;

use local_support::{
    TestCluster, alive, connect, connect_as, eventually, fast_spec, kill, wait_exit,
};

/// A second `up` of the same cluster fails and names the running
/// foreground `up` (PID `up_pid`) as the process to stop.
fn second_up_names_the_running_up(cluster: &TestCluster, up_pid: u32) {
    let base = cluster.base.to_string();
    let spec = cluster.spec.display().to_string();
    let second = cluster.run(&["up", "-f", &spec, "--port", &base, "--detach"]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains(&format!("(`pgcluster up`, PID {up_pid})")),
        "{err}"
    );
}

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
    // It names what the user started (`up --detach` left the router), not an agent.
    let router = cluster.record()["router_pid"]
        .as_u64()
        .expect("a router PID");
    assert!(
        err.contains(&format!(
            "router, from `pgcluster up --detach`, PID {router})"
        )),
        "{err}"
    );
    let n: i64 = rw
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("still up")
        .get(0);
    assert_eq!(n, 100);
    drop((rw, ro, replica));

    // The coordinator's runtime state is on tmpfs, its durable copy in the
    // data dir names the same holder, and `down` removes the runtime copy.
    let layout = Layout::new(cluster.data());
    let durable = || -> serde_json::Value {
        let text = std::fs::read_to_string(layout.coordinator_dir().join("coordinator.json"))
            .expect("the durable lease file");
        serde_json::from_str(&text).expect("json")
    };
    let holder = status["lease_holder"]
        .as_str()
        .expect("a holder")
        .to_owned();
    assert_eq!(durable()["lease"]["record"]["holder"], holder.as_str());
    let runtime = layout.runtime_dir();
    if let Some(run) = &runtime {
        for m in status["instances"].as_array().expect("instances") {
            let name = m["instance"].as_str().expect("name");
            assert!(
                run.join("members").join(format!("{name}.json")).exists(),
                "{name} publishes to {}",
                run.display()
            );
        }
        assert!(
            !layout.coordinator_dir().join("members").exists(),
            "member states never touch the data dir"
        );
    }

    let down = cluster.run(&["down"]);
    assert!(down.status.success());
    assert!(
        connect(cluster.rw(), &pw).await.is_err(),
        "nothing listens after down"
    );
    if let Some(run) = &runtime {
        assert!(!run.exists(), "down removes {}", run.display());
    }
    assert_eq!(durable()["lease"]["record"]["holder"], holder.as_str());
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

    // A data dir PostgreSQL's OS user cannot reach (we run as root; it does
    // not) is refused at once instead of timing out.
    use std::os::unix::fs::PermissionsExt;
    let private = cluster.dir.path().join("private");
    std::fs::create_dir(&private).expect("mkdir private");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let out = std::process::Command::new(local_support::bin())
        .args(["up", "-f", &spec, "--port", &base, "--detach", "--data-dir"])
        .arg(private.join("data"))
        .output()
        .expect("run pgcluster up");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may not enter") && err.contains(private.to_string_lossy().as_ref()),
        "{err}"
    );
    assert!(
        !private.join("data/cluster.json").exists(),
        "nothing recorded for an unreachable data dir"
    );

    let status = cluster.run(&["status", "-o", "json"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        !text.contains("\"ready\": true"),
        "nothing was started: {text}"
    );
}

/// Foreground `up` stopped by SIGINT (Ctrl-C) stops every agent and
/// postmaster it started and its in-process router, exits 0, and a
/// following `up` starts the cluster again with every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_up_stops_everything_on_ctrl_c_and_data_survives() {
    let mut cluster = TestCluster::new(&fast_spec("fg", "async", ""));
    cluster.extra.push(cluster.spawn_up_foreground());
    eventually(
        "the foreground up to report a ready cluster",
        Duration::from_secs(120),
        || {
            let exited = cluster.extra[0].try_wait().expect("try_wait");
            assert!(
                exited.is_none(),
                "up exited early ({exited:?}):\n{}",
                cluster.up_output()
            );
            let text = cluster.up_output();
            async move { text.contains("is ready").then_some(()) }
        },
    )
    .await;
    let status = cluster.wait_ready(1, Duration::from_secs(30));
    let pw = cluster.password();
    let rw = connect(cluster.rw(), &pw).await.expect("rw connects");
    rw.batch_execute(
        "CREATE TABLE t (id int primary key); INSERT INTO t SELECT generate_series(1, 100)",
    )
    .await
    .expect("write through rw");
    drop(rw);

    let up_pid = cluster.extra[0].id();
    let record = cluster.record();
    assert_eq!(record["up_pid"].as_u64(), Some(u64::from(up_pid)));
    let instances = status["instances"].as_array().expect("instances");
    let mut pids: Vec<(String, u32)> = Vec::new();
    for i in instances {
        let name = i["instance"].as_str().expect("name");
        for key in ["agent_pid", "postgres_pid"] {
            let pid = i[key].as_u64().unwrap_or_else(|| panic!("{name} {key}")) as u32;
            pids.push((format!("{key} of {name}"), pid));
        }
    }
    assert_eq!(pids.len(), 4);
    for (what, pid) in &pids {
        assert!(alive(*pid), "{what} ({pid}) runs before Ctrl-C");
    }

    // A second `up` names the foreground `up`'s PID, the process to stop.
    second_up_names_the_running_up(&cluster, up_pid);

    assert!(kill(up_pid, "INT"), "SIGINT to up");
    let exit = wait_exit(&mut cluster.extra[0], Duration::from_secs(90));
    let output = cluster.up_output();
    assert!(
        exit.success(),
        "up exits 0 after Ctrl-C: {exit:?}\n{output}"
    );
    assert!(output.contains("stopped"), "{output}");
    let still: Vec<_> = pids.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(still.is_empty(), "still running after Ctrl-C: {still:?}");
    assert!(
        connect(cluster.rw(), &pw).await.is_err(),
        "the rw endpoint is closed after Ctrl-C"
    );
    let record = cluster.record();
    assert!(record["up_pid"].is_null(), "{record:#}");
    for m in record["members"].as_array().expect("members") {
        assert!(m["agent_pid"].is_null(), "{record:#}");
    }

    cluster.up();
    cluster.wait_ready(1, Duration::from_secs(60));
    let rw = connect(cluster.rw(), &pw).await.expect("rw after restart");
    let n: i64 = rw
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(n, 100, "Ctrl-C + up keeps every row");
}

/// Ctrl-C while a foreground `up` is still starting stops the agents (and
/// any postmaster) it already started instead of orphaning them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_startup_leaves_nothing_running() {
    let mut cluster = TestCluster::new(&fast_spec("fgstart", "async", ""));
    cluster.extra.push(cluster.spawn_up_foreground());
    let up_pid = cluster.extra[0].id();
    let record_path = cluster.data().join("cluster.json");
    let agents: Vec<u32> = eventually("up to record both agents", Duration::from_secs(60), || {
        let exited = cluster.extra[0].try_wait().expect("try_wait");
        assert!(
            exited.is_none(),
            "up exited early:\n{}",
            cluster.up_output()
        );
        let pids: Vec<u32> = std::fs::read(&record_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|r| {
                r["members"]
                    .as_array()?
                    .iter()
                    .map(|m| m["agent_pid"].as_u64().map(|p| p as u32))
                    .collect::<Option<Vec<u32>>>()
            })
            .unwrap_or_default();
        async move { (pids.len() == 2).then_some(pids) }
    })
    .await;
    // A second `up` names the foreground `up`'s PID, the process to stop.
    second_up_names_the_running_up(&cluster, up_pid);

    assert!(kill(up_pid, "INT"), "SIGINT to up");
    let exit = wait_exit(&mut cluster.extra[0], Duration::from_secs(90));
    let output = cluster.up_output();
    // The cluster may have become ready just before the signal: then it
    // stops like a running one (exit 0); otherwise `up` reports the interruption.
    assert!(
        exit.success() || (exit.code() == Some(2) && output.contains("interrupted")),
        "up ends normally after Ctrl-C, not killed by it: {exit:?}\n{output}"
    );
    for pid in &agents {
        assert!(
            !alive(*pid),
            "agent {pid} still runs after Ctrl-C\n{output}"
        );
    }
    for m in ["fgstart-0", "fgstart-1"] {
        let pidfile = local_support::member_data(&cluster.data(), m).join("postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        {
            assert!(
                !alive(pid),
                "postmaster {pid} of {m} still runs after Ctrl-C"
            );
        }
    }
}

/// A spec with two databases and roles: owners, a reader and a writer of `app`.
const GRANTS_SPEC: &str = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: grants, namespace: default}
spec:
  instances: 2
  replication: {mode: async}
  failover: {leaseDuration: 1s, loopInterval: 100ms, renewDeadline: 600ms, stopWritesTimeout: 200ms, maxClockDrift: 100ms}
  databases:
    - {name: app, owner: app}
    - {name: other, owner: other}
  roles:
    - name: app
    - name: other
    - name: reporting
      grants: [{database: app, privileges: readOnly}]
    - name: writer
      grants: [{database: app, privileges: readWrite}]
";

/// The privileges `role` holds, as `has_*_privilege` sees them, on table
/// `t`, its sequence, schema public and the database it is connected to.
async fn privileges(c: &tokio_postgres::Client, role: &str) -> Vec<String> {
    let checks = [
        ("table", "t", "SELECT"),
        ("table", "t", "INSERT"),
        ("table", "t", "UPDATE"),
        ("table", "t", "DELETE"),
        ("table", "t", "TRUNCATE"),
        ("table", "t", "REFERENCES"),
        ("table", "t", "TRIGGER"),
        ("sequence", "t_id_seq", "USAGE"),
        ("sequence", "t_id_seq", "UPDATE"),
        ("schema", "public", "USAGE"),
        ("schema", "public", "CREATE"),
        ("database", "app", "CONNECT"),
        ("database", "app", "CREATE"),
        ("database", "app", "TEMP"),
    ];
    let mut held = Vec::new();
    for (kind, object, privilege) in checks {
        let sql = format!("SELECT has_{kind}_privilege($1, $2, $3)");
        let has: bool = c
            .query_one(&sql, &[&role, &object, &privilege])
            .await
            .expect("privilege check")
            .get(0);
        if has {
            held.push(format!("{kind} {object} {privilege}"));
        }
    }
    held
}

/// In local mode the declared roles get exactly their grants: the owner
/// owns its database, a readOnly role only reads, a readWrite role also
/// writes and uses sequences, neither creates objects nor reaches an
/// undeclared database, none is privileged; unchanged after down + up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_roles_get_exactly_their_grants() {
    let cluster = TestCluster::new(GRANTS_SPEC);
    cluster.up();
    cluster.wait_ready(1, Duration::from_secs(30));
    let rw = cluster.rw();
    let pw = |r: &str| cluster.role_password(r);

    // The owner creates a table after the grants were applied (default privileges).
    let owner = connect_as(rw, "app", &pw("app"), "app")
        .await
        .expect("the owner connects to its database");
    owner
        .batch_execute(
            "CREATE TABLE t (id serial primary key, v text); INSERT INTO t (v) VALUES ('a')",
        )
        .await
        .expect("the owner creates tables in its database");

    let su = connect(rw, &cluster.password()).await.expect("superuser");
    let flags = su
        .query(
            "SELECT rolname::text, rolcanlogin, rolsuper OR rolcreatedb OR rolcreaterole \
             OR rolreplication OR rolbypassrls FROM pg_roles \
             WHERE rolname IN ('app', 'other', 'reporting', 'writer') ORDER BY 1",
            &[],
        )
        .await
        .expect("roles");
    assert_eq!(flags.len(), 4);
    for r in &flags {
        let name: String = r.get(0);
        assert!(r.get::<_, bool>(1), "{name} can log in");
        assert!(!r.get::<_, bool>(2), "{name} holds no elevated attribute");
    }

    let reader_only = [
        "table t SELECT",
        "schema public USAGE",
        "database app CONNECT",
    ];
    let writer_only = [
        "table t SELECT",
        "table t INSERT",
        "table t UPDATE",
        "table t DELETE",
        "sequence t_id_seq USAGE",
        "schema public USAGE",
        "database app CONNECT",
    ];
    let reporting = connect_as(rw, "reporting", &pw("reporting"), "app")
        .await
        .expect("reporting connects to app");
    assert_eq!(privileges(&reporting, "reporting").await, reader_only);
    let n: i64 = reporting
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("reporting reads")
        .get(0);
    assert_eq!(n, 1);
    let denied = reporting
        .batch_execute("INSERT INTO t (v) VALUES ('r')")
        .await
        .expect_err("reporting may not write");
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    let writer = connect_as(rw, "writer", &pw("writer"), "app")
        .await
        .expect("writer connects to app");
    assert_eq!(privileges(&writer, "writer").await, writer_only);
    writer
        .batch_execute("INSERT INTO t (v) VALUES ('w'); UPDATE t SET v = 'x' WHERE v = 'w'")
        .await
        .expect("writer writes, using the sequence");
    let denied = writer
        .batch_execute("CREATE TABLE mine (x int)")
        .await
        .expect_err("writer may not create tables");
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    for role in ["reporting", "writer", "app"] {
        let err = connect_as(rw, role, &pw(role), "other")
            .await
            .err()
            .unwrap_or_else(|| panic!("{role} may not connect to database other"));
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{role} on other: {err}"
        );
    }
    connect_as(rw, "other", &pw("other"), "other")
        .await
        .expect("the owner of other connects to it");
    drop((owner, su, reporting, writer));

    // The plan runs again on the existing objects: nothing changes.
    assert!(cluster.run(&["down"]).status.success());
    cluster.up();
    cluster.wait_ready(1, Duration::from_secs(30));
    let reporting = connect_as(rw, "reporting", &pw("reporting"), "app")
        .await
        .expect("reporting connects after down + up");
    assert_eq!(privileges(&reporting, "reporting").await, reader_only);
    let writer = connect_as(rw, "writer", &pw("writer"), "app")
        .await
        .expect("writer connects after down + up");
    assert_eq!(privileges(&writer, "writer").await, writer_only);
}
