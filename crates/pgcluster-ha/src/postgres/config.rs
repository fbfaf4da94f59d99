//! The configuration pgcluster manages: `pgcluster.conf` (included from
//! `postgresql.conf`), `pg_hba.conf` and `standby.signal`. Rendering is pure;
//! [`Instance::write_config`] is the only function here that touches files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::PgError;
use super::instance::Instance;

/// The file pgcluster owns inside the data directory.
pub const MANAGED_FILE: &str = "pgcluster.conf";
/// The line that includes it, appended once to `postgresql.conf`.
const INCLUDE_LINE: &str = "include_if_exists = 'pgcluster.conf'\t# managed by pgcluster";

/// Streaming settings of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbySettings {
    /// libpq conninfo of the primary (see [`Instance::conninfo`]).
    pub primary_conninfo: String,
    /// The physical slot on the primary reserved for us.
    pub primary_slot_name: Option<String>,
}

/// Every parameter pgcluster sets; rendered into `pgcluster.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedConfig {
    /// TCP port.
    pub port: u16,
    /// `listen_addresses` (local mode: `127.0.0.1`).
    pub listen_addresses: String,
    /// Where the Unix socket lives.
    pub unix_socket_directories: PathBuf,
    /// `cluster_name` (shows in `ps` and logs).
    pub cluster_name: String,
    /// `max_connections`.
    pub max_connections: u32,
    /// `max_wal_senders`.
    pub max_wal_senders: u32,
    /// `max_replication_slots`.
    pub max_replication_slots: u32,
    /// `max_slot_wal_keep_size`: how much WAL a dead replica's slot may pin
    /// before the slot is invalidated, so it cannot fill the disk (e.g. `2GB`).
    pub max_slot_wal_keep_size: String,
    /// `wal_keep_size`: WAL kept regardless of slots, so that a diverged
    /// old primary can still be rewound (pg_rewind reads its own WAL back
    /// to the last common checkpoint).
    pub wal_keep_size: String,
    /// `synchronous_standby_names` (empty: asynchronous).
    pub synchronous_standby_names: String,
    /// `Some` on a replica: primary_conninfo, primary_slot_name and a
    /// `standby.signal` file.
    pub standby: Option<StandbySettings>,
    /// User parameters (already validated against the managed-parameter table).
    pub extra: BTreeMap<String, String>,
}

impl ManagedConfig {
    /// Defaults for a local-mode instance on `port`.
    pub fn local(port: u16, unix_socket_directories: PathBuf, cluster_name: &str) -> Self {
        Self {
            port,
            listen_addresses: "127.0.0.1".to_owned(),
            unix_socket_directories,
            cluster_name: cluster_name.to_owned(),
            max_connections: 100,
            max_wal_senders: 10,
            max_replication_slots: 10,
            max_slot_wal_keep_size: "2GB".to_owned(),
            wal_keep_size: "512MB".to_owned(),
            synchronous_standby_names: String::new(),
            standby: None,
            extra: BTreeMap::new(),
        }
    }

    /// The parameters in file order (fixed ones first, then `extra`).
    pub fn parameters(&self) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("port", self.port.to_string()),
            ("listen_addresses", self.listen_addresses.clone()),
            (
                "unix_socket_directories",
                self.unix_socket_directories.display().to_string(),
            ),
            ("cluster_name", self.cluster_name.clone()),
            ("max_connections", self.max_connections.to_string()),
            ("wal_level", "replica".to_owned()),
            ("hot_standby", "on".to_owned()),
            ("wal_log_hints", "on".to_owned()),
            ("max_wal_senders", self.max_wal_senders.to_string()),
            (
                "max_replication_slots",
                self.max_replication_slots.to_string(),
            ),
            (
                "max_slot_wal_keep_size",
                self.max_slot_wal_keep_size.clone(),
            ),
            ("wal_keep_size", self.wal_keep_size.clone()),
            ("hot_standby_feedback", "on".to_owned()),
            // A standby whose connection attempt failed (its new primary
            // still starting) retries after this; PostgreSQL's 5 s default
            // showed up whole in sync-mode write windows. Users may override.
            ("wal_retrieve_retry_interval", "500ms".to_owned()),
            // An idle standby's replies (which release commits waiting for
            // it) come at least this often; PostgreSQL's default is 10 s.
            ("wal_receiver_status_interval", "1s".to_owned()),
            (
                "synchronous_standby_names",
                self.synchronous_standby_names.clone(),
            ),
            ("logging_collector", "off".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let standby = self.standby.as_ref();
        params.push((
            "primary_conninfo".into(),
            standby
                .map(|s| s.primary_conninfo.clone())
                .unwrap_or_default(),
        ));
        params.push((
            "primary_slot_name".into(),
            standby
                .and_then(|s| s.primary_slot_name.clone())
                .unwrap_or_default(),
        ));
        params.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        params
    }

