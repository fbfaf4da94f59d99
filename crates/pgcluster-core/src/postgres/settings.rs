//! The one renderer of the PostgreSQL server settings pgcluster writes, for
//! both modes: local mode's `pgcluster.conf` (through the agent) and the
//! Kubernetes ConfigMap's `postgresql.conf`. Three sections in file order,
//! so that PostgreSQL, which takes the last line for a name, gets what each
//! means:
//!
//! 1. pgcluster's defaults, which `spec.postgres.parameters` may override;
//! 2. the user's parameters;
//! 3. the managed settings, each in [`MANAGED_PARAMETERS`] (validation
//!    refuses them in the spec, a test checks both directions).
//!
//! What differs between an instance in local mode and one in a pod is its
//! [`Placement`]. Settings that differ between the instances of one cluster
//! at runtime (`cluster_name`, `synchronous_standby_names`,
//! `primary_conninfo`, `primary_slot_name`) are the agent's, not here.
//!
//! [`MANAGED_PARAMETERS`]: super::params::MANAGED_PARAMETERS

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Where one server listens and finds its files: what differs between local
/// mode and a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// TCP port.
    pub port: u16,
    /// `listen_addresses` (local mode `127.0.0.1`; a pod `*`).
    pub listen_addresses: String,
    /// The Unix socket's directory.
    pub unix_socket_directories: String,
    /// `hba_file` when pg_hba.conf is not the data directory's (a pod: the
    /// ConfigMap's).
    pub hba_file: Option<String>,
    /// A `log_line_prefix` default (a pod: the server log shares the
    /// container's stderr with the agent's JSON lines, so its lines are
    /// tagged `postgres[<pid>]:`).
    pub log_line_prefix: Option<String>,
}

impl Placement {
    /// A local-mode server: loopback only, PostgreSQL's own log format.
    pub fn local(port: u16, unix_socket_directories: &str) -> Self {
        Self {
            port,
            listen_addresses: "127.0.0.1".to_owned(),
            unix_socket_directories: unix_socket_directories.to_owned(),
            hba_file: None,
            log_line_prefix: None,
        }
    }
}

/// One `name = value` line.
pub type Setting = (String, String);

/// The three sections (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// pgcluster's defaults.
    pub defaults: Vec<Setting>,
    /// `spec.postgres.parameters`.
    pub user: Vec<Setting>,
    /// Managed by pgcluster.
    pub managed: Vec<Setting>,
}

fn setting(name: &str, value: impl Into<String>) -> Setting {
    (name.to_owned(), value.into())
}

/// The server settings of an instance of a cluster of `instances` with the
/// user's `parameters`, placed as `placement`.
pub fn server_settings(
    instances: u32,
    parameters: &BTreeMap<String, String>,
    placement: &Placement,
) -> ServerSettings {
    let mut defaults = vec![
        setting("max_connections", "100"),
        // A standby whose connection attempt failed (its new primary still
        // starting) retries after this; PostgreSQL's 5 s default showed up
        // whole in sync-mode write windows.
        setting("wal_retrieve_retry_interval", "500ms"),
        // An idle standby's replies (which release commits waiting for it)
        // come at least this often; PostgreSQL's default is 10 s.
        setting("wal_receiver_status_interval", "1s"),
    ];
    if let Some(prefix) = &placement.log_line_prefix {
        defaults.push(setting("log_line_prefix", prefix.clone()));
    }
    let mut managed = vec![
        setting("port", placement.port.to_string()),
        setting("listen_addresses", placement.listen_addresses.clone()),
        setting(
            "unix_socket_directories",
            placement.unix_socket_directories.clone(),
        ),
    ];
    if let Some(hba) = &placement.hba_file {
        managed.push(setting("hba_file", hba.clone()));
    }
    managed.extend([
        setting("wal_level", "replica"),
        setting("hot_standby", "on"),
        setting("hot_standby_feedback", "on"),
        setting("wal_log_hints", "on"),
        setting("full_page_writes", "on"),
        // Every replica streams, plus room for base backups (two senders
        // each) of re-joining members; never below 10.
        setting("max_wal_senders", (2 * instances + 2).max(10).to_string()),
        setting("max_replication_slots", (instances + 2).max(10).to_string()),
        // How much WAL a dead replica's slot may pin before it is
        // invalidated, so it cannot fill the disk.
        setting("max_slot_wal_keep_size", "2GB"),
        // WAL kept regardless of slots, so that a diverged old primary can
        // still be rewound (pg_rewind reads its own WAL back to the last
        // common checkpoint).
        setting("wal_keep_size", "512MB"),
        setting("password_encryption", "scram-sha-256"),
        setting("logging_collector", "off"),
        setting("archive_mode", "off"),
        setting("synchronous_commit", "on"),
    ]);
    ServerSettings {
        defaults,
        user: parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        managed,
    }
}

