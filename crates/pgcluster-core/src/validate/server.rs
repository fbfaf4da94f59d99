//! Checks of the server itself: instances, PostgreSQL, storage, resources,
//! replication and failover timings.

use std::time::Duration;

use super::RESOLVED;
use super::error::{Check, Problems, key_path};
use super::k8s::is_dns_subdomain;
use crate::api::v1alpha1::{
    FailoverSpec, PostgresSpec, ReplicationMode, ReplicationSpec, ResourceAmounts, ResourcesSpec,
    StorageSpec,
};
use crate::duration::parse_duration;
use crate::postgres::SUPPORTED_MAJORS;
use crate::postgres::params::managed_parameter;
use crate::quantity::Quantity;
use crate::timing::{FailoverTimings, TimingError};
use crate::validated::{ResolvedPostgres, ResolvedReplication, ResolvedResources, ResolvedStorage};

/// Most instances a cluster may have.
pub const MAX_INSTANCES: u32 = 9;

pub(crate) fn check_instances(problems: &mut Problems, instances: u32) {
    if !(1..=MAX_INSTANCES).contains(&instances) {
        problems.push(
            Check::Instances,
            "spec.instances",
            format!("{instances} instances are not supported"),
            format!("use 1 to {MAX_INSTANCES} (2 gives one primary and one replica)"),
        );
    }
}

pub(crate) fn check_postgres(problems: &mut Problems, pg: &PostgresSpec) -> ResolvedPostgres {
    let version = pg.version.expect(RESOLVED);
    if !SUPPORTED_MAJORS.contains(&version) {
        problems.push(
            Check::UnsupportedVersion,
            "spec.postgres.version",
            format!("PostgreSQL {version} is not supported"),
            format!("use one of {SUPPORTED_MAJORS:?}"),
        );
    }
    let image = pg.image.clone().expect(RESOLVED);
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        problems.push(
            Check::InvalidImage,
            "spec.postgres.image",
            format!("`{image}` is not an image reference"),
            "write `registry/repository:tag` without spaces, or remove the field for the default",
        );
    }
    for (name, value) in &pg.parameters {
        let path = key_path("spec.postgres.parameters", name);
        if let Some(managed) = managed_parameter(name) {
            problems.push(
                Check::ManagedParameter,
                &path,
                format!("`{name}` is managed by pgcluster: {}", managed.reason),
                "remove it from spec.postgres.parameters",
            );
            continue;
        }
        let name_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !name_ok {
            problems.push(
                Check::InvalidParameter,
                &path,
                format!("`{name}` is not a PostgreSQL parameter name"),
                "use the name as in postgresql.conf, e.g. `max_connections` or `auto_explain.log_min_duration`",
            );
        }
        if value.contains(['\n', '\r', '\0']) {
            problems.push(
                Check::InvalidParameter,
                &path,
                "the value contains a line break or NUL",
                "write the value on one line",
            );
        }
    }
    ResolvedPostgres {
        version,
        image,
        parameters: pg.parameters.clone(),
    }
}

/// Parses a quantity at `path`, reporting a problem when it does not parse.
pub(crate) fn quantity(problems: &mut Problems, path: &str, value: &str) -> Option<Quantity> {
    match Quantity::parse(value) {
        Ok(q) => Some(q),
        Err(e) => {
            problems.push(
                Check::InvalidQuantity,
                path,
                format!("`{value}` is not a quantity: {e}"),
                "write a Kubernetes quantity such as `512Mi`, `10Gi` or `250m`",
            );
            None
        }
    }
}

/// Parses a duration at `path`, reporting a problem when it does not parse.
pub(crate) fn duration(problems: &mut Problems, path: &str, value: &str) -> Option<Duration> {
    match parse_duration(value) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(
                Check::InvalidDuration,
                path,
                format!("`{value}` is not a duration: {e}"),
                "write a duration such as `500ms`, `2s` or `1m30s`",
            );
            None
        }
    }
}

pub(crate) fn check_storage(problems: &mut Problems, storage: &StorageSpec) -> ResolvedStorage {
    let size = storage.size.clone().expect(RESOLVED);
    let mut size_bytes = 0;
    if let Some(q) = quantity(problems, "spec.storage.size", &size) {
        size_bytes = q.to_u64_saturating();
        if q.is_zero() {
            problems.push(
                Check::InvalidQuantity,
                "spec.storage.size",
                "the volume size is zero",
                "give each instance room for its data and WAL, e.g. `10Gi`",
            );
        }
    }
    let storage_class = storage.storage_class.clone().expect(RESOLVED);
    if !is_dns_subdomain(&storage_class) {
        problems.push(
            Check::InvalidName,
            "spec.storage.storageClass",
            format!("`{storage_class}` is not a StorageClass name"),
            "use a name from `kubectl get storageclass` (K3s ships `local-path`)",
        );
    }
    ResolvedStorage {
        size,
        size_bytes,
        storage_class,
        retention: storage.retention.expect(RESOLVED),
    }
}

