//! Every default in one place, and [`resolve`], which writes them into a spec
//! so that nothing downstream guesses.
//!
//! With these defaults a spec of just a name and a namespace is a working
//! 1 primary + 1 replica cluster on K3s's `local-path` storage.

use crate::api::v1alpha1::{
    AccessEndpoint, AccessRule, EndpointSpec, FailoverSpec, LoadBalancerSpec, MonitoringSpec,
    NetworkSpec, NoStandbyPolicy, PostgresClusterSpec, PostgresSpec, Privileges, ReplicationMode,
    ReplicationSpec, ResourceAmounts, ResourcesSpec, RetentionPolicy, ServiceEndpoint,
    ServicesSpec, StorageSpec,
};
use crate::duration::format_duration;
use crate::timing::{FailoverTimings, Platform};

/// Namespace used when the object has none (what `kubectl apply` would do).
pub const DEFAULT_NAMESPACE: &str = "default";
/// Instances: one primary and one replica.
pub const DEFAULT_INSTANCES: u32 = 2;
/// PostgreSQL major version.
pub const DEFAULT_POSTGRES_VERSION: u32 = 17;
/// Image repository of the instance image (PostgreSQL + `pgcluster agent`);
/// the tag is the major version (see [`default_image`]). The same reference is
/// in `images.env`, which `scripts/build-images` tags its images with (a test
/// in pgcluster-k8s checks they agree).
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/pgcluster/postgres";
/// The controller image (`kubernetes/controller/deployment.yaml`); the tag is
/// the workspace version. Also in `images.env` (checked by the same test).
pub const DEFAULT_CONTROLLER_IMAGE: &str = concat!(
    "ghcr.io/pgcluster/pgcluster-controller:",
    env!("CARGO_PKG_VERSION")
);
/// Volume size of each instance.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";
/// StorageClass (K3s's built-in node-local provisioner).
pub const DEFAULT_STORAGE_CLASS: &str = "local-path";
/// Volumes outlive the cluster.
pub const DEFAULT_RETENTION: RetentionPolicy = RetentionPolicy::Retain;
/// CPU request of each PostgreSQL container.
pub const DEFAULT_REQUESTS_CPU: &str = "250m";
/// Memory request of each PostgreSQL container.
pub const DEFAULT_REQUESTS_MEMORY: &str = "512Mi";
/// Memory limit when the user sets no memory request (otherwise the request).
pub const DEFAULT_LIMITS_MEMORY: &str = "1Gi";
/// Replication mode.
pub const DEFAULT_REPLICATION_MODE: ReplicationMode = ReplicationMode::Async;
/// Sync mode without a standby: writes wait.
pub const DEFAULT_WHEN_NO_STANDBY: NoStandbyPolicy = NoStandbyPolicy::Block;
/// Largest lag a replica may have and still be promoted automatically.
pub const DEFAULT_MAX_FAILOVER_LAG: &str = "16Mi";
/// Automatic failover on.
pub const DEFAULT_AUTOMATIC_FAILOVER: bool = true;
/// The rw and ro Services exist.
pub const DEFAULT_ENDPOINT_ENABLED: bool = true;
/// No LoadBalancer unless asked for.
pub const DEFAULT_LOAD_BALANCER_ENABLED: bool = false;
/// The LoadBalancer exposes the primary.
pub const DEFAULT_LOAD_BALANCER_ENDPOINT: ServiceEndpoint = ServiceEndpoint::Rw;
/// Access rules admit through the rw endpoint when they name none.
pub const DEFAULT_ACCESS_ENDPOINT: AccessEndpoint = AccessEndpoint::Rw;
/// Public ranges are refused unless allowed.
pub const DEFAULT_ALLOW_PUBLIC: bool = false;
/// Role connection limit: none.
pub const DEFAULT_CONNECTION_LIMIT: i32 = -1;
/// Privileges of a grant.
pub const DEFAULT_PRIVILEGES: Privileges = Privileges::ReadOnly;
/// K3s's default pod CIDR.
pub const DEFAULT_POD_CIDR: &str = "10.42.0.0/16";
/// K3s's default service CIDR.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// Monitoring off.
pub const DEFAULT_MONITORING_ENABLED: bool = false;
/// Namespace Prometheus runs in.
pub const DEFAULT_MONITORING_NAMESPACE: &str = "monitoring";
/// Scrape interval.
pub const DEFAULT_MONITORING_INTERVAL: &str = "30s";

