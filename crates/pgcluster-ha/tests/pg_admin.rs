//! The spec's roles, databases and grants applied to a real PostgreSQL 15
//! server by the code local mode and the Kubernetes controller both run
//! (`postgres::admin` with the plan of `pgcluster_core::postgres::sql`):
//! created once, then only altered, with the same result and no loss.

use std::collections::BTreeMap;

use pgcluster_core::postgres::sql;
use pgcluster_ha::postgres::admin::AdminTarget;
use pgcluster_ha::testing::{TEST_PASSWORD, TestServer};

const SPEC: &str = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: pg, namespace: default}
spec:
  instances: 1
  databases:
    - {name: app, owner: app}
  roles:
    - name: app
    - name: reporting
      grants:
        - {database: app, privileges: readOnly}
";

/// Connects as `user` to `database` over TCP.
async fn session(
    target: &AdminTarget,
    user: &str,
    password: &str,
    database: &str,
) -> Result<tokio_postgres::Client, String> {
    let as_user = AdminTarget {
        user: user.to_owned(),
        password: password.to_owned(),
        ..target.clone()
    };
    as_user
        .connect(database)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Runs the plan for `cluster` once; returns its statements as shown.
async fn apply(
    target: &AdminTarget,
    cluster: &pgcluster_core::ValidatedCluster,
    passwords: &BTreeMap<String, String>,
) -> Vec<String> {
    let inventory = target.inventory().await.expect("inventory");
    let verifiers = pgcluster_ha::postgres::admin::password_changes(passwords, &inventory, |pw| {
        postgres_protocol::password::scram_sha_256(pw.as_bytes())
    });
    let plan = sql::plan(cluster, &inventory, &verifiers);
    target.execute(&plan).await.expect("the plan runs");
    plan.iter().map(|s| s.to_string()).collect()
}

/// What the plan's effects look like from the catalog.
async fn catalog(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT format('%s owner=%s', datname, pg_get_userbyid(datdba)) FROM pg_database \
               WHERE NOT datistemplate \
             UNION ALL SELECT format('%s login=%s limit=%s', rolname, rolcanlogin, rolconnlimit) \
               FROM pg_roles WHERE rolname IN ('app', 'reporting') \
             UNION ALL SELECT format('%s connect app=%s', r, has_database_privilege(r, 'app', 'CONNECT')) \
               FROM unnest(ARRAY['app', 'reporting']) r \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog query")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// First run creates; the second only alters, leaves the catalog as it was
/// and keeps the data and the passwords working.
#[tokio::test]
async fn the_plan_creates_once_then_only_alters() {
    let server = TestServer::primary("admin").await;
    let target = AdminTarget {
        host: "127.0.0.1".to_owned(),
        port: server.instance.port,
        user: "postgres".to_owned(),
        password: TEST_PASSWORD.to_owned(),
        application: "pgcluster-test",
    };
    let cluster = pgcluster_core::load::load_one(SPEC)
        .expect("the spec loads")
        .validate()
        .expect("the spec is valid");
    let passwords = BTreeMap::from([
        ("app".to_owned(), "app-secret-1".to_owned()),
        ("reporting".to_owned(), "reporting-secret-1".to_owned()),
    ]);

    let first = apply(&target, &cluster, &passwords).await;
    assert!(
        first.iter().any(|s| s.contains("CREATE ROLE \"app\""))
            && first.iter().any(|s| s.contains("CREATE DATABASE \"app\"")),
        "a fresh server gets the roles and the database created: {first:#?}"
    );
    let app = session(&target, "app", "app-secret-1", "app")
        .await
        .expect("the app role logs in with its password");
    app.batch_execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)")
        .await
        .expect("the owner creates and fills a table");
    let reporting = session(&target, "reporting", "reporting-secret-1", "app")
        .await
        .expect("the reader logs in");
    assert_eq!(
        reporting
            .query_one("SELECT count(*) FROM kept", &[])
            .await
            .expect("the reader reads a table created later (default privileges)")
            .get::<_, i64>(0),
        2
    );
    assert!(
        reporting
            .batch_execute("INSERT INTO kept VALUES (3)")
            .await
            .is_err(),
        "the reader may not write"
    );
    let admin = target.connect("postgres").await.expect("superuser session");
    let before = catalog(&admin).await;

    let second = apply(&target, &cluster, &passwords).await;
    let created: Vec<&String> = second
        .iter()
        .filter(|s| s.contains("CREATE ROLE") || s.contains("CREATE DATABASE"))
        .collect();
    assert!(
        created.is_empty(),
        "the second run created again: {created:#?}"
    );
    assert_eq!(
        catalog(&admin).await,
        before,
        "the second run changed the catalog"
    );
    assert!(
        second.iter().all(|s| !s.contains("PASSWORD")),
        "a password that already verifies was set again: {second:#?}"
    );
    let third = apply(&target, &cluster, &passwords).await;
    assert_eq!(
        third.len(),
        second.len(),
        "an unchanged server gets the same plan each time"
    );
    let rotated = BTreeMap::from([
        ("app".to_owned(), "app-secret-2".to_owned()),
        ("reporting".to_owned(), "reporting-secret-1".to_owned()),
    ]);
    let fourth = apply(&target, &cluster, &rotated).await;
    let set: Vec<&String> = fourth.iter().filter(|s| s.contains("PASSWORD")).collect();
    assert!(
        set.len() == 1 && set[0].contains("ROLE \"app\""),
        "only the changed password is set: {set:#?}"
    );
    session(&target, "app", "app-secret-2", "app")
        .await
        .expect("the new password works");
    apply(&target, &cluster, &passwords).await;
    let app = session(&target, "app", "app-secret-1", "app")
        .await
        .expect("the password still works after the re-runs");
    assert_eq!(
        app.query_one("SELECT count(*) FROM kept", &[])
            .await
            .expect("the table is still there")
            .get::<_, i64>(0),
        2
    );
}
