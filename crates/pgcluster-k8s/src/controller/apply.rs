//! Step 4: server-side apply of every built object with the one field
//! manager [`FIELD_MANAGER`], then deletion of orphans (objects labelled
//! `pgcluster.dev/cluster=<name>` and owned by this cluster that the build no
//! longer produces). No get-compare-update loops.
//!
//! Secrets that already exist (with a password) are **not** applied: their
//! data is never touched after creation. (Applying their shape would be
//! wrong too: server-side apply removes fields the same manager applied
//! before and omits now, i.e. the password.)

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde::Serialize;

use super::FIELD_MANAGER;
use super::error::Error;
use crate::build::labels::LABEL_CLUSTER;
use crate::build::{Bundle, Object};

/// Proof that step 4 ran: status is computed only after apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `(kind, name)` of every object applied, in order.
    pub applied: Vec<(&'static str, String)>,
    /// `(kind, name)` of every orphan deleted.
    pub deleted: Vec<(&'static str, String)>,
    /// Every object the API server refused, with its answer (the others
    /// were applied all the same).
    pub failed: Vec<ApplyFailure>,
}

/// One object the API server refused to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyFailure {
    /// Its kind.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The HTTP status of the refusal (`None`: no answer).
    pub code: Option<u16>,
    /// The API server's message (or the client's error).
    pub message: String,
}

impl ApplyFailure {
    fn new(kind: &'static str, name: String, error: &kube::Error) -> Self {
        let (code, message) = match error {
            kube::Error::Api(s) => (Some(s.code), s.message.clone()),
            other => (None, other.to_string()),
        };
        Self {
            kind,
            name,
            code,
            message,
        }
    }

    /// Whether only a change of the spec can fix it (the API server found
    /// the object invalid, e.g. an immutable field changed): retrying the
    /// same object would fail the same way.
    pub fn needs_a_spec_change(&self) -> bool {
        matches!(self.code, Some(400 | 422))
    }
}

impl std::fmt::Display for ApplyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} {} ({code}): {}", self.kind, self.name, self.message),
            None => write!(f, "{} {}: {}", self.kind, self.name, self.message),
        }
    }
}

/// Group, version and plural of each kind pgcluster applies; also the
/// table the RBAC test reads.
pub const KINDS: &[(&str, &str, &str, &str)] = &[
    // (kind, group, version, plural)
    ("ServiceAccount", "", "v1", "serviceaccounts"),
    ("Role", "rbac.authorization.k8s.io", "v1", "roles"),
    (
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
    ),
    ("ConfigMap", "", "v1", "configmaps"),
    ("Secret", "", "v1", "secrets"),
    ("Service", "", "v1", "services"),
    ("StatefulSet", "apps", "v1", "statefulsets"),
    (
        "PodDisruptionBudget",
        "policy",
        "v1",
        "poddisruptionbudgets",
    ),
    (
        "NetworkPolicy",
        "networking.k8s.io",
        "v1",
        "networkpolicies",
    ),
    (
        "ServiceMonitor",
        "monitoring.coreos.com",
        "v1",
        "servicemonitors",
    ),
    (
        "PrometheusRule",
        "monitoring.coreos.com",
        "v1",
        "prometheusrules",
    ),
];

/// The [`ApiResource`] of `kind` (one of [`KINDS`]).
pub fn api_resource(kind: &str) -> ApiResource {
    let (kind, group, version, plural) = KINDS
        .iter()
        .find(|k| k.0 == kind)
        .copied()
        .expect("every kind the builders produce is listed in KINDS because Object is closed");
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

fn to_json<T: Serialize>(
    kind: &'static str,
    name: &str,
    value: &T,
) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|source| Error::Apply {
        kind,
        name: name.to_owned(),
        source: kube::Error::SerdeError(source),
    })
}