/// The image for a major version: `ghcr.io/pgcluster/postgres:<major>`.
pub fn default_image(major: u32) -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{major}")
}

/// The spec with every default written in, for local mode (see [`resolve_on`]).
pub fn resolve(spec: &PostgresClusterSpec) -> PostgresClusterSpec {
    resolve_on(spec, Platform::Local)
}

/// The spec with every default written in, the failover timings' for
/// `platform` ([`FailoverTimings::defaults`]). Values the user set are kept
/// as written (even invalid ones: validation reports them). Idempotent.
pub fn resolve_on(spec: &PostgresClusterSpec, platform: Platform) -> PostgresClusterSpec {
    let mut s = spec.clone();
    s.instances = Some(s.instances.unwrap_or(DEFAULT_INSTANCES));

    let postgres = s.postgres.get_or_insert_with(PostgresSpec::default);
    let version = *postgres.version.get_or_insert(DEFAULT_POSTGRES_VERSION);
    postgres.image.get_or_insert_with(|| default_image(version));

    let storage = s.storage.get_or_insert_with(StorageSpec::default);
    storage
        .size
        .get_or_insert_with(|| DEFAULT_STORAGE_SIZE.to_owned());
    storage
        .storage_class
        .get_or_insert_with(|| DEFAULT_STORAGE_CLASS.to_owned());
    storage.retention.get_or_insert(DEFAULT_RETENTION);

    let resources = s.resources.get_or_insert_with(ResourcesSpec::default);
    let requests = resources
        .requests
        .get_or_insert_with(ResourceAmounts::default);
    requests
        .cpu
        .get_or_insert_with(|| DEFAULT_REQUESTS_CPU.to_owned());
    let user_memory_request = requests.memory.clone();
    requests
        .memory
        .get_or_insert_with(|| DEFAULT_REQUESTS_MEMORY.to_owned());
    let limits = resources
        .limits
        .get_or_insert_with(ResourceAmounts::default);
    // A user-set memory request bigger than the default limit must not make
    // the defaults invalid: the default limit is then the request itself.
    limits.memory.get_or_insert_with(|| {
        user_memory_request.unwrap_or_else(|| DEFAULT_LIMITS_MEMORY.to_owned())
    });

    let replication = s.replication.get_or_insert_with(ReplicationSpec::default);
    replication.mode.get_or_insert(DEFAULT_REPLICATION_MODE);
    replication
        .when_no_standby
        .get_or_insert(DEFAULT_WHEN_NO_STANDBY);
    replication
        .max_failover_lag
        .get_or_insert_with(|| DEFAULT_MAX_FAILOVER_LAG.to_owned());

    let timings = FailoverTimings::defaults(platform);
    let failover = s.failover.get_or_insert_with(FailoverSpec::default);
    for (field, value) in [
        (&mut failover.lease_duration, timings.lease_duration),
        (&mut failover.loop_interval, timings.loop_interval),
        (&mut failover.renew_deadline, timings.renew_deadline),
        (
            &mut failover.stop_writes_timeout,
            timings.stop_writes_timeout,
        ),
        (&mut failover.max_clock_drift, timings.max_clock_drift),
    ] {
        field.get_or_insert_with(|| format_duration(value));
    }
    failover.automatic.get_or_insert(DEFAULT_AUTOMATIC_FAILOVER);

    let services = s.services.get_or_insert_with(ServicesSpec::default);
    for endpoint in [&mut services.rw, &mut services.ro] {
        endpoint
            .get_or_insert_with(EndpointSpec::default)
            .enabled
            .get_or_insert(DEFAULT_ENDPOINT_ENABLED);
    }
    let lb = services
        .load_balancer
        .get_or_insert_with(LoadBalancerSpec::default);
    lb.enabled.get_or_insert(DEFAULT_LOAD_BALANCER_ENABLED);
    lb.endpoint.get_or_insert(DEFAULT_LOAD_BALANCER_ENDPOINT);
    lb.allow_public.get_or_insert(DEFAULT_ALLOW_PUBLIC);

    for rule in &mut s.access {
        resolve_rule(rule);
    }
    for role in &mut s.roles {
        role.connection_limit
            .get_or_insert(DEFAULT_CONNECTION_LIMIT);
        for grant in &mut role.grants {
            grant.privileges.get_or_insert(DEFAULT_PRIVILEGES);
        }
    }

    let network = s.network.get_or_insert_with(NetworkSpec::default);
    network
        .pod_cidr
        .get_or_insert_with(|| DEFAULT_POD_CIDR.to_owned());
    network
        .service_cidr
        .get_or_insert_with(|| DEFAULT_SERVICE_CIDR.to_owned());

    let monitoring = s.monitoring.get_or_insert_with(MonitoringSpec::default);
    let enabled = *monitoring.enabled.get_or_insert(DEFAULT_MONITORING_ENABLED);
    monitoring
        .namespace
        .get_or_insert_with(|| DEFAULT_MONITORING_NAMESPACE.to_owned());
    for part in [
        &mut monitoring.service_monitor,
        &mut monitoring.prometheus_rule,
        &mut monitoring.grafana_dashboard,
    ] {
        part.get_or_insert(enabled);
    }
    monitoring
        .interval
        .get_or_insert_with(|| DEFAULT_MONITORING_INTERVAL.to_owned());
    s
}

