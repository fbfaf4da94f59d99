//! Step 5: the status, computed by a pure function of the object, the
//! pipeline's outcome, the pods and the Lease, then written to the status
//! subresource by server-side apply (the one field manager; fields that are
//! no longer set disappear).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use pgcluster_core::ValidationErrors;
use pgcluster_core::api::v1alpha1::{
    ClusterPhase, FailoverRecord, InstanceStatus, PostgresCluster, PostgresClusterStatus,
};
use pgcluster_core::validate::ValidationWarning;
use pgcluster_ha::machine::{Lease, MemberRole, MemberState};

use super::FIELD_MANAGER;
use super::apply::Applied;
use super::error::Error;
use crate::build::labels::LABEL_ROLE;
use crate::lease::pod_member_state;

/// What the pipeline got to, as input of [`compute`].
#[derive(Clone, Debug)]
pub enum Outcome<'a> {
    /// The spec is invalid; nothing was applied.
    Invalid(&'a ValidationErrors),
    /// Everything was applied; `sql` says whether databases and roles are in
    /// place (`Err(reason)` while the primary is not reachable or SQL failed).
    Applied {
        /// The apply marker.
        applied: &'a Applied,
        /// Expected number of instances.
        instances: u32,
        /// Databases and roles.
        sql: Result<(), String>,
        /// What `validate` warns about the spec (valid choices with a cost).
        warnings: &'a [ValidationWarning],
    },
}

/// The condition types, in the order they are written.
pub const CONDITIONS: [&str; 5] = [
    "Ready",
    "Available",
    "Degraded",
    "Progressing",
    "SpecWarnings",
];

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_role(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ROLE))
        .map_or("unknown", String::as_str)
}

