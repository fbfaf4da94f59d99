//! The ConfigMap `<name>-config`: `postgresql.conf` (pgcluster's defaults,
//! the user's parameters, then the static parameters pgcluster manages),
//! `pg_hba.conf` (rendered by the core access model) and `cluster.yaml`, the
//! resolved spec the agents validate at start into the same
//! `ValidatedCluster` as every other consumer (no spec in environment
//! variables). The agent includes
//! `postgresql.conf` from PGDATA and sets the per-instance managed parameters
//! (`primary_conninfo`, `synchronous_standby_names`, `cluster_name`, ...)
//! itself at runtime.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use pgcluster_core::ValidatedCluster;

use super::POSTGRES_PORT;
use super::labels::{Component, meta};
use super::statefulset::{CONFIG_MOUNT, SOCKET_DIR};

/// Key of postgresql.conf in the ConfigMap.
pub const POSTGRESQL_CONF: &str = "postgresql.conf";
/// Key of pg_hba.conf in the ConfigMap.
pub const PG_HBA_CONF: &str = "pg_hba.conf";
/// Key of the resolved spec in the ConfigMap (see the module docs).
pub const CLUSTER_SPEC: &str = "cluster.yaml";

/// The managed parameters that are the same on every instance, with their
/// values. Every name here is in core's `MANAGED_PARAMETERS` table (a test checks it).
pub fn static_managed_parameters(cluster: &ValidatedCluster) -> BTreeMap<&'static str, String> {
    let quoted = |s: &str| format!("'{s}'");
    BTreeMap::from([
        ("listen_addresses", quoted("*")),
        ("port", POSTGRES_PORT.to_string()),
        ("unix_socket_directories", quoted(SOCKET_DIR)),
        ("hba_file", quoted(&format!("{CONFIG_MOUNT}/{PG_HBA_CONF}"))),
        ("wal_level", "replica".to_owned()),
        ("hot_standby", "on".to_owned()),
        // every replica streams, plus room for base backups (two senders each) of re-joining members
        ("max_wal_senders", (2 * cluster.instances + 2).to_string()),
        ("max_replication_slots", (cluster.instances + 2).to_string()),
        ("wal_log_hints", "on".to_owned()),
        ("full_page_writes", "on".to_owned()),
        ("password_encryption", quoted("scram-sha-256")),
        ("logging_collector", "off".to_owned()),
        ("archive_mode", "off".to_owned()),
        ("synchronous_commit", "on".to_owned()),
    ])
}

/// Parameters pgcluster sets on every instance that users may still change:
/// they come before `spec.postgres.parameters`, so a user's value wins. None
/// is in core's `MANAGED_PARAMETERS` (a test checks it), which would forbid that.
pub fn default_parameters() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        // The server log shares `kubectl logs` with the agent's JSON lines: a
        // syslog-like `postgres[pid]:` tag tells its lines apart (and greps),
        // and `user@database` names a session's messages.
        ("log_line_prefix", "'%m postgres[%p]: %q%u@%d '".to_owned()),
    ])
}

fn quote_value(value: &str) -> String {
    // Quote everything but plain numbers/identifiers; double single quotes inside.
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// postgresql.conf: pgcluster's defaults, the user's parameters, then the
/// managed ones (later lines win).
pub fn postgresql_conf(cluster: &ValidatedCluster) -> String {
    let mut out = String::from(
        "# Rendered by pgcluster from the PostgresCluster spec; do not edit.\n# defaults (spec.postgres.parameters may override them)\n",
    );
    for (name, value) in default_parameters() {
        let _ = writeln!(out, "{name} = {value}");
    }
    out.push_str("# spec.postgres.parameters\n");
    for (name, value) in &cluster.postgres.parameters {
        let _ = writeln!(out, "{name} = {}", quote_value(value));
    }
    out.push_str("# managed by pgcluster (see MANAGED_PARAMETERS for why)\n");
    for (name, value) in static_managed_parameters(cluster) {
        let _ = writeln!(out, "{name} = {value}");
    }
    out
}

/// The ConfigMap `<name>-config`.
pub fn config_map(cluster: &ValidatedCluster, owner: Option<&OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: meta(cluster, cluster.name.config_map(), Component::Config, owner),
        data: Some(BTreeMap::from([
            (POSTGRESQL_CONF.to_owned(), postgresql_conf(cluster)),
            (PG_HBA_CONF.to_owned(), cluster.pg_hba()),
            (CLUSTER_SPEC.to_owned(), cluster.resolved_yaml()),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgcluster_core::postgres::params::MANAGED_PARAMETERS;

    /// The renderer only sets parameters the core table says pgcluster manages.
    #[test]
    fn managed_values_come_from_the_table() {
        let cluster = crate::testing::cluster("db", 2);
        for name in static_managed_parameters(&cluster).keys() {
            assert!(
                MANAGED_PARAMETERS.iter().any(|p| p.name == *name),
                "{name} is not in MANAGED_PARAMETERS"
            );
        }
    }

    /// Users may override every default: none is a managed parameter, and
    /// the user's line comes after the default's (PostgreSQL takes the last).
    #[test]
    fn defaults_are_overridable() {
        for name in default_parameters().keys() {
            assert!(
                MANAGED_PARAMETERS.iter().all(|p| p.name != *name),
                "{name} is a default but also managed, so users could not set it"
            );
        }
        let mut cluster = crate::testing::cluster("db", 2);
        cluster
            .postgres
            .parameters
            .insert("log_line_prefix".into(), "%m [%p] ".into());
        let conf = postgresql_conf(&cluster);
        let last = conf.lines().rfind(|l| l.starts_with("log_line_prefix = "));
        assert_eq!(last, Some("log_line_prefix = '%m [%p] '"), "{conf}");
    }

    /// Values with spaces or quotes are quoted safely.
    #[test]
    fn values_are_quoted() {
        assert_eq!(quote_value("128MB"), "128MB");
        assert_eq!(quote_value("a b"), "'a b'");
        assert_eq!(quote_value("it's"), "'it''s'");
    }
}
