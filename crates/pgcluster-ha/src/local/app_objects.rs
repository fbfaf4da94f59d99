//! The spec's application roles, databases and grants, applied through the
//! rw endpoint once the cluster is ready with the plan shared with the
//! Kubernetes controller.

use std::collections::BTreeMap;

use pgcluster_core::ValidatedCluster;
use pgcluster_core::postgres::sql;

use super::error::LocalError;
use super::prepare::Prepared;
use crate::postgres::admin::{AdminTarget, password_changes};

/// The superuser's sessions through the rw port 127.0.0.1:`port`.
pub fn rw_target(port: u16, user: &str, password: &str) -> AdminTarget {
    AdminTarget {
        host: "127.0.0.1".to_owned(),
        port,
        user: user.to_owned(),
        password: password.to_owned(),
        application: "pgcluster",
    }
}

/// A superuser-style session through the rw port 127.0.0.1:`port`.
pub async fn connect(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, crate::postgres::admin::AdminError> {
    rw_target(port, user, password).connect(dbname).await
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
    let target = rw_target(
        prepared.record.rw_port,
        &prepared.record.superuser,
        &prepared.superuser_password,
    );
    let mut passwords = BTreeMap::new();
    for role in cluster.roles() {
        let password = prepared
            .layout
            .ensure_password(&prepared.layout.role_password_file(&role.name))?;
        passwords.insert(role.name.clone(), password);
    }
    // The router closes an rw session whose primary stopped being the
    // target (seen once in CI right after start, under load): the plan is
    // idempotent, so a lost session runs it again, a bounded number of times.
    let mut attempt = 1;
    loop {
        let result = async {
            let inventory = target.inventory().await?;
            // Only the passwords that do not verify yet (a new salt each time otherwise).
            let verifiers = password_changes(&passwords, &inventory, |p| {
                postgres_protocol::password::scram_sha_256(p.as_bytes())
            });
            target
                .execute(&sql::plan(cluster, &inventory, &verifiers))
                .await
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(error) if attempt < APPLY_ATTEMPTS && error.session_lost() => {
                tracing::warn!(%error, attempt, "the rw session was lost; running the plan again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(error) => return Err(LocalError::admin(error)),
        }
    }
}

/// How many times the plan is run when the rw session is lost.
const APPLY_ATTEMPTS: u32 = 3;
