//! The ServiceMonitor that scrapes every agent (prometheus-operator's
//! monitoring.coreos.com/v1, as a small typed struct).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

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
