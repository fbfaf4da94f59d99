//! Databases and roles on the primary through the controller: the pure
//! plan lives in [`pgcluster_core::postgres::sql`] (shared with local mode)
//! and is re-exported here; this module holds the I/O behind the small
//! [`DatabaseAdmin`] trait ([`PostgresAdmin`] with tokio-postgres; tests use
//! a fake).
//!
//! The sessions themselves are pgcluster-ha's
//! ([`pgcluster_ha::postgres::admin`], run against real servers in its
//! tests and by local mode); the end-to-end tests run this path on the
//! real node. The rendered `pg_hba.conf` must admit the superuser from the
//! controller's namespace for [`PostgresAdmin`] to connect over TCP.

use futures::future::BoxFuture;
pub use pgcluster_core::postgres::sql::{
    Inventory, MANAGED_COMMENT, Statement, plan, quote_ident, quote_literal,
};
pub use pgcluster_ha::postgres::admin::{AdminError, AdminTarget, password_changes};

/// The I/O side: read the inventory, run statements. Object-safe so the
/// controller holds any implementation behind `Arc<dyn DatabaseAdmin>`.
pub trait DatabaseAdmin: Send + Sync {
    /// What exists on the server at `target`.
    fn inventory<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Inventory, AdminError>>;
    /// Runs `statements` in order, each in its database.
    fn execute<'a>(
        &'a self,
        target: &'a AdminTarget,
        statements: &'a [Statement],
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// The SCRAM-SHA-256 verifier of `password` (random salt).
    fn verifier(&self, password: &str) -> String {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    }
}

/// The digest of everything the SQL is planned from: the declared roles and
/// databases, the credentials, and which primary (name and lease term) it
/// ran on. Equal digests: nothing to run (a new primary runs it once more).
/// The passwords go into it with the rest, never on their own.
pub fn digest(
    cluster: &pgcluster_core::ValidatedCluster,
    passwords: &std::collections::BTreeMap<String, String>,
    primary: &str,
    term: u64,
) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(format!(
        "{:?}\n{:?}\n",
        cluster.roles(),
        cluster.databases()
    ));
    for (role, password) in passwords {
        hash.update(format!("{role}\0{password}\0"));
    }
    hash.update(format!("{primary}\0{term}"));
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// [`DatabaseAdmin`] over tokio-postgres: pgcluster-ha's
/// [`AdminTarget`], the implementation local mode uses too.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresAdmin;

impl DatabaseAdmin for PostgresAdmin {
    fn inventory<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Inventory, AdminError>> {
        Box::pin(target.inventory())
    }

    fn execute<'a>(
        &'a self,
        target: &'a AdminTarget,
        statements: &'a [Statement],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(target.execute(statements))
    }
}