pub(crate) fn check_resources(problems: &mut Problems, r: &ResourcesSpec) -> ResolvedResources {
    let empty = ResourceAmounts::default();
    let requests = r.requests.as_ref().unwrap_or(&empty);
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let mut parse = |kind: &str, what: &str, value: &Option<String>| {
        value
            .as_ref()
            .and_then(|v| quantity(problems, &format!("spec.resources.{kind}.{what}"), v))
    };
    let req_cpu = parse("requests", "cpu", &requests.cpu);
    let req_mem = parse("requests", "memory", &requests.memory);
    let lim_cpu = parse("limits", "cpu", &limits.cpu);
    let lim_mem = parse("limits", "memory", &limits.memory);
    for (what, req, lim) in [("cpu", req_cpu, lim_cpu), ("memory", req_mem, lim_mem)] {
        if let (Some(req), Some(lim)) = (req, lim)
            && req > lim
        {
            problems.push(
                Check::RequestAboveLimit,
                format!("spec.resources.requests.{what}"),
                format!("the {what} request ({req}) is above the {what} limit ({lim})"),
                format!(
                    "lower spec.resources.requests.{what} or raise spec.resources.limits.{what}"
                ),
            );
        }
    }
    ResolvedResources {
        requests_cpu: requests.cpu.clone(),
        requests_memory: requests.memory.clone(),
        limits_cpu: limits.cpu.clone(),
        limits_memory: limits.memory.clone(),
    }
}

pub(crate) fn check_replication(
    problems: &mut Problems,
    r: &ReplicationSpec,
    instances: u32,
) -> ResolvedReplication {
    let mode = r.mode.expect(RESOLVED);
    if mode == ReplicationMode::Sync && instances < 2 {
        problems.push(
            Check::SyncNeedsReplica,
            "spec.replication.mode",
            format!("sync replication needs a standby, but spec.instances is {instances}"),
            "set spec.instances to 2 or more, or use mode `async`",
        );
    }
    let lag = r.max_failover_lag.clone().expect(RESOLVED);
    let max_failover_lag_bytes = quantity(problems, "spec.replication.maxFailoverLag", &lag)
        .map(|q| q.to_u64_saturating())
        .unwrap_or_default();
    ResolvedReplication {
        mode,
        when_no_standby: r.when_no_standby.expect(RESOLVED),
        max_failover_lag_bytes,
    }
}

pub(crate) fn check_failover(problems: &mut Problems, f: &FailoverSpec) -> FailoverTimings {
    let before = problems.count();
    let mut get = |field: &str, value: &Option<String>| {
        let value = value.clone().expect(RESOLVED);
        duration(problems, &format!("spec.failover.{field}"), &value).unwrap_or_default()
    };
    let timings = FailoverTimings {
        lease_duration: get("leaseDuration", &f.lease_duration),
        loop_interval: get("loopInterval", &f.loop_interval),
        renew_deadline: get("renewDeadline", &f.renew_deadline),
        stop_writes_timeout: get("stopWritesTimeout", &f.stop_writes_timeout),
        max_clock_drift: get("maxClockDrift", &f.max_clock_drift),
    };
    if problems.count() > before {
        // Some duration did not parse: the relations between them mean nothing yet.
        return timings;
    }
    for error in timings.check() {
        let (field, hint) = match &error {
            TimingError::Zero { field } => (*field, "give it a positive duration".to_owned()),
            TimingError::FencingAfterExpiry { .. } => (
                "leaseDuration",
                "raise spec.failover.leaseDuration, or lower renewDeadline, stopWritesTimeout or maxClockDrift (defaults: 2s, 1200ms, 500ms, 200ms)".to_owned(),
            ),
            TimingError::LoopTooSlow { .. } => (
                "loopInterval",
                "lower spec.failover.loopInterval to at most a third of renewDeadline (default 250ms)".to_owned(),
            ),
        };
        problems.push(
            Check::UnsafeTimings,
            format!("spec.failover.{field}"),
            error.to_string(),
            hint,
        );
    }
    timings
}
