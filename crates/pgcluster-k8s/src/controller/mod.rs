//! The `PostgresCluster` controller: kube-runtime's `Controller` on
//! PostgresCluster objects and the objects they own, reconciling each object
//! independently (one broken cluster never stalls the others: errors are per
//! object and retried per object).
//!
//! ```text
//! watch PostgresCluster + owned kinds + instance pods
//!    --> reconcile (reconcile.rs: dereference -> validate -> build -> apply -> status)
//!    --> error_policy (the only place that decides retries)
//! ```
//!
//! Only one replica reconciles at a time: [`leader::LeaderElector`] holds a
//! Lease in the controller's namespace. Metrics ([`metrics::Metrics`]) and
//! health are served by [`http::serve`].
//!
//! Tested through tower-test mocks of the API server (scenarios in
//! `tests.rs`) and with a fake [`sql::DatabaseAdmin`]; `tests/e2e.rs` runs
//! [`reconcile()`] against a real kube-apiserver as the controller's
//! ServiceAccount under the shipped ClusterRole (`scripts/test-k8s`).
//! `run()` itself (the watches) has no test yet.

pub mod apply;
pub mod dereference;
pub mod error;
pub mod http;
pub mod install;
pub mod leader;
pub mod metrics;
pub mod passwords;
pub mod process;
pub mod reconcile;
pub mod sql;
pub mod status;
pub mod triggers;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use pgcluster_core::api::v1alpha1::PostgresCluster;

pub use error::{Error, Retry};
pub use metrics::Metrics;
pub use reconcile::reconcile;

use crate::build::labels::LABEL_CLUSTER;

/// The one field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "pgcluster-controller";
/// The finalizer honouring `spec.storage.retention`.
pub const FINALIZER: &str = "pgcluster.dev/retention";
/// First retry delay after a transient error; doubles per failure.
pub const BACKOFF_START: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Databases and roles on the primaries.
    pub admin: Arc<dyn sql::DatabaseAdmin>,
    /// Namespace the controller runs in (NetworkPolicy peer of the instances).
    pub controller_namespace: String,
    /// The wall clock (status timestamps); a constant in tests.
    pub clock: fn() -> jiff::Timestamp,
    /// What was applied, so unchanged objects are not applied again.
    pub applied: apply::AppliedCache,
    failures: Mutex<HashMap<ObjectRef<PostgresCluster>, u32>>,
    /// When this process last wrote each object's status.
    status_writes: Mutex<HashMap<ObjectRef<PostgresCluster>, std::time::Instant>>,
}

impl Context {
    /// A context with the real clock.
    pub fn new(
        client: Client,
        metrics: Metrics,
        admin: Arc<dyn sql::DatabaseAdmin>,
        controller_namespace: String,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            admin,
            controller_namespace,
            clock: jiff::Timestamp::now,
            applied: apply::AppliedCache::default(),
            failures: Mutex::new(HashMap::new()),
            status_writes: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event on `obj`; a failure to publish is logged, never fatal.
    pub async fn event(&self, obj: &PostgresCluster, type_: EventType, reason: &str, note: String) {
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "failed to publish an event");
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<PostgresCluster>, u32>> {
        // A panic while holding this lock leaves at worst a stale counter.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status_writes(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<PostgresCluster>, std::time::Instant>> {
        // A panic while holding this lock leaves at worst an older time.
        self.status_writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long ago this process wrote `obj`'s status (`None`: not yet).
    pub fn since_status_write(&self, obj: &PostgresCluster) -> Option<Duration> {
        self.status_writes()
            .get(&ObjectRef::from(obj))
            .map(|at| at.elapsed())
    }

    /// Records a status write of `obj` now.
    pub fn status_written(&self, obj: &PostgresCluster) {
        self.status_writes()
            .insert(ObjectRef::from(obj), std::time::Instant::now());
    }

    /// Resets the backoff of `obj`.
    pub fn succeeded(&self, obj: &PostgresCluster) {
        self.failures().remove(&ObjectRef::from(obj));
    }

    /// The next backoff delay of `obj` (5 s, 10 s, 20 s, ... up to 5 min).
    pub fn backoff(&self, obj: &PostgresCluster) -> Duration {
        let mut failures = self.failures();
        let n = failures.entry(ObjectRef::from(obj)).or_insert(0);
        let delay = BACKOFF_START.saturating_mul(1 << (*n).min(10));
        *n = n.saturating_add(1);
        delay.min(BACKOFF_MAX)
    }
}

/// The retry policy, and the only one: an invalid spec waits for a change of
/// the object; anything else backs off exponentially per object.
pub fn error_policy(obj: Arc<PostgresCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    match error.retry() {
        Retry::AwaitChange => Action::await_change(),
        Retry::Backoff => Action::requeue(ctx.backoff(&obj)),
    }
}

/// Runs the controller until SIGTERM/SIGINT. Watches PostgresCluster, the
/// kinds it owns (by owner reference) and the instance pods (mapped to their
/// cluster by the `pgcluster.dev/cluster` label, when they changed in a way
/// the status shows: [`triggers`]).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(LABEL_CLUSTER);
    let pods = triggers::PodTriggers::default();
    Controller::new(
        Api::<PostgresCluster>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
    .owns(Api::<Service>::all(client.clone()), owned.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
    .owns(Api::<Secret>::all(client.clone()), owned.clone())
    .owns(Api::<ServiceAccount>::all(client.clone()), owned.clone())
    .owns(Api::<Role>::all(client.clone()), owned.clone())
    .owns(Api::<RoleBinding>::all(client.clone()), owned.clone())
    .owns(Api::<NetworkPolicy>::all(client.clone()), owned.clone())
    .owns(
        Api::<PodDisruptionBudget>::all(client.clone()),
        owned.clone(),
    )
    .watches(Api::<Pod>::all(client.clone()), owned, move |pod: Pod| {
        let cluster = pod.labels().get(LABEL_CLUSTER)?.clone();
        // Only changes the status shows (not moving WAL positions).
        if !pods.changed(&pod) {
            return None;
        }
        Some(ObjectRef::<PostgresCluster>::new(&cluster).within(&pod.namespace()?))
    })
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
            Err(error) => {
                tracing::debug!(error = %reconcile::chain(&error), "reconcile round failed")
            }
        }
    })
    .await;
}