fn resolve_rule(rule: &mut AccessRule) {
    if rule.endpoints.is_empty() {
        rule.endpoints.push(DEFAULT_ACCESS_ENDPOINT);
    }
    rule.from.allow_public.get_or_insert(DEFAULT_ALLOW_PUBLIC);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty spec resolves to the documented homelab defaults.
    #[test]
    fn empty_spec_gets_every_default() {
        let r = resolve(&PostgresClusterSpec::default());
        assert_eq!(r.instances, Some(2));
        let pg = r.postgres.as_ref().expect("resolved");
        assert_eq!(pg.version, Some(17));
        assert_eq!(pg.image.as_deref(), Some("ghcr.io/pgcluster/postgres:17"));
        let storage = r.storage.as_ref().expect("resolved");
        assert_eq!(storage.storage_class.as_deref(), Some("local-path"));
        let failover = r.failover.as_ref().expect("resolved");
        assert_eq!(failover.lease_duration.as_deref(), Some("2s"));
        assert_eq!(failover.loop_interval.as_deref(), Some("250ms"));
        let monitoring = r.monitoring.as_ref().expect("resolved");
        assert_eq!(monitoring.service_monitor, Some(false));
    }

    /// Resolving twice changes nothing.
    #[test]
    fn idempotent() {
        let once = resolve(&PostgresClusterSpec::default());
        assert_eq!(resolve(&once), once);
    }

    /// A memory request above the default limit raises the default limit with it.
    #[test]
    fn memory_limit_follows_request() {
        let spec = PostgresClusterSpec {
            resources: Some(ResourcesSpec {
                requests: Some(ResourceAmounts {
                    memory: Some("4Gi".into()),
                    cpu: None,
                }),
                limits: None,
            }),
            ..Default::default()
        };
        let r = resolve(&spec);
        let limits = r.resources.and_then(|r| r.limits).expect("resolved");
        assert_eq!(limits.memory.as_deref(), Some("4Gi"));
    }
}