/// The instances as their pods and agents report them, by pod name.
pub fn instances(pods: &BTreeMap<String, Pod>, lease: Option<&Lease>) -> Vec<InstanceStatus> {
    let states: BTreeMap<&str, MemberState> = pods
        .iter()
        .filter_map(|(name, pod)| Some((name.as_str(), pod_member_state(pod)?)))
        .collect();
    let primary_lsn = lease.map(|l| l.record.primary_lsn.0).or_else(|| {
        states
            .values()
            .find(|s| s.role == MemberRole::Primary)
            .map(|s| s.flushed_lsn.0)
    });
    pods.iter()
        .map(|(name, pod)| {
            let state = states.get(name.as_str());
            let is_primary = state.is_some_and(|s| s.role == MemberRole::Primary);
            InstanceStatus {
                name: name.clone(),
                role: pod_role(pod).to_owned(),
                ready: pod_ready(pod),
                lsn: state.map(|s| {
                    if is_primary {
                        s.flushed_lsn
                    } else {
                        s.replayed_lsn
                    }
                    .to_string()
                }),
                lag_bytes: state
                    .filter(|_| !is_primary)
                    .zip(primary_lsn)
                    .map(|(s, p)| p.saturating_sub(s.replayed_lsn.0)),
                timeline: state.map(|s| s.timeline.0),
            }
        })
        .collect()
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status of `cluster` after the pipeline reached `outcome`, given its
/// pods and Lease; `now` stamps condition transitions and failovers.
pub fn compute(
    cluster: &PostgresCluster,
    outcome: &Outcome<'_>,
    pods: &BTreeMap<String, Pod>,
    lease: Option<&Lease>,
    now: jiff::Timestamp,
) -> PostgresClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let instances = instances(pods, lease);
    let holder = lease
        .and_then(|l| l.record.holder.as_ref())
        .map(|h| h.to_string());
    let primary_ready = holder
        .as_ref()
        .is_some_and(|h| instances.iter().any(|i| &i.name == h && i.ready));
    let ready_count = instances.iter().filter(|i| i.ready).count();
    let expected = match outcome {
        Outcome::Applied { instances, .. } => *instances as usize,
        Outcome::Invalid(_) => cluster.spec.instances.unwrap_or(2) as usize,
    };
    let all_ready = ready_count >= expected && instances.len() >= expected;
    let serving_phase = if lease.is_none() {
        ClusterPhase::Creating
    } else if holder.is_none() {
        ClusterPhase::FailingOver
    } else if !primary_ready {
        ClusterPhase::Unavailable
    } else if all_ready {
        ClusterPhase::Healthy
    } else {
        ClusterPhase::Degraded
    };
    let summary = format!(
        "{ready_count}/{expected} instances ready; primary {}",
        holder.as_deref().unwrap_or("none")
    );
    let c = |t, s, r: &str, m: String| condition(&previous.conditions, t, s, r, m, generation, now);
    let (phase, ready, progressing) = match outcome {
        Outcome::Invalid(errors) => {
            let messages: Vec<String> = errors
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect();
            let message = format!("the spec is invalid: {}", messages.join("; "));
            (
                ClusterPhase::Invalid,
                c("Ready", false, "InvalidSpec", message.clone()),
                c("Progressing", false, "InvalidSpec", message),
            )
        }
        Outcome::Applied { applied, .. } if !applied.failed.is_empty() => {
            let message = refused(&applied.failed);
            (
                serving_phase,
                c("Ready", false, "ApplyFailed", message.clone()),
                c("Progressing", true, "ApplyFailed", message),
            )
        }
        Outcome::Applied { sql, .. } => {
            let phase_name = format!("{serving_phase:?}");
            let ready = c(
                "Ready",
                serving_phase == ClusterPhase::Healthy && sql.is_ok(),
                match (&serving_phase, sql) {
                    (ClusterPhase::Healthy, Err(_)) => "DatabasesPending",
                    _ => &phase_name,
                },
                match sql {
                    Err(reason) if serving_phase == ClusterPhase::Healthy => {
                        format!("{summary}; databases and roles pending: {reason}")
                    }
                    _ => summary.clone(),
                },
            );
            let settled = serving_phase == ClusterPhase::Healthy && sql.is_ok();
            let progressing = c(
                "Progressing",
                !settled,
                if settled { "Reconciled" } else { "Reconciling" },
                summary.clone(),
            );
            (serving_phase, ready, progressing)
        }
    };
    let available = c(
        "Available",
        primary_ready,
        if primary_ready {
            "PrimaryServing"
        } else {
            "NoPrimary"
        },
        summary.clone(),
    );
    let degraded_now = primary_ready && !all_ready || lease.is_some() && !primary_ready;
    let degraded = c(
        "Degraded",
        degraded_now,
        if degraded_now {
            "InstancesNotReady"
        } else {
            "AllInstancesReady"
        },
        summary,
    );
    // True while the spec makes a valid choice with a cost worth knowing
    // (e.g. sync + block with 2 instances: losing either one stops writes).
    let spec_warnings = match outcome {
        Outcome::Applied { warnings, .. } if !warnings.is_empty() => c(
            "SpecWarnings",
            true,
            "ValidWithCost",
            warnings
                .iter()
                .map(|w| format!("{}: {} ({})", w.path, w.message, w.hint))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Outcome::Applied { .. } => c("SpecWarnings", false, "None", "no warnings".to_owned()),
        Outcome::Invalid(_) => c(
            "SpecWarnings",
            false,
            "InvalidSpec",
            "the spec is invalid (see Ready)".to_owned(),
        ),
    };
    let last_failover = match (&previous.primary, &holder) {
        (Some(old), Some(new)) if old != new => {
            let old_alive = instances.iter().any(|i| &i.name == old && i.ready);
            let kind = if old_alive { "switchover" } else { "failover" };
            Some(FailoverRecord {
                kind: kind.to_owned(),
                from: Some(old.clone()),
                to: new.clone(),
                reason: format!(
                    "lease term {} -> {}: {}",
                    previous.lease_term.unwrap_or(0),
                    lease.map_or(0, |l| l.record.term),
                    if old_alive {
                        "the primary handed over its lease"
                    } else {
                        "the previous primary stopped renewing its lease"
                    }
                ),
                time: now.to_string(),
            })
        }
        _ => previous.last_failover.clone(),
    };
    PostgresClusterStatus {
        phase: Some(phase),
        primary: holder,
        lease_term: lease.map(|l| l.record.term),
        instances,
        conditions: vec![ready, available, degraded, progressing, spec_warnings],
        observed_generation: generation,
        last_failover,
        // The caller sets it after the SQL ran; until then the last one holds.
        sql_applied: previous.sql_applied.clone(),
    }
}

/// What the API server refused and what to do, for the Ready and
/// Progressing conditions.
fn refused(failed: &[super::apply::ApplyFailure]) -> String {
    let list: Vec<String> = failed.iter().map(ToString::to_string).collect();
    let immutable = failed
        .iter()
        .any(|f| f.kind == "StatefulSet" && f.needs_a_spec_change());
    let hint = if immutable {
        "; the StatefulSet cannot take this change in place (its volume claim templates, \
         selector and service name are immutable): revert the spec change, or delete the \
         StatefulSet with `kubectl delete statefulset --cascade=orphan` so the controller \
         re-creates it (pods and volumes stay)"
    } else {
        "; the other objects were applied; the controller retries after a spec change \
         (invalid objects) or with back-off"
    };
    format!("the API server refused {}{hint}", list.join("; "))
}

/// The status without the WAL positions (they move with every write).
fn without_positions(status: &PostgresClusterStatus) -> PostgresClusterStatus {
    let mut s = status.clone();
    for i in &mut s.instances {
        i.lsn = None;
        i.lag_bytes = None;
    }
    s
}

/// How often a status that differs only in WAL positions is written.
pub const POSITIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `next` must be written over `previous` (the object's status):
/// any change but the positions at once; positions when the last write is
/// [`POSITIONS_EVERY`] old (`since_write`: `None` when unknown).
pub fn must_write(
    previous: Option<&PostgresClusterStatus>,
    next: &PostgresClusterStatus,
    since_write: Option<std::time::Duration>,
) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    if previous == next {
        return false;
    }
    without_positions(previous) != without_positions(next)
        || since_write.is_none_or(|d| d >= POSITIONS_EVERY)
}

/// Writes `status` to the status subresource (server-side apply).
pub async fn write(
    client: &Client,
    cluster: &PostgresCluster,
    status: &PostgresClusterStatus,
) -> Result<(), Error> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PostgresCluster> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": "pgcluster.dev/v1alpha1",
        "kind": "PostgresCluster",
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| Error::Status {
        cluster: name,
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::testing::objects::postgres_cluster;
    use crate::testing::spec;

    fn spec_warnings(validated: &pgcluster_core::ValidatedCluster) -> Condition {
        let applied = Applied {
            applied: vec![],
            deleted: vec![],
            failed: vec![],
        };
        let warnings = validated.warnings();
        let status = compute(
            &postgres_cluster(),
            &Outcome::Applied {
                applied: &applied,
                instances: validated.instances(),
                sql: Ok(()),
                warnings: &warnings,
            },
            &BTreeMap::new(),
            None,
            "2026-12-08T00:00:00Z".parse().unwrap(),
        );
        let names: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(names, CONDITIONS);
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "SpecWarnings")
            .unwrap()
    }

    /// Sync + block with two instances is valid, and the cluster's status
    /// says what it costs; other choices carry no warning.
    #[test]
    fn spec_warnings_condition() {
        let strict = spec("pg", 2)
            .with_spec(|s| {
                s.replication = Some(pgcluster_core::api::v1alpha1::ReplicationSpec {
                    mode: Some(pgcluster_core::api::v1alpha1::ReplicationMode::Sync),
                    when_no_standby: Some(pgcluster_core::api::v1alpha1::NoStandbyPolicy::Block),
                    ..Default::default()
                })
            })
            .validated();
        let c = spec_warnings(&strict);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "ValidWithCost")
        );
        assert!(
            c.message
                .starts_with("spec.replication.whenNoStandby: with 2 instances"),
            "{}",
            c.message
        );
        let c = spec_warnings(&spec("pg", 2).validated());
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "None"));
    }
}
