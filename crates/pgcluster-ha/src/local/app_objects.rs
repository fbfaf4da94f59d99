//! The spec's application roles and databases, created through the rw
//! endpoint once the cluster is ready.

use std::time::Duration;

use pgcluster_core::ValidatedCluster;

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

/// Creates the spec's roles (with their generated passwords) and databases
/// on the primary through the rw port; idempotent.
pub async fn create_app_objects(
    prepared: &Prepared,
    cluster: &ValidatedCluster,
) -> Result<(), LocalError> {
    let port = prepared.record.rw_port;
    let sql_err = |what: String| move |source| LocalError::Sql { what, port, source };
    let client = connect(
        port,
        &prepared.record.superuser,
        &prepared.superuser_password,
        "postgres",
    )
    .await
    .map_err(sql_err("connect as the superuser".to_owned()))?;
    let mut roles: Vec<String> = cluster.roles.iter().map(|r| r.name.clone()).collect();
    for db in &cluster.databases {
        if !roles.contains(&db.owner) {
            roles.push(db.owner.clone());
        }
    }
    for role in &roles {
        let password = prepared
            .layout
            .ensure_password(&prepared.layout.role_password_file(role))?;
        let sql = format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN \
             CREATE ROLE {ident} LOGIN PASSWORD {pw}; END IF; END$$",
            lit = literal(role),
            ident = ident(role),
            pw = literal(&password),
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(sql_err(format!("create role {role}")))?;
    }
    for db in &cluster.databases {
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db.name])
            .await
            .map_err(sql_err(format!("look up database {}", db.name)))?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!(
                    "CREATE DATABASE {} OWNER {}",
                    ident(&db.name),
                    ident(&db.owner)
                ))
                .await
                .map_err(sql_err(format!("create database {}", db.name)))?;
        }
    }
    Ok(())
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
