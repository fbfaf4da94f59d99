//! The Grafana dashboard (a ConfigMap the Grafana sidecar picks up).

use pgcluster_core::ValidatedCluster;
use serde::Serialize;

use super::agent_matchers;

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

pub(super) fn dashboard_json(cluster: &ValidatedCluster) -> Result<String, serde_json::Error> {
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
