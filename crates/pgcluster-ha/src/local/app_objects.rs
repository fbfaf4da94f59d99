//! The spec's application roles, databases and grants, applied through the
//! rw endpoint once the cluster is ready with the plan shared with the
//! Kubernetes controller.

use std::collections::BTreeMap;
use std::time::Duration;

use pgcluster_core::ValidatedCluster;
use pgcluster_core::postgres::sql::{self, Inventory};

use super::error::LocalError;
use super::prepare::Prepared;

/// Connects as the superuser to 127.0.0.1:`port`.
pub async fn connect(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(3));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Brings the spec's roles and databases to the spec on the primary
/// through the rw port, with the same plan as the Kubernetes controller
/// ([`pgcluster_core::postgres::sql::plan`]): roles with their generated
/// passwords (sent as SCRAM verifiers), databases with their owners, PUBLIC
/// revoked, each declared grant applied (and undeclared ones revoked).
/// Idempotent.
pub async fn create_app_objects(
    prepared: &Prepared,
    cluster: &ValidatedCluster,
) -> Result<(), LocalError> {
    let port = prepared.record.rw_port;
    let sql_err = |what: String| move |source| LocalError::Sql { what, port, source };
    let superuser = |dbname: String| async move {
        connect(
            port,
            &prepared.record.superuser,
            &prepared.superuser_password,
            &dbname,
        )
        .await
        .map_err(sql_err(format!(
            "connect to database {dbname} as the superuser"
        )))
    };
    let client = superuser("postgres".to_owned()).await?;
    let inventory = inventory(&client)
        .await
        .map_err(sql_err("read the roles and databases".to_owned()))?;
    let mut verifiers = BTreeMap::new();
    for role in &cluster.roles {
        let password = prepared
            .layout
            .ensure_password(&prepared.layout.role_password_file(&role.name))?;
        verifiers.insert(
            role.name.clone(),
            postgres_protocol::password::scram_sha_256(password.as_bytes()),
        );
    }
    let mut current = ("postgres".to_owned(), client);
    for statement in sql::plan(cluster, &inventory, &verifiers) {
        let db = statement.database.as_deref().unwrap_or("postgres");
        if current.0 != db {
            current = (db.to_owned(), superuser(db.to_owned()).await?);
        }
        current
            .1
            .batch_execute(&statement.sql)
            .await
            .map_err(sql_err(format!("run {statement}")))?;
    }
    Ok(())
}

/// The roles (all, and those pgcluster manages) and databases on the server.
async fn inventory(client: &tokio_postgres::Client) -> Result<Inventory, tokio_postgres::Error> {
    let names = |sql: &'static str| async move {
        client
            .query(sql, &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
    };
    Ok(Inventory {
        roles: names("SELECT rolname::text FROM pg_roles").await?,
        managed_roles: client
            .query(
                "SELECT r.rolname::text FROM pg_roles r JOIN pg_shdescription d \
                 ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass \
                 WHERE d.description = $1",
                &[&sql::MANAGED_COMMENT],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect(),
        databases: names("SELECT datname::text FROM pg_database WHERE NOT datistemplate").await?,
    })
}
