//! Monitoring (when `spec.monitoring.enabled`): a metrics Service, a
//! ServiceMonitor scraping the agents, a PrometheusRule with pgcluster's
//! alerts and a Grafana dashboard ConfigMap (label `grafana_dashboard: "1"`,
//! picked up by the Grafana sidecar of kube-prometheus-stack).
//!
//! The custom resources are small typed structs (no `json!`), checked against
//! the upstream CRDs by the golden test.
//!
//! Metric contract with the agent (names start with `pgcluster_`; Prometheus
//! adds `namespace` and `pod` from the scrape target):
//! `pgcluster_up` (1 when PostgreSQL answers), `pgcluster_role{role="primary"|"replica"}`
//! (1 for the current role), `pgcluster_replication_lag_bytes`,
//! `pgcluster_replication_lag_seconds`, `pgcluster_timeline`,
//! `pgcluster_lease_term`, `pgcluster_failovers_total`,
//! `pgcluster_switchovers_total`, `pgcluster_connections`,
//! `pgcluster_max_connections`. Storage comes from the kubelet's
//! `kubelet_volume_stats_*` (note: K3s `local-path` volumes are hostPath
//! volumes, for which the kubelet reports no volume stats; the storage alert
//! then stays silent).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use pgcluster_core::ValidatedCluster;
use serde::Serialize;

use super::labels::{
    Component, LABEL_CLUSTER, LABEL_COMPONENT, match_labels, meta, pod_selector_labels,
};
use super::services::service_port;
use super::{AGENT_PORT, AGENT_PORT_NAME, BuildError, K8sNames};

/// Label the Grafana sidecar looks for.
pub const GRAFANA_DASHBOARD_LABEL: &str = "grafana_dashboard";

/// monitoring.coreos.com/v1 ServiceMonitor.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitor {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `ServiceMonitor`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ServiceMonitorSpec,
}

/// The part of the ServiceMonitor spec pgcluster uses.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Services to scrape.
    pub selector: LabelSelector,
    /// Namespaces of those Services.
    pub namespace_selector: NamespaceSelector,
    /// Endpoints (ports) to scrape.
    pub endpoints: Vec<ScrapeEndpoint>,
}

/// Namespaces by name.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespace names.
    pub match_names: Vec<String>,
}

/// One scraped port.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeEndpoint {
    /// Service port name.
    pub port: String,
    /// HTTP path.
    pub path: String,
    /// `http`.
    pub scheme: String,
    /// Scrape interval (Prometheus duration).
    pub interval: String,
}

/// monitoring.coreos.com/v1 PrometheusRule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRule {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `PrometheusRule`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PrometheusRuleSpec,
}

/// Rule groups.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrometheusRuleSpec {
    /// Groups.
    pub groups: Vec<RuleGroup>,
}

/// One group of alerts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Alerts.
    pub rules: Vec<AlertRule>,
}

/// One alerting rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRule {
    /// Alert name.
    pub alert: String,
    /// PromQL expression.
    pub expr: String,
    /// How long the condition must hold.
    #[serde(rename = "for")]
    pub for_: String,
    /// Labels (severity).
    pub labels: BTreeMap<String, String>,
    /// Summary and description.
    pub annotations: BTreeMap<String, String>,
}

/// The monitoring objects of a cluster (all `None` when monitoring is off).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonitoringObjects {
    /// `<name>-metrics`, the Service the ServiceMonitor selects.
    pub metrics_service: Option<Service>,
    /// The ServiceMonitor.
    pub service_monitor: Option<ServiceMonitor>,
    /// The alerts.
    pub prometheus_rule: Option<PrometheusRule>,
    /// The Grafana dashboard ConfigMap.
    pub dashboard: Option<ConfigMap>,
}

/// A Prometheus duration (`30s`, `1m30s`, `500ms`).
pub fn prometheus_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

