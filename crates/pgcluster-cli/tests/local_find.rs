//! Which local cluster a command means without --name or --data-dir, with
//! real PostgreSQL through the binary: the one that runs; never a guess
//! between several; and a stopped cluster is shown as stopped, never with
//! the agents of another cluster that now uses its ports as its own.

mod local_support;

use std::time::Duration;

use local_support::{TestCluster, fast_spec};
use serde_json::Value;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Two clusters running: plain `status` refuses and lists both, `--name`
/// picks one; after `down --name` of one, plain `status`, `switchover` and
/// `psql` act on the other, and the stopped one shows as stopped, also
/// once a third cluster runs on its ports.
#[test]
fn commands_find_the_running_cluster_and_never_guess() {
    let xdg = tempfile::Builder::new()
        .prefix("pgcluster-xdg-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let alpha =
        TestCluster::in_default_dir(&fast_spec("alpha", "async", ""), "alpha", xdg.path(), true);

    let none = alpha.run_found(&["status"]);
    assert!(!none.status.success());
    assert!(
        text(&none).contains("no local cluster is running"),
        "{}",
        text(&none)
    );

    alpha.up();
    // Created once alpha listens, so their port ranges cannot overlap.
    let beta =
        TestCluster::in_default_dir(&fast_spec("beta", "async", ""), "beta", xdg.path(), false);
    beta.up();
    alpha.wait_ready(1, Duration::from_secs(40));
    beta.wait_ready(1, Duration::from_secs(40));

    let both = alpha.run_found(&["status"]);
    assert_eq!(both.status.code(), Some(1), "{}", text(&both));
    let msg = text(&both);
    assert!(
        msg.contains("2 local clusters are running") && msg.contains("--name"),
        "{msg}"
    );
    for c in [&alpha, &beta] {
        assert!(msg.contains(&c.data().display().to_string()), "{msg}");
    }
    let switch = alpha.run_found(&["switchover"]);
    assert_eq!(
        switch.status.code(),
        Some(1),
        "switchover never guesses: {}",
        text(&switch)
    );

    let named = json(&alpha.run_found(&["status", "--name", "beta", "-o", "json"]));
    assert_eq!(named["name"], "beta");
    assert_eq!(named["state"], "running");
    assert_eq!(named["rw_port"], beta.rw());

    let down = alpha.run_found(&["down", "--name", "alpha"]);
    assert!(down.status.success(), "{}", text(&down));

    let found = json(&alpha.run_found(&["status", "-o", "json"]));
    assert_eq!(found["name"], "beta", "the running one: {found:#}");
    assert_eq!(found["state"], "running");

    let stopped = json(&alpha.run_found(&["status", "--name", "alpha", "-o", "json"]));
    assert_eq!(stopped["state"], "stopped", "{stopped:#}");
    for i in stopped["instances"].as_array().expect("instances") {
        assert_eq!(
            i["ready"], false,
            "a stopped cluster is not healthy: {stopped:#}"
        );
        assert_eq!(i["agent_pid"], Value::Null, "{stopped:#}");
    }
    let stopped_text = text(&alpha.run_found(&["status", "--name", "alpha"]));
    assert!(
        stopped_text.contains("cluster alpha (stopped)"),
        "{stopped_text}"
    );
    let refused = alpha.run_found(&["switchover", "--name", "alpha"]);
    assert!(
        !refused.status.success() && text(&refused).contains("stopped"),
        "a switchover on a stopped cluster is refused at once: {}",
        text(&refused)
    );

    let switched = alpha.run_found(&["switchover"]);
    assert!(switched.status.success(), "{}", text(&switched));
    beta.wait_ready(1, Duration::from_secs(30));

    let psql = alpha.run_found(&["psql", "-At", "-c", "select current_setting('port')"]);
    assert!(psql.status.success(), "{}", text(&psql));
    let port: u64 = String::from_utf8_lossy(&psql.stdout)
        .trim()
        .parse()
        .expect("a port");
    let primary = json(&beta.run(&["status", "-o", "json"]))["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["role"] == "primary")
        .and_then(|i| i["pg_port"].as_u64());
    assert_eq!(Some(port), primary, "psql reached beta's primary");

    // The case: a stopped cluster whose ports another cluster now
    // uses. Its status must not show the other's agents as its own.
    let mut gamma =
        TestCluster::in_default_dir(&fast_spec("gamma", "async", ""), "gamma", xdg.path(), false);
    gamma.base = alpha.base;
    gamma.up();
    gamma.wait_ready(1, Duration::from_secs(40));
    let stopped = json(&alpha.run_found(&["status", "--name", "alpha", "-o", "json"]));
    assert_eq!(stopped["state"], "stopped", "{stopped:#}");
    for i in stopped["instances"].as_array().expect("instances") {
        assert_eq!(i["ready"], false, "not gamma's answers: {stopped:#}");
        assert_eq!(i["role"], "down", "{stopped:#}");
    }

    drop(gamma);
    drop(beta);
    let none = alpha.run_found(&["status"]);
    let msg = text(&none);
    assert!(
        !none.status.success()
            && msg.contains("no local cluster is running")
            && msg.contains("alpha")
            && msg.contains("beta"),
        "{msg}"
    );
    let down = alpha.run_found(&["down"]);
    assert!(
        down.status.success(),
        "down with nothing running: {}",
        text(&down)
    );
    drop(alpha);
    drop(xdg);
}
