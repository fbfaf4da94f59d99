//! The PrometheusRule with pgcluster's alerts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pgcluster_core::ValidatedCluster;
use serde::Serialize;

use super::agent_matchers;

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
