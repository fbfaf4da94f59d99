//! The configuration pgcluster manages: `pgcluster.conf` (included from
//! `postgresql.conf`), `pg_hba.conf` and `standby.signal`. Rendering is pure;
//! [`Instance::write_config`] is the only function here that touches files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pgcluster_core::postgres::settings::{Placement, Setting, render_lines, server_settings};

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

/// Everything `pgcluster.conf` sets: the server's settings (core's one
/// renderer, [`pgcluster_core::postgres::settings`]) and what this agent
/// decides at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedConfig {
    /// The server's settings in file order (local mode: core's defaults,
    /// the user's parameters and the managed settings; a pod: the include
    /// of the ConfigMap's postgresql.conf, which core renders the same way).
    pub server: Vec<Setting>,
    /// `cluster_name` (shows in `ps` and logs).
    pub cluster_name: String,
    /// `synchronous_standby_names` (empty: asynchronous).
    pub synchronous_standby_names: String,
    /// `Some` on a replica: primary_conninfo, primary_slot_name and a
    /// `standby.signal` file.
    pub standby: Option<StandbySettings>,
    /// Lines after everything else (tests: `fsync = off`, small buffers).
    pub extra: BTreeMap<String, String>,
}

impl ManagedConfig {
    /// `server` settings for the member named `cluster_name`, no standby.
    pub fn new(server: Vec<Setting>, cluster_name: &str) -> Self {
        Self {
            server,
            cluster_name: cluster_name.to_owned(),
            synchronous_standby_names: String::new(),
            standby: None,
            extra: BTreeMap::new(),
        }
    }

    /// A local-mode server on `port` with pgcluster's settings for a
    /// 2-instance cluster and no user parameters (tests, tools without a spec).
    pub fn local(port: u16, unix_socket_directories: PathBuf, cluster_name: &str) -> Self {
        let placement = Placement::local(port, &unix_socket_directories.display().to_string());
        Self::new(
            server_settings(2, &BTreeMap::new(), &placement).lines(),
            cluster_name,
        )
    }

    /// The parameters in file order: the server's, then the agent's, then `extra`.
    pub fn parameters(&self) -> Vec<Setting> {
        let standby = self.standby.as_ref();
        let mut params = self.server.clone();
        params.extend([
            ("cluster_name".to_owned(), self.cluster_name.clone()),
            (
                "synchronous_standby_names".to_owned(),
                self.synchronous_standby_names.clone(),
            ),
            (
                "primary_conninfo".to_owned(),
                standby
                    .map(|s| s.primary_conninfo.clone())
                    .unwrap_or_default(),
            ),
            (
                "primary_slot_name".to_owned(),
                standby
                    .and_then(|s| s.primary_slot_name.clone())
                    .unwrap_or_default(),
            ),
        ]);
        params.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        params
    }

    /// The text of `pgcluster.conf`.
    pub fn render(&self) -> String {
        format!(
            "# Managed by pgcluster: changes here are overwritten.\n{}",
            render_lines(&self.parameters())
        )
    }
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