fn monitoring_meta(
    cluster: &ValidatedCluster,
    name: String,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    let mut m = meta(cluster, name, Component::Metrics, owner);
    if let Some(labels) = m.labels.as_mut() {
        for (k, v) in &cluster.monitoring().labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    m
}

/// PromQL matchers selecting this cluster's agents.
pub fn agent_matchers(cluster: &ValidatedCluster) -> String {
    format!(
        r#"namespace="{}",pod=~"{}-[0-9]+""#,
        cluster.namespace(),
        cluster.name().as_str()
    )
}

fn alert(
    name: &str,
    expr: String,
    for_: &str,
    severity: &str,
    summary: &str,
    description: String,
) -> AlertRule {
    AlertRule {
        alert: name.to_owned(),
        expr,
        for_: for_.to_owned(),
        labels: BTreeMap::from([("severity".to_owned(), severity.to_owned())]),
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary.to_owned()),
            ("description".to_owned(), description),
        ]),
    }
}

/// The alerts: no primary, replication lag, instance down, connections near
/// max, storage nearly full, failover happened.
pub fn alerts(cluster: &ValidatedCluster) -> Vec<AlertRule> {
    let sel = agent_matchers(cluster);
    let ns = &cluster.namespace();
    let name = cluster.name().as_str();
    let id = format!("{ns}/{name}");
    let pvc = format!(r#"namespace="{ns}",persistentvolumeclaim=~"data-{name}-[0-9]+""#);
    vec![
        alert(
            "PgclusterNoPrimary",
            format!(r#"absent(pgcluster_role{{{sel},role="primary"}} == 1)"#),
            "1m",
            "critical",
            "PostgreSQL cluster has no primary",
            format!("No instance of {id} reports the primary role: writes are failing."),
        ),
        alert(
            "PgclusterReplicationLagHigh",
            format!(
                "max by (namespace, pod) (pgcluster_replication_lag_bytes{{{sel}}}) > {}",
                cluster.replication().max_failover_lag_bytes
            ),
            "5m",
            "warning",
            "Replica lags beyond the failover limit",
            format!(
                "{{{{ $labels.pod }}}} of {id} lags more than {} bytes (replication.maxFailoverLag): it would not be promoted automatically.",
                cluster.replication().max_failover_lag_bytes
            ),
        ),
        alert(
            "PgclusterInstanceDown",
            format!(
                "(count(pgcluster_up{{{sel}}} == 1) or vector(0)) < {}",
                cluster.instances()
            ),
            "2m",
            "warning",
            "PostgreSQL instance down",
            format!(
                "Fewer than {} instances of {id} are up: redundancy is reduced.",
                cluster.instances()
            ),
        ),
        alert(
            "PgclusterConnectionsNearMax",
            format!(
                "max by (namespace, pod) (pgcluster_connections{{{sel}}} / pgcluster_max_connections{{{sel}}}) > 0.8"
            ),
            "5m",
            "warning",
            "PostgreSQL connections near max_connections",
            format!("{{{{ $labels.pod }}}} of {id} uses more than 80% of max_connections."),
        ),
        alert(
            "PgclusterStorageNearlyFull",
            format!(
                "kubelet_volume_stats_available_bytes{{{pvc}}} / kubelet_volume_stats_capacity_bytes{{{pvc}}} < 0.1"
            ),
            "5m",
            "warning",
            "PostgreSQL volume nearly full",
            format!(
                "{{{{ $labels.persistentvolumeclaim }}}} of {id} has less than 10% free space; a full volume stops the primary."
            ),
        ),
        alert(
            "PgclusterFailover",
            format!("sum(increase(pgcluster_failovers_total{{{sel}}}[10m])) > 0"),
            "0s",
            "warning",
            "PostgreSQL failover happened",
            format!(
                "{id} failed over to a new primary in the last 10 minutes; check why the old primary lost its lease."
            ),
        ),
    ]
}

/// Grafana dashboard model (the subset pgcluster writes).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Dashboard {
    uid: String,
    title: String,
    tags: Vec<String>,
    timezone: String,
    schema_version: u32,
    refresh: String,
    time: TimeRange,
    templating: Templating,
    panels: Vec<Panel>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct TimeRange {
    from: String,
    to: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Templating {
    list: Vec<Variable>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Variable {
    name: String,
    label: String,
    #[serde(rename = "type")]
    type_: String,
    query: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Panel {
    id: u32,
    title: String,
    #[serde(rename = "type")]
    type_: String,
    datasource: DataSourceRef,
    grid_pos: GridPos,
    field_config: FieldConfig,
    targets: Vec<Target>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct DataSourceRef {
    #[serde(rename = "type")]
    type_: String,
    uid: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct GridPos {
    h: u32,
    w: u32,
    x: u32,
    y: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct FieldConfig {
    defaults: FieldDefaults,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct FieldDefaults {
    unit: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    expr: String,
    legend_format: String,
    ref_id: String,
}

/// A panel: title, type, unit, and (PromQL, legend) per query.
type PanelSpec = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(String, &'static str)>,
);

/// 64-bit FNV-1a, for a short stable dashboard uid (Grafana allows 40 characters).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn dashboard_json(cluster: &ValidatedCluster) -> Result<String, serde_json::Error> {
    let sel = agent_matchers(cluster);
    let ns = &cluster.namespace();
    let name = cluster.name().as_str();
    let pvc = format!(r#"namespace="{ns}",persistentvolumeclaim=~"data-{name}-[0-9]+""#);
    let specs: Vec<PanelSpec> = vec![
        (
            "Instances up",
            "stat",
            "none",
            vec![(format!("pgcluster_up{{{sel}}}"), "{{pod}}")],
        ),
        (
            "Primary",
            "stat",
            "none",
            vec![(
                format!(r#"pgcluster_role{{{sel},role="primary"}} == 1"#),
                "{{pod}}",
            )],
        ),
        (
            "Replication lag (bytes)",
            "timeseries",
            "bytes",
            vec![(
                format!("pgcluster_replication_lag_bytes{{{sel}}}"),
                "{{pod}}",
            )],
        ),
        (
            "Replication lag (seconds)",
            "timeseries",
            "s",
            vec![(
                format!("pgcluster_replication_lag_seconds{{{sel}}}"),
                "{{pod}}",
            )],
        ),
        (
            "Connections",
            "timeseries",
            "none",
            vec![
                (format!("pgcluster_connections{{{sel}}}"), "{{pod}} in use"),
                (format!("pgcluster_max_connections{{{sel}}}"), "{{pod}} max"),
            ],
        ),
        (
            "Timeline and lease term",
            "timeseries",
            "none",
            vec![
                (format!("pgcluster_timeline{{{sel}}}"), "{{pod}} timeline"),
                (
                    format!("pgcluster_lease_term{{{sel}}}"),
                    "{{pod}} lease term",
                ),
            ],
        ),
        (
            "Failovers and switchovers (1h)",
            "timeseries",
            "none",
            vec![
                (
                    format!("sum(increase(pgcluster_failovers_total{{{sel}}}[1h]))"),
                    "failovers",
                ),
                (
                    format!("sum(increase(pgcluster_switchovers_total{{{sel}}}[1h]))"),
                    "switchovers",
                ),
            ],
        ),
        (
            "Volume used",
            "timeseries",
            "percentunit",
            vec![(
                format!(
                    "1 - kubelet_volume_stats_available_bytes{{{pvc}}} / kubelet_volume_stats_capacity_bytes{{{pvc}}}"
                ),
                "{{persistentvolumeclaim}}",
            )],
        ),
    ];
    let datasource = DataSourceRef {
        type_: "prometheus".to_owned(),
        uid: "${datasource}".to_owned(),
    };
    let panels = specs
        .into_iter()
        .enumerate()
        .map(|(i, (title, kind, unit, queries))| {
            let i = u32::try_from(i).unwrap_or(0);
            Panel {
                id: i + 1,
                title: title.to_owned(),
                type_: kind.to_owned(),
                datasource: datasource.clone(),
                grid_pos: GridPos {
                    h: 8,
                    w: 12,
                    x: (i % 2) * 12,
                    y: (i / 2) * 8,
                },
                field_config: FieldConfig {
                    defaults: FieldDefaults {
                        unit: unit.to_owned(),
                    },
                },
                targets: queries
                    .into_iter()
                    .zip(b'A'..)
                    .map(|((expr, legend), letter)| Target {
                        expr,
                        legend_format: legend.to_owned(),
                        ref_id: char::from(letter).to_string(),
                    })
                    .collect(),
            }
        })
        .collect();
    let dashboard = Dashboard {
        uid: format!("pgcluster-{:016x}", fnv1a(&format!("{ns}/{name}"))),
        title: format!("pgcluster {ns}/{name}"),
        tags: vec!["pgcluster".to_owned(), "postgresql".to_owned()],
        timezone: "browser".to_owned(),
        schema_version: 39,
        refresh: "30s".to_owned(),
        time: TimeRange {
            from: "now-6h".to_owned(),
            to: "now".to_owned(),
        },
        templating: Templating {
            list: vec![Variable {
                name: "datasource".to_owned(),
                label: "Data source".to_owned(),
                type_: "datasource".to_owned(),
                query: "prometheus".to_owned(),
            }],
        },
        panels,
    };
    serde_json::to_string_pretty(&dashboard).map(|s| s + "\n")
}

/// Every monitoring object the spec asks for.
pub fn monitoring(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
) -> Result<MonitoringObjects, BuildError> {
    let m = &cluster.monitoring();
    if !m.enabled {
        return Ok(MonitoringObjects::default());
    }
    let mut out = MonitoringObjects::default();
    if m.service_monitor {
        let service_meta = monitoring_meta(cluster, cluster.name().metrics_service(), owner);
        out.metrics_service = Some(Service {
            metadata: service_meta,
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".to_owned()),
                selector: Some(pod_selector_labels(cluster)),
                // Scrape instances that are not ready too: their metrics say why.
                publish_not_ready_addresses: Some(true),
                ports: Some(vec![service_port(AGENT_PORT_NAME, AGENT_PORT)]),
                ..ServiceSpec::default()
            }),
            status: None,
        });
        out.service_monitor = Some(ServiceMonitor {
            api_version: "monitoring.coreos.com/v1".to_owned(),
            kind: "ServiceMonitor".to_owned(),
            metadata: monitoring_meta(cluster, cluster.name().monitoring(), owner),
            spec: ServiceMonitorSpec {
                selector: match_labels(BTreeMap::from([
                    (LABEL_CLUSTER.to_owned(), cluster.name().as_str().to_owned()),
                    (
                        LABEL_COMPONENT.to_owned(),
                        Component::Metrics.as_str().to_owned(),
                    ),
                ])),
                namespace_selector: NamespaceSelector {
                    match_names: vec![cluster.namespace().to_string()],
                },
                endpoints: vec![ScrapeEndpoint {
                    port: AGENT_PORT_NAME.to_owned(),
                    path: "/metrics".to_owned(),
                    scheme: "http".to_owned(),
                    interval: prometheus_duration(m.interval),
                }],
            },
        });
    }
    if m.prometheus_rule {
        out.prometheus_rule = Some(PrometheusRule {
            api_version: "monitoring.coreos.com/v1".to_owned(),
            kind: "PrometheusRule".to_owned(),
            metadata: monitoring_meta(cluster, cluster.name().monitoring(), owner),
            spec: PrometheusRuleSpec {
                groups: vec![RuleGroup {
                    name: format!(
                        "pgcluster.{}.{}",
                        cluster.namespace(),
                        cluster.name().as_str()
                    ),
                    rules: alerts(cluster),
                }],
            },
        });
    }
    if m.grafana_dashboard {
        let json = dashboard_json(cluster).map_err(|source| BuildError::Dashboard {
            cluster: cluster.name().as_str().to_owned(),
            source,
        })?;
        let mut metadata = monitoring_meta(cluster, cluster.name().dashboard(), owner);
        if let Some(labels) = metadata.labels.as_mut() {
            labels.insert(GRAFANA_DASHBOARD_LABEL.to_owned(), "1".to_owned());
        }
        out.dashboard = Some(ConfigMap {
            metadata,
            data: Some(BTreeMap::from([(
                format!(
                    "pgcluster-{}-{}.json",
                    cluster.namespace(),
                    cluster.name().as_str()
                ),
                json,
            )])),
            ..ConfigMap::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations render in the form the ServiceMonitor CRD's pattern accepts.
    #[test]
    fn durations() {
        assert_eq!(prometheus_duration(Duration::from_secs(30)), "30s");
        assert_eq!(prometheus_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prometheus_duration(Duration::from_secs(120)), "2m");
        assert_eq!(prometheus_duration(Duration::from_millis(1500)), "1500ms");
    }
}