impl ServerSettings {
    /// Every line in file order.
    pub fn lines(&self) -> Vec<Setting> {
        self.defaults
            .iter()
            .chain(&self.user)
            .chain(&self.managed)
            .cloned()
            .collect()
    }

    /// The file text under `header` (a comment line), one section each.
    pub fn render(&self, header: &str) -> String {
        let mut out = format!("# {header}\n");
        for (title, section) in [
            (
                "defaults (spec.postgres.parameters may override them)",
                &self.defaults,
            ),
            ("spec.postgres.parameters", &self.user),
            (
                "managed by pgcluster (see MANAGED_PARAMETERS for why)",
                &self.managed,
            ),
        ] {
            let _ = writeln!(out, "# {title}");
            out.push_str(&render_lines(section));
        }
        out
    }
}

/// `name = 'value'` lines.
pub fn render_lines(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|(name, value)| format!("{name} = {}\n", quote(value)))
        .collect()
}

/// Quotes a configuration value (single quotes doubled).
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::params::MANAGED_PARAMETERS;

    fn managed(name: &str) -> bool {
        MANAGED_PARAMETERS.iter().any(|p| {
            p.name == name
                || p.name
                    .strip_suffix('*')
                    .is_some_and(|pre| name.starts_with(pre))
        })
    }

    fn pod() -> Placement {
        Placement {
            port: 5432,
            listen_addresses: "*".into(),
            unix_socket_directories: "/run/pg".into(),
            hba_file: Some("/etc/pgcluster/pg_hba.conf".into()),
            log_line_prefix: Some("%m postgres[%p]: ".into()),
        }
    }

    /// Every managed line is in the one table, and no default is (users may
    /// override every default).
    #[test]
    fn sections_follow_the_parameter_table() {
        for placement in [Placement::local(5433, "/run/pg"), pod()] {
            let s = server_settings(3, &BTreeMap::new(), &placement);
            for (name, _) in &s.managed {
                assert!(
                    managed(name),
                    "{name} is rendered as managed but not in the table"
                );
            }
            for (name, _) in &s.defaults {
                assert!(
                    !managed(name),
                    "{name} is a default but managed: users could not set it"
                );
            }
        }
    }

    /// A user's value for a default comes later, so PostgreSQL uses it.
    #[test]
    fn the_users_value_wins_over_a_default() {
        let user = BTreeMap::from([
            ("wal_retrieve_retry_interval".to_owned(), "7s".to_owned()),
            ("log_line_prefix".to_owned(), "%m [%p] ".to_owned()),
        ]);
        let text = server_settings(2, &user, &pod()).render("test");
        for (name, value) in &user {
            let last = text.lines().rfind(|l| l.starts_with(&format!("{name} = ")));
            assert_eq!(
                last,
                Some(format!("{name} = {}", quote(value)).as_str()),
                "{text}"
            );
        }
    }

    /// The placement decides where the server listens; the cluster size
    /// the senders and slots (never below 10).
    #[test]
    fn placement_and_size_shape_the_managed_lines() {
        let local = server_settings(2, &BTreeMap::new(), &Placement::local(5433, "/run/pg"));
        let lines = render_lines(&local.lines());
        assert!(lines.contains("port = '5433'\n"));
        assert!(lines.contains("listen_addresses = '127.0.0.1'\n"));
        assert!(lines.contains("max_wal_senders = '10'\n"));
        assert!(!lines.contains("hba_file") && !lines.contains("log_line_prefix"));
        let big = render_lines(&server_settings(9, &BTreeMap::new(), &pod()).lines());
        assert!(big.contains("listen_addresses = '*'\n"));
        assert!(big.contains("hba_file = '/etc/pgcluster/pg_hba.conf'\n"));
        assert!(big.contains("max_wal_senders = '20'\n"));
        assert!(big.contains("max_replication_slots = '11'\n"));
    }

    /// Quotes inside values are doubled.
    #[test]
    fn values_are_quoted() {
        assert_eq!(quote("128MB"), "'128MB'");
        assert_eq!(quote("it's"), "'it''s'");
    }
}
