//! The spec's application roles, databases and grants on a running primary:
//! the inventory read and the plan ([`pgcluster_core::postgres::sql::plan`])
//! run through tokio-postgres as the superuser. One implementation for local
//! mode (through the rw port) and the Kubernetes controller (through the
//! primary's pod DNS name).

use std::fmt;
use std::time::Duration;

use pgcluster_core::postgres::sql::{Inventory, MANAGED_COMMENT, Statement};

/// A failed administration call.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Connecting failed.
    #[error("failed to connect to {host}:{port} database {database} as {user}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Role.
        user: String,
        /// Database.
        database: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A query or statement failed (the statement is shown redacted).
    #[error("failed to run {statement} on {host}:{port}")]
    Execute {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The statement (redacted).
        statement: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl AdminError {
    /// Whether the session was refused or dropped (a server restarting, a
    /// proxy closing it) rather than a statement failing on a live one.
    pub fn session_lost(&self) -> bool {
        match self {
            AdminError::Connect { .. } => true,
            AdminError::Execute { source, .. } => source.is_closed(),
        }
    }
}

/// The password verifiers the plan must set: one for each role in
/// `passwords` whose stored verifier (`inventory`) does not already verify
/// its password; `make` computes a new one (a random salt).
pub fn password_changes(
    passwords: &std::collections::BTreeMap<String, String>,
    inventory: &Inventory,
    make: impl Fn(&str) -> String,
) -> std::collections::BTreeMap<String, String> {
    passwords
        .iter()
        .filter(|(role, password)| {
            !inventory
                .verifiers
                .get(*role)
                .is_some_and(|stored| super::scram::verifies(password, stored))
        })
        .map(|(role, password)| (role.clone(), make(password)))
        .collect()
}

/// Settings of every administration session. A statement or lock that
/// hangs ends the session instead of the caller (a reconcile, `up`); role
/// and database DDL commits without waiting for a synchronous standby, so a
/// sync-mode primary whose standby is down (`whenNoStandby: block`) still
/// gets its roles: the change is only as durable as the primary's disk,
/// and the caller applies it again on a new primary.
pub const SESSION_OPTIONS: &str =
    "-c statement_timeout=15s -c lock_timeout=5s -c synchronous_commit=local";

/// Where and as whom to connect.
#[derive(Clone)]
pub struct AdminTarget {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Superuser name.
    pub user: String,
    /// Superuser password.
    pub password: String,
    /// `application_name` of the sessions (who is connected, in `pg_stat_activity`).
    pub application: &'static str,
}

impl fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("application", &self.application)
            .finish_non_exhaustive()
    }
}

impl AdminTarget {
    /// A session on `database` (no TLS yet; scram-sha-256 authentication).
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, AdminError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(database)
            .application_name(self.application)
            .connect_timeout(Duration::from_secs(5))
            .options(SESSION_OPTIONS);
        let (client, connection) =
            config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|source| AdminError::Connect {
                    host: self.host.clone(),
                    port: self.port,
                    user: self.user.clone(),
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

    fn execute_error(&self, statement: String) -> impl FnOnce(tokio_postgres::Error) -> AdminError {
        let (host, port) = (self.host.clone(), self.port);
        move |source| AdminError::Execute {
            host,
            port,
            statement,
            source,
        }
    }

    /// The roles (all, and those pgcluster manages) and databases on the server.
    pub async fn inventory(&self) -> Result<Inventory, AdminError> {
        let client = self.connect("postgres").await?;
        let names =
            |sql: &'static str,
             params: &'static [&'static (dyn tokio_postgres::types::ToSql + Sync)]| {
                let client = &client;
                async move {
                    client
                        .query(sql, params)
                        .await
                        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                        .map_err(self.execute_error(sql.to_owned()))
                }
            };
        Ok(Inventory {
            roles: names("SELECT rolname::text FROM pg_roles", &[]).await?,
            managed_roles: names(
                "SELECT r.rolname::text FROM pg_roles r JOIN pg_shdescription d \
                 ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass \
                 WHERE d.description = $1",
                &[&MANAGED_COMMENT],
            )
            .await?,
            databases: names(
                "SELECT datname::text FROM pg_database WHERE NOT datistemplate",
                &[],
            )
            .await?,
            verifiers: {
                let sql = "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL";
                client
                    .query(sql, &[])
                    .await
                    .map_err(self.execute_error(sql.to_owned()))?
                    .iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                    .collect()
            },
        })
    }

    /// Runs `statements` in order, each in its database (one session per
    /// run of statements on the same database).
    pub async fn execute(&self, statements: &[Statement]) -> Result<(), AdminError> {
        let mut current: Option<(&str, tokio_postgres::Client)> = None;
        for statement in statements {
            let db = statement.database.as_deref().unwrap_or("postgres");
            let client = match current.take() {
                Some((name, client)) if name == db => (name, client),
                _ => (db, self.connect(db).await?),
            };
            client
                .1
                .batch_execute(&statement.sql)
                .await
                .map_err(self.execute_error(statement.to_string()))?;
            current = Some(client);
        }
        Ok(())
    }
}
