//! The ConfigMap `<name>-config`: `postgresql.conf` (core's one renderer of
//! the server settings, placed for a pod),
//! `pg_hba.conf` (rendered by the core access model) and `cluster.yaml`, the
//! resolved spec the agents validate at start into the same
//! `ValidatedCluster` as every other consumer (no spec in environment
//! variables). The agent includes
//! `postgresql.conf` from PGDATA and sets the per-instance managed parameters
//! (`primary_conninfo`, `synchronous_standby_names`, `cluster_name`, ...)
//! itself at runtime.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::postgres::settings::{self, Placement};

use super::POSTGRES_PORT;
use super::labels::{Component, meta};
use super::statefulset::{CONFIG_MOUNT, SOCKET_DIR};

/// Key of postgresql.conf in the ConfigMap.
pub const POSTGRESQL_CONF: &str = "postgresql.conf";
/// Key of pg_hba.conf in the ConfigMap.
pub const PG_HBA_CONF: &str = "pg_hba.conf";
/// Key of the resolved spec in the ConfigMap (see the module docs).
pub const CLUSTER_SPEC: &str = "cluster.yaml";

/// Where a pod's server listens and finds its files.
pub fn pod_placement() -> Placement {
    Placement {
        port: u16::try_from(POSTGRES_PORT).expect("the PostgreSQL port is a constant below 65536"),
        listen_addresses: "*".to_owned(),
        unix_socket_directories: SOCKET_DIR.to_owned(),
        hba_file: Some(format!("{CONFIG_MOUNT}/{PG_HBA_CONF}")),
        // The server log shares `kubectl logs` with the agent's JSON lines: a
        // syslog-like `postgres[pid]:` tag tells its lines apart (and greps),
        // and `user@database` names a session's messages.
        log_line_prefix: Some("%m postgres[%p]: %q%u@%d ".to_owned()),
    }
}

/// postgresql.conf: core's one renderer of the server settings
/// ([`pgcluster_core::postgres::settings`]) for a pod.
pub fn postgresql_conf(cluster: &ValidatedCluster) -> String {
    settings::server_settings(
        cluster.instances(),
        &cluster.postgres().parameters,
        &pod_placement(),
    )
    .render("Rendered by pgcluster from the PostgresCluster spec; do not edit.")
}

/// The ConfigMap `<name>-config`.
pub fn config_map(cluster: &ValidatedCluster, owner: Option<&OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: meta(
            cluster,
            cluster.name().config_map(),
            Component::Config,
            owner,
        ),
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

    /// A pod's server listens on every address, reads the ConfigMap's
    /// pg_hba.conf and tags its log lines; the user's parameters and the
    /// cluster size arrive.
    #[test]
    fn a_pods_settings() {
        let cluster = crate::testing::spec("db", 4)
            .with_spec(|spec| {
                let postgres = spec.postgres.get_or_insert_default();
                postgres.parameters.insert("work_mem".into(), "8MB".into());
            })
            .validated();
        let conf = postgresql_conf(&cluster);
        for line in [
            "listen_addresses = '*'",
            "port = '5432'",
            "hba_file = '/etc/pgcluster/pg_hba.conf'",
            "log_line_prefix = '%m postgres[%p]: %q%u@%d '",
            "work_mem = '8MB'",
            "max_wal_senders = '10'",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
    }
}
