//! `GET /metrics`: the agent's status in the OpenMetrics text format, encoded
//! by `prometheus-client` (as the controller's). Rendering is a pure
//! function of [`AgentStatus`]: a registry of constant metrics built per
//! scrape (scrapes are rare; the agent keeps no metric state of its own).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::status::AgentStatus;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The role label of `pgcluster_role`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

/// The exposition of `status`; every series carries the cluster and member
/// labels. Their values are validated DNS-1123 names (the cluster's and its
/// pods'), which need no escaping; prometheus-client does not escape.
pub fn render(status: &AgentStatus) -> String {
    let mut registry = Registry::with_labels(
        [
            ("cluster".into(), status.cluster.clone().into()),
            ("member".into(), status.member.clone().into()),
        ]
        .into_iter(),
    );
    let role = Family::<RoleLabel, Gauge>::default();
    role.get_or_create(&RoleLabel {
        role: status.role.clone(),
    })
    .set(1);
    registry.register(
        "pgcluster_role",
        "The member's current role (label role); always 1",
        role,
    );
    let gauges: [(&str, &str, i64); 6] = [
        (
            "pgcluster_up",
            "1 when PostgreSQL runs and serves its role",
            i64::from(status.running && status.ready),
        ),
        (
            "pgcluster_replication_lag_bytes",
            "Bytes this member is behind the primary's last published WAL position",
            i64::try_from(status.lag_bytes).unwrap_or(i64::MAX),
        ),
        (
            "pgcluster_timeline",
            "The PostgreSQL timeline this member runs on",
            i64::from(status.timeline),
        ),
        (
            "pgcluster_lease_term",
            "The leader lease's term as last read",
            i64::try_from(status.lease_term).unwrap_or(i64::MAX),
        ),
        (
            "pgcluster_connections",
            "Client connections in use",
            i64::from(status.connections),
        ),
        (
            "pgcluster_max_connections",
            "PostgreSQL max_connections",
            i64::from(status.max_connections),
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, ConstGauge::new(value));
    }
    // Registered without the `_total` suffix: OpenMetrics adds it to counters.
    let counters: [(&str, &str, u64); 3] = [
        (
            "pgcluster_failovers",
            "Promotions of this member after the lease expired",
            status.failovers_total,
        ),
        (
            "pgcluster_switchovers",
            "Promotions of this member after a switchover hand-over",
            status.switchovers_total,
        ),
        (
            "pgcluster_watchdog_fired",
            "Times the watchdog fenced PostgreSQL because the agent missed its deadline",
            status.watchdog_fired,
        ),
    ];
    for (name, help, value) in counters {
        registry.register(name, help, ConstCounter::new(value));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("encoding into a String cannot fail: String's fmt::Write never errors");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the dashboards and alert rules use is exported with the
    /// cluster and member labels, in a format Prometheus parses (values
    /// checked by sample name, as PromQL sees them).
    #[test]
    fn exports_every_metric() {
        let status = AgentStatus {
            cluster: "demo".into(),
            member: "demo-0".into(),
            role: "primary".into(),
            running: true,
            ready: true,
            timeline: 3,
            failovers_total: 2,
            ..Default::default()
        };
        let text = render(&status);
        let sample = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
                .to_owned()
        };
        for name in [
            "pgcluster_up",
            "pgcluster_replication_lag_bytes",
            "pgcluster_timeline",
            "pgcluster_lease_term",
            "pgcluster_failovers_total",
            "pgcluster_switchovers_total",
            "pgcluster_connections",
            "pgcluster_max_connections",
            "pgcluster_watchdog_fired_total",
        ] {
            let line = sample(name);
            assert!(
                line.contains("cluster=\"demo\"") && line.contains("member=\"demo-0\""),
                "{line}"
            );
        }
        assert!(sample("pgcluster_role").contains("role=\"primary\""));
        assert!(sample("pgcluster_role").ends_with(" 1"));
        assert!(sample("pgcluster_timeline").ends_with(" 3"));
        assert!(sample("pgcluster_failovers_total").ends_with(" 2"));
        assert!(text.contains("# TYPE pgcluster_failovers counter"));
        assert!(text.ends_with("# EOF\n"));
    }
}