    /// The text of `pgcluster.conf`.
    pub fn render(&self) -> String {
        let mut out = String::from("# Managed by pgcluster: changes here are overwritten.\n");
        for (name, value) in self.parameters() {
            out.push_str(&format!("{name} = {}\n", quote(&value)));
        }
        out
    }
}

/// Quotes a configuration value (single quotes doubled).
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Authentication methods pgcluster writes into pg_hba.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `scram-sha-256`.
    ScramSha256,
    /// `peer` (Unix socket only).
    Peer,
}

impl AuthMethod {
    /// The pg_hba.conf keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::ScramSha256 => "scram-sha-256",
            Self::Peer => "peer",
        }
    }
}

/// One line of pg_hba.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HbaRule {
    /// A Unix-socket connection.
    Local {
        /// Database (`all`, `replication`, a name).
        database: String,
        /// Role (`all` or a name).
        user: String,
        /// Method.
        method: AuthMethod,
    },
    /// A TCP connection from `cidr`.
    Host {
        /// Database (`all`, `replication`, a name).
        database: String,
        /// Role (`all` or a name).
        user: String,
        /// Client address range (`127.0.0.1/32`).
        cidr: String,
        /// Method.
        method: AuthMethod,
    },
}

/// pg_hba for local mode: `local_method` on the socket, scram-sha-256 for
/// every database and for replication from 127.0.0.1 only. Nothing else.
pub fn local_mode_hba(local_method: AuthMethod) -> Vec<HbaRule> {
    let host = |database: &str| HbaRule::Host {
        database: database.to_owned(),
        user: "all".to_owned(),
        cidr: "127.0.0.1/32".to_owned(),
        method: AuthMethod::ScramSha256,
    };
    vec![
        HbaRule::Local {
            database: "all".to_owned(),
            user: "all".to_owned(),
            method: local_method,
        },
        host("all"),
        host("replication"),
    ]
}

