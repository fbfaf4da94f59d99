use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prometheus and Grafana integration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Whether monitoring objects are rendered at all (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Namespace Prometheus runs in; it is allowed to scrape the agents (default `monitoring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Render a ServiceMonitor (default true when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<bool>,
    /// Render a PrometheusRule with pgcluster's alerts (default true when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_rule: Option<bool>,
    /// Render a Grafana dashboard ConfigMap (default true when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_dashboard: Option<bool>,
    /// Extra labels on the monitoring objects, e.g. `release: kube-prometheus-stack`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}
