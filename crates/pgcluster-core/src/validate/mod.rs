//! `validate`: a `PostgresCluster` in, a [`ValidatedCluster`] or every problem
//! out. The CLI, the controller and any webhook call this one function.
//!
//! ```text
//! PostgresCluster --resolve--> explicit spec --checks per section--> ValidatedCluster
//!                                                  \--> ValidationErrors (all problems, with paths and hints)
//! ```

mod access;
mod error;
mod k8s;
mod network;
mod server;
mod warnings;

use std::time::Duration;

pub use access::{endpoint_name, reserved_role};
pub use error::{Check, ValidationError, ValidationErrors};
pub use server::MAX_INSTANCES;
pub use warnings::{ValidationWarning, warnings};

use error::Problems;
pub(crate) use error::key_path;

use crate::api::v1alpha1::{MonitoringSpec, PostgresCluster};
use crate::defaults::{DEFAULT_NAMESPACE, resolve_on};
use crate::names::ClusterName;
use crate::timing::Platform;
use crate::validated::{ResolvedMonitoring, ValidatedCluster};

/// Panic message for fields `resolve` always fills.
pub(crate) const RESOLVED: &str = "resolve() fills this field because it writes every default";

/// Shortest scrape interval accepted.
const MIN_SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// Validates a cluster object with local mode's defaults (see [`validate_on`]).
pub fn validate(cluster: &PostgresCluster) -> Result<ValidatedCluster, ValidationErrors> {
    validate_on(cluster, Platform::Local)
}

/// Validates a cluster object: resolves the defaults of `platform`, checks
/// every rule, and returns the typed result or every problem found.
pub fn validate_on(
    cluster: &PostgresCluster,
    platform: Platform,
) -> Result<ValidatedCluster, ValidationErrors> {
    let mut problems = Problems::default();
    let name = match cluster.metadata.name.as_deref() {
        None => {
            problems.push(
                error::Check::Object,
                "metadata.name",
                "the cluster has no name",
                "set metadata.name, e.g. `main`",
            );
            None
        }
        Some(name) => match ClusterName::new(name) {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(
                    error::Check::InvalidName,
                    "metadata.name",
                    format!("cluster name `{name}` {e}"),
                    format!(
                        "use lowercase letters, digits and `-`, at most {} characters so every derived object name fits",
                        crate::names::MAX_CLUSTER_NAME_LEN
                    ),
                );
                None
            }
        },
    };
    let namespace = cluster
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    k8s::check_namespace(&mut problems, "metadata.namespace", &namespace);

    let spec = resolve_on(&cluster.spec, platform);
    let instances = spec.instances.expect(RESOLVED);
    server::check_instances(&mut problems, instances);
    let postgres = server::check_postgres(&mut problems, spec.postgres.as_ref().expect(RESOLVED));
    let storage = server::check_storage(&mut problems, spec.storage.as_ref().expect(RESOLVED));
    let resources =
        server::check_resources(&mut problems, spec.resources.as_ref().expect(RESOLVED));
    let replication = server::check_replication(
        &mut problems,
        spec.replication.as_ref().expect(RESOLVED),
        instances,
    );
    let failover = spec.failover.as_ref().expect(RESOLVED);
    let timings = server::check_failover(&mut problems, failover);
    let network = network::check_network(&mut problems, spec.network.as_ref().expect(RESOLVED));
    let services = network::check_services(
        &mut problems,
        spec.services.as_ref().expect(RESOLVED),
        &network,
    );
    let roles = access::check_roles(&mut problems, &spec.roles, &spec.databases);
    let databases = access::check_databases(&mut problems, &spec.databases, &spec.roles);
    let access_model = access::check_access(
        &mut problems,
        &spec.access,
        &spec.databases,
        &spec.roles,
        &services,
        &namespace,
    );
    let monitoring = check_monitoring(&mut problems, spec.monitoring.as_ref().expect(RESOLVED));

    match name {
        Some(name) if problems.errors.is_empty() => Ok(ValidatedCluster {
            name,
            namespace,
            instances,
            postgres,
            storage,
            resources,
            replication,
            timings,
            automatic_failover: failover.automatic.expect(RESOLVED),
            services,
            access: access_model,
            databases,
            roles,
            network,
            monitoring,
            resolved_spec: spec,
        }),
        _ => Err(ValidationErrors {
            errors: problems.errors,
        }),
    }
}

fn check_monitoring(problems: &mut Problems, m: &MonitoringSpec) -> ResolvedMonitoring {
    let namespace = m.namespace.clone().expect(RESOLVED);
    k8s::check_namespace(problems, "spec.monitoring.namespace", &namespace);
    k8s::check_labels(problems, "spec.monitoring.labels", &m.labels);
    let text = m.interval.clone().expect(RESOLVED);
    let interval = server::duration(problems, "spec.monitoring.interval", &text);
    if let Some(d) = interval
        && d < MIN_SCRAPE_INTERVAL
    {
        problems.push(
            error::Check::InvalidDuration,
            "spec.monitoring.interval",
            format!("a scrape interval of {text} would load the agents for nothing"),
            "use 1s or more (default 30s)",
        );
    }
    ResolvedMonitoring {
        enabled: m.enabled.expect(RESOLVED),
        namespace,
        service_monitor: m.service_monitor.expect(RESOLVED),
        prometheus_rule: m.prometheus_rule.expect(RESOLVED),
        grafana_dashboard: m.grafana_dashboard.expect(RESOLVED),
        labels: m.labels.clone(),
        interval: interval.unwrap_or_default(),
    }
}