/// The text of pg_hba.conf for `rules`, in order.
pub fn render_hba(rules: &[HbaRule]) -> String {
    let mut out = String::from("# Managed by pgcluster: changes here are overwritten.\n");
    for rule in rules {
        let line = match rule {
            HbaRule::Local {
                database,
                user,
                method,
            } => format!("local\t{database}\t{user}\t\t{}", method.keyword()),
            HbaRule::Host {
                database,
                user,
                cidr,
                method,
            } => format!("host\t{database}\t{user}\t{cidr}\t{}", method.keyword()),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `postgresql.auto.conf` without lines setting any of `managed` (ALTER
/// SYSTEM values would override pgcluster.conf, and base backups and
/// pg_rewind copy the source's file).
pub fn strip_managed(auto_conf: &str, managed: &[String]) -> String {
    auto_conf
        .lines()
        .filter(|line| {
            let name = line.split('=').next().unwrap_or("").trim();
            !managed.iter().any(|m| m.eq_ignore_ascii_case(name))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `postgresql.conf` with the include line appended if missing.
pub fn with_include(postgresql_conf: &str) -> Option<String> {
    if postgresql_conf.lines().any(|l| l.trim() == INCLUDE_LINE) {
        return None;
    }
    let mut text = postgresql_conf.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(INCLUDE_LINE);
    text.push('\n');
    Some(text)
}

impl Instance {
    /// Writes pgcluster.conf, the include line, pg_hba.conf and
    /// standby.signal (present exactly when `config.standby` is set), and
    /// removes managed parameters from postgresql.auto.conf. Takes effect at
    /// the next start (or reload for reloadable parameters).
    pub fn write_config(&self, config: &ManagedConfig, hba: &[HbaRule]) -> Result<(), PgError> {
        let data = &self.layout.data_dir;
        let user = &self.os_user;
        user.write_file(&data.join(MANAGED_FILE), config.render().as_bytes(), 0o600)?;
        let conf_path = data.join("postgresql.conf");
        let conf = read_to_string(&conf_path)?;
        if let Some(updated) = with_include(&conf) {
            user.write_file(&conf_path, updated.as_bytes(), 0o600)?;
        }
        user.write_file(&data.join("pg_hba.conf"), render_hba(hba).as_bytes(), 0o600)?;
        let auto_path = data.join("postgresql.auto.conf");
        if auto_path.exists() {
            let managed: Vec<String> = config.parameters().into_iter().map(|(k, _)| k).collect();
            let auto = read_to_string(&auto_path)?;
            let stripped = strip_managed(&auto, &managed);
            if stripped != auto {
                user.write_file(&auto_path, stripped.as_bytes(), 0o600)?;
            }
        }
        let signal = data.join("standby.signal");
        match (&config.standby, signal.exists()) {
            (Some(_), false) => user.write_file(&signal, b"", 0o600),
            (None, true) => {
                std::fs::remove_file(&signal).map_err(|e| PgError::io("remove", &signal, e))
            }
            _ => Ok(()),
        }
    }
}

fn read_to_string(path: &std::path::Path) -> Result<String, PgError> {
    std::fs::read_to_string(path).map_err(|e| PgError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ManagedConfig {
        ManagedConfig::local(5433, PathBuf::from("/run/pg"), "demo")
    }

    /// pgcluster.conf sets every parameter the HA logic depends on.
    #[test]
    fn renders_ha_parameters() {
        let text = sample().render();
        for line in [
            "port = '5433'",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = '/run/pg'",
            "wal_level = 'replica'",
            "hot_standby = 'on'",
            "wal_log_hints = 'on'",
            "max_slot_wal_keep_size = '2GB'",
            "wal_retrieve_retry_interval = '500ms'",
            "wal_receiver_status_interval = '1s'",
            "synchronous_standby_names = ''",
            "primary_conninfo = ''",
            "cluster_name = 'demo'",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// The retry and status intervals are defaults, not managed: validation
    /// accepts them in `spec.postgres.parameters`, and the user's line comes
    /// later, so PostgreSQL (which takes the last) uses it.
    #[test]
    fn retry_and_status_intervals_are_overridable() {
        use pgcluster_core::postgres::params::MANAGED_PARAMETERS;
        let mut config = sample();
        for name in [
            "wal_retrieve_retry_interval",
            "wal_receiver_status_interval",
        ] {
            assert!(
                MANAGED_PARAMETERS.iter().all(|p| p.name != name),
                "{name} is managed, so users could not set it"
            );
            config.extra.insert(name.to_owned(), "7s".to_owned());
        }
        let text = config.render();
        for name in [
            "wal_retrieve_retry_interval",
            "wal_receiver_status_interval",
        ] {
            let last = text.lines().rfind(|l| l.starts_with(&format!("{name} = ")));
            assert_eq!(last, Some(format!("{name} = '7s'").as_str()), "{text}");
        }
    }

    /// A replica gets its conninfo and slot; quotes inside values are doubled.
    #[test]
    fn renders_standby_settings_quoted() {
        let mut config = sample();
        config.standby = Some(StandbySettings {
            primary_conninfo: "host=127.0.0.1 port=5432 application_name=it's".into(),
            primary_slot_name: Some("pg_1".into()),
        });
        config.synchronous_standby_names = "FIRST 1 (\"pg-1\")".into();
        let text = config.render();
        assert!(
            text.contains("primary_conninfo = 'host=127.0.0.1 port=5432 application_name=it''s'\n")
        );
        assert!(text.contains("primary_slot_name = 'pg_1'\n"));
        assert!(text.contains("synchronous_standby_names = 'FIRST 1 (\"pg-1\")'\n"));
    }

    /// Local mode pg_hba never uses trust and only admits 127.0.0.1 over TCP.
    #[test]
    fn local_hba_is_scram_on_loopback_only() {
        let text = render_hba(&local_mode_hba(AuthMethod::ScramSha256));
        assert!(!text.contains("trust"));
        assert!(text.contains("host\treplication\tall\t127.0.0.1/32\tscram-sha-256"));
        assert!(text.contains("host\tall\tall\t127.0.0.1/32\tscram-sha-256"));
        assert_eq!(text.lines().filter(|l| l.starts_with("host")).count(), 2);
    }

    /// ALTER SYSTEM lines for managed parameters are removed, others kept.
    #[test]
    fn strips_managed_from_auto_conf() {
        let auto = "# Do not edit this file manually!\nsynchronous_standby_names = 'x'\nwork_mem = '8MB'\nprimary_conninfo = 'a'\n";
        let managed = vec![
            "synchronous_standby_names".to_owned(),
            "primary_conninfo".to_owned(),
        ];
        assert_eq!(
            strip_managed(auto, &managed),
            "# Do not edit this file manually!\nwork_mem = '8MB'\n"
        );
    }

    /// The include line is added once.
    #[test]
    fn include_is_idempotent() {
        let once = with_include("max_connections = 100").expect("added");
        assert!(once.ends_with(&format!("\n{INCLUDE_LINE}\n")));
        assert_eq!(with_include(&once), None);
    }
}
