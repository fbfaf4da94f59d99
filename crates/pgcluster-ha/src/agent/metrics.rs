//! `GET /metrics`: the agent's status in the Prometheus text format (0.0.4).
//! Rendering is a pure function of [`AgentStatus`].

use std::fmt::Write as _;

use super::status::AgentStatus;

/// The Prometheus text exposition of `status`.
pub fn render(status: &AgentStatus) -> String {
    let labels = format!(
        "cluster=\"{}\",member=\"{}\"",
        escape(&status.cluster),
        escape(&status.member)
    );
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, extra: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{{labels}{extra}}} {value}");
    };
    let role_extra = format!(",role=\"{}\"", escape(&status.role));
    gauge(
        "pgcluster_role",
        "The member's current role (label role); always 1.",
        "gauge",
        &role_extra,
        1.0,
    );
    gauge(
        "pgcluster_up",
        "1 when PostgreSQL runs and serves its role.",
        "gauge",
        "",
        f64::from(u8::from(status.running && status.ready)),
    );
    gauge(
        "pgcluster_replication_lag_bytes",
        "Bytes this member is behind the primary's last published WAL position.",
        "gauge",
        "",
        status.lag_bytes as f64,
    );
    gauge(
        "pgcluster_timeline",
        "The PostgreSQL timeline this member runs on.",
        "gauge",
        "",
        f64::from(status.timeline),
    );
    gauge(
        "pgcluster_lease_term",
        "The leader lease's term as last read.",
        "gauge",
        "",
        status.lease_term as f64,
    );
    gauge(
        "pgcluster_failovers_total",
        "Promotions of this member after the lease expired.",
        "counter",
        "",
        status.failovers_total as f64,
    );
    gauge(
        "pgcluster_switchovers_total",
        "Promotions of this member after a switchover hand-over.",
        "counter",
        "",
        status.switchovers_total as f64,
    );
    gauge(
        "pgcluster_connections",
        "Client connections in use.",
        "gauge",
        "",
        f64::from(status.connections),
    );
    gauge(
        "pgcluster_max_connections",
        "PostgreSQL max_connections.",
        "gauge",
        "",
        f64::from(status.max_connections),
    );
    gauge(
        "pgcluster_watchdog_fired_total",
        "Times the watchdog fenced PostgreSQL because the agent missed its deadline.",
        "counter",
        "",
        status.watchdog_fired as f64,
    );
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the dashboards and alert rules use is exported with the
    /// cluster and member labels.
    #[test]
    fn exports_every_metric() {
        let status = AgentStatus {
            cluster: "demo".into(),
            member: "demo-0".into(),
            role: "primary".into(),
            running: true,
            ready: true,
            timeline: 3,
            ..Default::default()
        };
        let text = render(&status);
        for name in [
            "pgcluster_role",
            "pgcluster_up",
            "pgcluster_replication_lag_bytes",
            "pgcluster_timeline",
            "pgcluster_lease_term",
            "pgcluster_failovers_total",
            "pgcluster_switchovers_total",
            "pgcluster_connections",
            "pgcluster_max_connections",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(
            text.contains("pgcluster_role{cluster=\"demo\",member=\"demo-0\",role=\"primary\"} 1")
        );
        assert!(text.contains("pgcluster_timeline{cluster=\"demo\",member=\"demo-0\"} 3"));
    }
}
