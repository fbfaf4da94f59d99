//! Monitoring (when `spec.monitoring.enabled`): a metrics Service, a
//! ServiceMonitor scraping the agents, a PrometheusRule with pgcluster's
//! alerts and a Grafana dashboard ConfigMap (label `grafana_dashboard: "1"`,
//! picked up by the Grafana sidecar of kube-prometheus-stack).
//!
//! The custom resources are small typed structs (no `json!`), checked against
//! the upstream CRDs by the golden test: `scrape` (the ServiceMonitor),
//! `rules` (the alerts), `dashboard` (Grafana); this file assembles them.
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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use pgcluster_core::ValidatedCluster;

use super::labels::{
    Component, LABEL_CLUSTER, LABEL_COMPONENT, match_labels, meta, pod_selector_labels,
};
use super::services::service_port;
use super::{BuildError, K8sNames, METRICS_PORT, METRICS_PORT_NAME};

/// Label the Grafana sidecar looks for.
pub const GRAFANA_DASHBOARD_LABEL: &str = "grafana_dashboard";

mod dashboard;
mod rules;
mod scrape;

pub use rules::{AlertRule, PrometheusRule, PrometheusRuleSpec, RuleGroup, alerts};
pub use scrape::{NamespaceSelector, ScrapeEndpoint, ServiceMonitor, ServiceMonitorSpec};

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
                ports: Some(vec![service_port(METRICS_PORT_NAME, METRICS_PORT)]),
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
                    port: METRICS_PORT_NAME.to_owned(),
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
        let json = dashboard::dashboard_json(cluster).map_err(|source| BuildError::Dashboard {
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
