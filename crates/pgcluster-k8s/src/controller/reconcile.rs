//! The reconcile pipeline of one `PostgresCluster`:
//!
//! ```text
//! finalizer? --> dereference --> validate --> build --> apply (+ SQL) --> status
//!   (API)          (API)          (pure)      (pure)      (API, PG)       (API)
//! ```
//!
//! Only dereference, apply and status touch the API. Errors carry their step
//! (see [`Error`]); `error_policy` alone decides how to retry.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use pgcluster_core::api::v1alpha1::{PostgresCluster, RetentionPolicy};
use pgcluster_core::names::SUPERUSER_ROLE;
use pgcluster_core::{Platform, ValidatedCluster, validate_on};
use tracing::{info, instrument, warn};

use super::apply;
use super::dereference::{Dereferenced, dereference};
use super::error::Error;
use super::passwords;
use super::sql::{self, AdminError, AdminTarget};
use super::status::{self, Outcome};
use super::{Context, FINALIZER};
use crate::build::{BuildOptions, POSTGRES_PORT, build};

/// Resync period of a settled cluster.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Requeue period while a cluster is still converging (no watch covers the Lease).
pub const CONVERGING: Duration = Duration::from_secs(15);

/// Reconciles one object: runs the pipeline, counts and times it, and turns
/// a failure into a Warning Event on the object.
#[instrument(skip_all, fields(cluster = %obj.name_any(), namespace = obj.namespace().unwrap_or_default()))]
pub async fn reconcile(obj: Arc<PostgresCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start();
    let result = pipeline(&obj, &ctx).await;
    match &result {
        Ok(_) => ctx.succeeded(&obj),
        Err(error) => {
            ctx.metrics.failed(error.category());
            warn!(category = error.category(), error = %chain(error), "reconcile failed");
            ctx.event(&obj, EventType::Warning, &error.reason(), chain(error))
                .await;
        }
    }
    result
}

/// An error and its sources, `: `-separated (the messages never repeat their source).
pub use pgcluster_core::error_chain as chain;

fn has_finalizer(obj: &PostgresCluster) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

async fn set_finalizers(
    ctx: &Context,
    obj: &PostgresCluster,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<PostgresCluster> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": obj.resource_version() }
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| Error::Finalizer {
        cluster: obj.name_any(),
        source,
    })
}

/// The cluster's `spec.storage.retention` (default `Retain`).
fn retention(obj: &PostgresCluster) -> RetentionPolicy {
    obj.spec
        .storage
        .as_ref()
        .and_then(|s| s.retention)
        .unwrap_or_default()
}

/// Deletion with `retention: Delete`: the Lease goes (a Lease naming the old
/// data's system identifier would refuse a new cluster of the same name),
/// then the object is released. The volumes go with the StatefulSet (its
/// `persistentVolumeClaimRetentionPolicy` says Delete, so the StatefulSet
/// controller owns them), everything else with the owner references.
/// Deleting the volumes here while the pods still ran would have the
/// StatefulSet controller create them again. With `Retain` there is no
/// finalizer: volumes and Lease stay for a re-created cluster, whose agents
/// reset the superuser's password from the new Secret and whose controller
/// resets the roles'.
async fn cleanup(ctx: &Context, obj: &PostgresCluster, namespace: &str) -> Result<(), Error> {
    let name = obj.name_any();
    // An invalid name never ran agents: no Lease of it exists.
    if retention(obj) == RetentionPolicy::Delete
        && let Ok(cluster) = pgcluster_core::names::ClusterName::new(&name)
    {
        let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), namespace);
        let lease = cluster.leader_lease();
        match leases.delete(&lease, &DeleteParams::background()).await {
            Ok(_) => info!(lease, "deleted the leader Lease (retention Delete)"),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(source) => {
                return Err(Error::Finalizer {
                    cluster: name,
                    source,
                });
            }
        }
    }
    release(ctx, obj).await
}

/// Removes the finalizer from `obj`.
async fn release(ctx: &Context, obj: &PostgresCluster) -> Result<(), Error> {
    let rest = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, obj, rest).await
}

