//! What the HA tests on the node assert about a running cluster, in
//! PostgreSQL itself: who is in recovery, which rows arrived, whether writes
//! flow.

use std::collections::BTreeSet;
use std::time::Duration;

use super::running::{Running, members};
use crate::e2e_support::sql::{self, Target, Writer};
use crate::e2e_support::{TestCluster, wait_for};

/// The application role (and database) of the homelab spec the tests use.
pub const APP: &str = "gitea";

/// Runs SQL on one instance pod (by IP) until it answers, bounded.
pub async fn on_pod(target: &Target, sql: &str) -> String {
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
pub async fn assert_roles_in_postgres(c: &TestCluster, r: &Running, app: &Target, primary: &str) {
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
pub async fn create_table(target: &Target, table: &str) {
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
pub async fn ids(target: &Target, table: &str) -> BTreeSet<i64> {
    sql::query(target, &format!("SELECT id FROM {table}"))
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e}"))
        .into_iter()
        .filter_map(|row| row.first().cloned().flatten()?.parse().ok())
        .collect()
}

/// Waits until `writer` acknowledged `more` commits beyond `from`.
pub async fn writes_flow(writer: &Writer, from: u64, more: u64, what: &str) {
    wait_for(what, Duration::from_secs(90), || async {
        (writer.acked() >= from + more).then_some(())
    })
    .await;
}
