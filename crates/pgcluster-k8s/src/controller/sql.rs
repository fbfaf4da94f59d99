//! Databases and roles on the primary through the controller: the pure
//! plan lives in [`pgcluster_core::postgres::sql`] (shared with local mode)
//! and is re-exported here; this module holds the I/O behind the small
//! [`DatabaseAdmin`] trait ([`PostgresAdmin`] with tokio-postgres; tests use
//! a fake).
//!
//! Not tested against a real PostgreSQL here (pgcluster-ha's local mode runs
//! the same plan on real servers in its tests); [`PostgresAdmin`] is
//! exercised only by reading. Note the rendered `pg_hba.conf` must admit the
//! superuser from the controller's namespace for [`PostgresAdmin`] to
//! connect over TCP.

use std::fmt;

use futures::future::BoxFuture;
pub use pgcluster_core::postgres::sql::{
    Inventory, MANAGED_COMMENT, Statement, plan, quote_ident, quote_literal,
};

/// A failed database administration call.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Connecting failed.
    #[error("failed to connect to {host} database {database}")]
    Connect {
        /// Host.
        host: String,
        /// Database.
        database: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A query or statement failed (the statement is shown redacted).
    #[error("failed to run {statement}")]
    Execute {
        /// The statement (redacted).
        statement: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// The I/O side: read the inventory, run statements. Object-safe so the
/// controller holds any implementation behind `Arc<dyn DatabaseAdmin>`.
pub trait DatabaseAdmin: Send + Sync {
    /// What exists on the server at `target`.
    fn inventory<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Inventory, SqlError>>;
    /// Runs `statements` in order, each in its database.
    fn execute<'a>(
        &'a self,
        target: &'a AdminTarget,
        statements: &'a [Statement],
    ) -> BoxFuture<'a, Result<(), SqlError>>;
    /// The SCRAM-SHA-256 verifier of `password` (random salt).
    fn verifier(&self, password: &str) -> String {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct AdminTarget {
    /// Host (the rw Service's DNS name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Superuser name.
    pub user: String,
    /// Superuser password.
    pub password: String,
}

impl fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// [`DatabaseAdmin`] over tokio-postgres (no TLS inside the cluster network;
/// scram-sha-256 authentication).
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresAdmin;

impl PostgresAdmin {
    async fn connect(
        target: &AdminTarget,
        database: &str,
    ) -> Result<tokio_postgres::Client, SqlError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .user(&target.user)
            .password(&target.password)
            .dbname(database)
            .application_name("pgcluster-controller")
            .connect_timeout(std::time::Duration::from_secs(5));
        let (client, connection) =
            config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|source| SqlError::Connect {
                    host: target.host.clone(),
                    database: database.to_owned(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "admin connection ended");
            }
        });
        Ok(client)
    }
}

impl DatabaseAdmin for PostgresAdmin {
    fn inventory<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Inventory, SqlError>> {
        Box::pin(async move {
            let client = Self::connect(target, "postgres").await?;
            let q = |sql: &'static str| {
                let client = &client;
                async move {
                    client
                        .query(sql, &[])
                        .await
                        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                        .map_err(|source| SqlError::Execute {
                            statement: sql.to_owned(),
                            source,
                        })
                }
            };
            Ok(Inventory {
                roles: q("SELECT rolname::text FROM pg_roles").await?,
                managed_roles: q(
                    "SELECT r.rolname::text FROM pg_roles r JOIN pg_shdescription d \
                     ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass \
                     WHERE d.description = 'pgcluster: managed'",
                )
                .await?,
                databases: q("SELECT datname::text FROM pg_database WHERE NOT datistemplate")
                    .await?,
            })
        })
    }

    fn execute<'a>(
        &'a self,
        target: &'a AdminTarget,
        statements: &'a [Statement],
    ) -> BoxFuture<'a, Result<(), SqlError>> {
        Box::pin(async move {
            let mut current: Option<(String, tokio_postgres::Client)> = None;
            for statement in statements {
                let db = statement.database.as_deref().unwrap_or("postgres");
                if current.as_ref().is_none_or(|(name, _)| name != db) {
                    current = Some((db.to_owned(), Self::connect(target, db).await?));
                }
                let (_, client) = current
                    .as_ref()
                    .expect("a connection exists because it was opened just above");
                client
                    .batch_execute(&statement.sql)
                    .await
                    .map_err(|source| SqlError::Execute {
                        statement: statement.to_string(),
                        source,
                    })?;
            }
            Ok(())
        })
    }
}