async fn pipeline(obj: &PostgresCluster, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    if obj.meta().deletion_timestamp.is_some() {
        if has_finalizer(obj) {
            cleanup(ctx, obj, &namespace).await?;
        }
        return Ok(Action::await_change());
    }
    // The finalizer only while deletion has work to do.
    match (retention(obj), has_finalizer(obj)) {
        (RetentionPolicy::Delete, false) => {
            let mut finalizers = obj.finalizers().to_vec();
            finalizers.push(FINALIZER.to_owned());
            set_finalizers(ctx, obj, finalizers).await?;
        }
        (RetentionPolicy::Retain, true) => release(ctx, obj).await?,
        _ => {}
    }

    // 1. dereference
    let current = dereference(&ctx.client, &namespace, &name).await?;

    // 2. validate
    let validated = match validate_on(obj, Platform::Kubernetes) {
        Ok(v) => v,
        Err(errors) => {
            let status = status::compute(
                obj,
                &Outcome::Invalid(&errors),
                &current.pods,
                current.lease.as_ref(),
                (ctx.clock)(),
            );
            write_status(ctx, obj, &status).await?;
            return Err(Error::Validate {
                cluster: name,
                source: errors,
            });
        }
    };

    // 3. build (passwords: reused or generated once, then inputs of the builders)
    let (passwords, existing) =
        passwords::passwords(&validated, &current.existing_passwords, passwords::generate);
    let owner = obj
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    let bundle = build(
        &validated,
        &BuildOptions {
            owner: Some(owner),
            passwords: passwords.clone(),
            controller_namespace: ctx.controller_namespace.clone(),
        },
    )
    .map_err(|source| Error::Build {
        cluster: name.clone(),
        source,
    })?;

    // 4. apply (objects, then databases and roles on the primary)
    let uid = obj.uid().unwrap_or_default();
    let applied = apply::apply(
        &ctx.client,
        &namespace,
        &name,
        &uid,
        &bundle,
        &existing,
        &ctx.applied,
    )
    .await?;
    let created: Vec<&str> = applied
        .applied
        .iter()
        .filter(|(kind, _)| *kind == "Secret")
        .map(|(_, n)| n.as_str())
        .collect();
    if !created.is_empty() {
        // Names only: values are never logged nor put in Events.
        ctx.event(
            obj,
            EventType::Normal,
            "SecretsCreated",
            format!("generated credentials in {}", created.join(", ")),
        )
        .await;
    }
    let applied_sql = obj.status.as_ref().and_then(|s| s.sql_applied.as_deref());
    let sql = databases(ctx, &validated, &current, &passwords, applied_sql).await;

    // 5. status
    let warnings = validated.warnings();
    let mut status = status::compute(
        obj,
        &Outcome::Applied {
            applied: &applied,
            instances: validated.instances(),
            warnings: &warnings,
            sql: match &sql {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("no ready primary yet".to_owned()),
                Err(e) => Err(chain(e)),
            },
        },
        &current.pods,
        current.lease.as_ref(),
        (ctx.clock)(),
    );
    if let Ok(Some(digest)) = &sql {
        status.sql_applied = Some(digest.clone());
    }
    write_status(ctx, obj, &status).await?;
    if !applied.failed.is_empty() {
        return Err(Error::ApplyRefused {
            cluster: name,
            failed: applied.failed.clone(),
        });
    }
    let previous = obj.status.as_ref().and_then(|s| s.last_failover.as_ref());
    if let Some(record) = status
        .last_failover
        .as_ref()
        .filter(|r| Some(*r) != previous)
    {
        ctx.event(
            obj,
            EventType::Normal,
            if record.kind == "switchover" {
                "Switchover"
            } else {
                "Failover"
            },
            format!(
                "primary moved from {} to {}: {}",
                record.from.as_deref().unwrap_or("none"),
                record.to,
                record.reason
            ),
        )
        .await;
    }
    settle(
        &status,
        sql.map_err(|source| Error::Sql {
            cluster: name,
            source,
        }),
    )
}

/// Writes `status` unless it says nothing new ([`status::must_write`]):
/// at rest the controller writes nothing.
async fn write_status(
    ctx: &Context,
    obj: &PostgresCluster,
    status: &pgcluster_core::api::v1alpha1::PostgresClusterStatus,
) -> Result<(), Error> {
    let since = ctx.since_status_write(obj);
    if !status::must_write(obj.status.as_ref(), status, since) {
        return Ok(());
    }
    status::write(&ctx.client, obj, status).await?;
    ctx.status_written(obj);
    Ok(())
}

fn settle(
    status: &pgcluster_core::api::v1alpha1::PostgresClusterStatus,
    sql: Result<Option<String>, Error>,
) -> Result<Action, Error> {
    sql?;
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Ok(Action::requeue(if ready { RESYNC } else { CONVERGING }))
}

/// Databases and roles on the primary, when their inputs changed since
/// `applied` (the status's digest): the digest now, or `Ok(None)` when no
/// primary is ready yet.
async fn databases(
    ctx: &Context,
    cluster: &ValidatedCluster,
    current: &Dereferenced,
    passwords: &std::collections::BTreeMap<String, String>,
    applied: Option<&str>,
) -> Result<Option<String>, AdminError> {
    let holder = current
        .lease
        .as_ref()
        .and_then(|l| l.record.holder.as_ref())
        .map(|h| h.as_str().to_owned());
    let instances = status::instances(&current.pods, current.lease.as_ref());
    let Some(primary) = holder.filter(|h| instances.iter().any(|i| &i.name == h && i.ready)) else {
        return Ok(None);
    };
    let term = current.lease.as_ref().map_or(0, |l| l.record.term);
    let digest = sql::digest(cluster, passwords, &primary, term);
    if applied == Some(digest.as_str()) {
        return Ok(Some(digest));
    }
    if cluster.roles().is_empty() && cluster.databases().is_empty() {
        return Ok(Some(digest));
    }
    let target = AdminTarget {
        host: format!(
            "{primary}.{}.{}.svc",
            cluster.name().headless_service(),
            cluster.namespace()
        ),
        port: u16::try_from(POSTGRES_PORT).expect("5432 fits in u16 because it is a TCP port"),
        user: SUPERUSER_ROLE.to_owned(),
        password: passwords
            .get(SUPERUSER_ROLE)
            .cloned()
            .expect("passwords() returns the superuser's because secret_names() lists it first"),
        application: "pgcluster-controller",
    };
    let inventory = ctx.admin.inventory(&target).await?;
    let declared = cluster
        .roles()
        .iter()
        .filter_map(|r| Some((r.name.clone(), passwords.get(&r.name)?.clone())))
        .collect();
    let verifiers = sql::password_changes(&declared, &inventory, |p| ctx.admin.verifier(p));
    let statements = sql::plan(cluster, &inventory, &verifiers);
    ctx.metrics.sql_runs.inc();
    ctx.admin.execute(&target, &statements).await?;
    Ok(Some(digest))
}