/// The JSON of an object and its namespace.
pub fn object_json(object: &Object<'_>) -> Result<(serde_json::Value, Option<String>), Error> {
    let (kind, name) = (object.kind(), object.name());
    let (json, ns) = match object {
        Object::ServiceAccount(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::Role(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::RoleBinding(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::ConfigMap(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::Secret(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::Service(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::StatefulSet(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::PodDisruptionBudget(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::NetworkPolicy(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::ServiceMonitor(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
        Object::PrometheusRule(o) => (to_json(kind, name, o)?, o.metadata.namespace.clone()),
    };
    Ok((json, ns))
}

/// What this controller last applied, per object: the digest of the
/// desired object and the resourceVersion the API server answered. An
/// object whose desired digest is the same and whose resourceVersion has
/// not moved since is not applied again: server-side apply of an unchanged
/// object changes nothing, but it is still a write request, and a resync
/// would make a dozen of them per cluster. Anyone else's change moves the
/// resourceVersion, so drift is still corrected at the next reconcile (and
/// the watch on owned objects triggers one).
#[derive(Debug, Default)]
pub struct AppliedCache {
    entries: std::sync::Mutex<AppliedEntries>,
}

/// An object: kind, namespace, name.
pub type ObjectKey = (String, String, String);

/// Per object: the digest applied and the resourceVersion answered.
type AppliedEntries = std::collections::HashMap<ObjectKey, (u64, String)>;

impl AppliedCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, AppliedEntries> {
        // A panic while holding the lock leaves at worst one extra apply.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` was applied with `digest` and is still at `current`.
    pub fn unchanged(
        &self,
        key: &(String, String, String),
        digest: u64,
        current: Option<&str>,
    ) -> bool {
        let Some(current) = current else {
            return false;
        };
        self.entries()
            .get(key)
            .is_some_and(|(d, rv)| *d == digest && rv == current)
    }

    /// Records that `key` was applied with `digest` and is now at `rv`.
    pub fn record(&self, key: ObjectKey, digest: u64, rv: Option<String>) {
        let mut entries = self.entries();
        match rv {
            Some(rv) => entries.insert(key, (digest, rv)),
            None => entries.remove(&key),
        };
    }
}

fn digest(json: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.to_string().hash(&mut h);
    h.finish()
}

/// Applies `bundle` (except the Secrets named in `existing_secrets`, and
/// objects unchanged since this controller applied them: [`AppliedCache`]),
/// every object even when another failed (each refusal goes into
/// [`Applied::failed`]), then deletes orphans in `namespace` owned by
/// `owner_uid`. The cluster's labelled objects are listed first, once, for
/// both.
pub async fn apply(
    client: &Client,
    namespace: &str,
    cluster: &str,
    owner_uid: &str,
    bundle: &Bundle,
    existing_secrets: &BTreeSet<String>,
    cache: &AppliedCache,
) -> Result<Applied, Error> {
    let listed = list_labelled(client, namespace, cluster).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    let mut failed = Vec::new();
    let mut wanted: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for object in bundle.objects() {
        let (kind, name) = (object.kind(), object.name().to_owned());
        wanted.entry(kind).or_default().insert(name.clone());
        if kind == "Secret" && existing_secrets.contains(&name) {
            continue;
        }
        let (json, ns) = object_json(&object)?;
        let ns = ns.unwrap_or_else(|| namespace.to_owned());
        let key = (kind.to_owned(), ns.clone(), name.clone());
        let desired = digest(&json);
        let current = (ns == namespace)
            .then(|| listed.get(kind))
            .flatten()
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i.metadata.name.as_deref() == Some(&name))
            })
            .and_then(|i| i.metadata.resource_version.as_deref());
        if cache.unchanged(&key, desired, current) {
            applied.push((kind, name));
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(kind));
        match api.patch(&name, &params, &Patch::Apply(&json)).await {
            Ok(written) => {
                cache.record(key, desired, written.metadata.resource_version);
                applied.push((kind, name));
            }
            Err(error) => {
                tracing::warn!(kind, %name, %error, "the API server refused an object; applying the others");
                failed.push(ApplyFailure::new(kind, name, &error));
            }
        }
    }
    let deleted = delete_orphans(client, namespace, owner_uid, &listed, &wanted).await?;
    Ok(Applied {
        applied,
        deleted,
        failed,
    })
}

/// Whether a list answered `s` because the API server does not serve the
/// kind. A real API server answers a path it does not serve (a CRD that is
/// not installed) with a plain-text `404 page not found`, not a `Status`;
/// kube-rs reports that as code 404 with the reason "Failed to parse error
/// data", which `Status::is_not_found()` does not recognise. A list of a
/// served kind never answers 404 (an empty namespace lists nothing), so the
/// code alone decides.
pub fn not_served(s: &kube::core::Status) -> bool {
    s.code == 404
}

/// The cluster's labelled objects in `namespace`, kind by kind. A kind
/// whose API is not served (the Prometheus operator's CRDs are optional)
/// is left out.
pub async fn list_labelled(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<BTreeMap<&'static str, Vec<DynamicObject>>, Error> {
    let selector = format!("{LABEL_CLUSTER}={cluster}");
    let mut out = BTreeMap::new();
    for (kind, ..) in KINDS {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource(kind));
        match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                out.insert(*kind, list.items);
            }
            Err(kube::Error::Api(s)) if not_served(&s) => {}
            Err(source) => {
                return Err(Error::DeleteOrphan {
                    kind,
                    name: "*".to_owned(),
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Deletes, of the `listed` objects, those owned by `owner_uid` and not in
/// `wanted`.
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    owner_uid: &str,
    listed: &BTreeMap<&'static str, Vec<DynamicObject>>,
    wanted: &BTreeMap<&'static str, BTreeSet<String>>,
) -> Result<Vec<(&'static str, String)>, Error> {
    let mut deleted = Vec::new();
    for (kind, items) in listed {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource(kind));
        for item in items {
            let Some(name) = item.metadata.name.clone() else {
                continue;
            };
            let owned = item
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner_uid);
            if !owned || wanted.get(kind).is_some_and(|w| w.contains(&name)) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push((*kind, name)),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(source) => return Err(Error::DeleteOrphan { kind, name, source }),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applied again unless both the desired object and its
    /// resourceVersion are what this controller last applied and saw.
    #[test]
    fn unchanged_objects_are_not_applied_again() {
        let cache = AppliedCache::default();
        let key: ObjectKey = ("Service".into(), "db".into(), "pg-rw".into());
        assert!(!cache.unchanged(&key, 1, Some("10")), "never applied");
        cache.record(key.clone(), 1, Some("10".into()));
        assert!(cache.unchanged(&key, 1, Some("10")));
        assert!(!cache.unchanged(&key, 2, Some("10")), "the spec changed it");
        assert!(
            !cache.unchanged(&key, 1, Some("11")),
            "someone else changed it"
        );
        assert!(!cache.unchanged(&key, 1, None), "someone deleted it");
        cache.record(key.clone(), 1, None);
        assert!(
            !cache.unchanged(&key, 1, Some("10")),
            "an answer without a version"
        );
    }
}
