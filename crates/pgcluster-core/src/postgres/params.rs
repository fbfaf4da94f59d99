//! The one table of PostgreSQL parameters pgcluster manages itself. Validation
//! refuses them in `spec.postgres.parameters` (with the reason below), and the
//! configuration renderer sets them; both read this table.

/// A parameter pgcluster sets itself, and why a user may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedParameter {
    /// Parameter name (lowercase, as PostgreSQL reports it). A name ending in
    /// `*` covers every parameter with that prefix.
    pub name: &'static str,
    /// Why pgcluster owns it (shown to the user).
    pub reason: &'static str,
}

/// Every managed parameter.
///
/// Decisions worth noting:
/// - `synchronous_commit` is managed: in sync mode a global `off`/`local` would
///   silently acknowledge commits no standby has, breaking the no-loss promise
///   of `replication.mode: sync`. Sessions may still `SET` it per transaction.
/// - `archive_mode`/`archive_command`/`archive_library` are managed: pgcluster
///   has no WAL archive yet, and a failing archiver retains WAL until the
///   volume fills and the primary stops.
/// - `password_encryption` is managed: pg_hba admits only `scram-sha-256`, so
///   an `md5` password could never log in.
pub const MANAGED_PARAMETERS: &[ManagedParameter] = &[
    ManagedParameter {
        name: "port",
        reason: "the Services, probes and pg_hba rendering assume port 5432",
    },
    ManagedParameter {
        name: "listen_addresses",
        reason: "the agent listens on the pod address and the local socket; access is controlled by `spec.access`",
    },
    ManagedParameter {
        name: "unix_socket_directories",
        reason: "the agent connects through the socket directory it creates",
    },
    ManagedParameter {
        name: "hba_file",
        reason: "pg_hba.conf is rendered from `spec.access`",
    },
    ManagedParameter {
        name: "ident_file",
        reason: "pgcluster renders the authentication configuration itself",
    },
    ManagedParameter {
        name: "data_directory",
        reason: "the data directory lives on the instance's volume at a fixed path",
    },
    ManagedParameter {
        name: "config_file",
        reason: "postgresql.conf is rendered by pgcluster",
    },
    ManagedParameter {
        name: "external_pid_file",
        reason: "the agent supervises postgres and tracks its process itself",
    },
    ManagedParameter {
        name: "primary_conninfo",
        reason: "the agent points each replica at the current primary",
    },
    ManagedParameter {
        name: "primary_slot_name",
        reason: "the agent manages one replication slot per replica",
    },
    ManagedParameter {
        name: "synchronous_standby_names",
        reason: "set by the agent from `spec.replication.mode` and the healthy replicas",
    },
    ManagedParameter {
        name: "synchronous_commit",
        reason: "set from `spec.replication.mode`; a global `off` or `local` would break sync mode's no-loss guarantee (sessions may still SET it)",
    },
    ManagedParameter {
        name: "restore_command",
        reason: "replicas stream from the primary; WAL restore is managed by pgcluster",
    },
    ManagedParameter {
        name: "archive_cleanup_command",
        reason: "WAL archiving and restore are managed by pgcluster",
    },
    ManagedParameter {
        name: "recovery_end_command",
        reason: "recovery is driven by the agent",
    },
    ManagedParameter {
        name: "recovery_target*",
        reason: "a recovery target would stop a replica or a promoted primary at a point in the past",
    },
    ManagedParameter {
        name: "archive_mode",
        reason: "pgcluster has no WAL archive yet; a failing archiver keeps WAL until the volume fills",
    },
    ManagedParameter {
        name: "archive_command",
        reason: "pgcluster has no WAL archive yet; a failing archiver keeps WAL until the volume fills",
    },
    ManagedParameter {
        name: "archive_library",
        reason: "pgcluster has no WAL archive yet; a failing archiver keeps WAL until the volume fills",
    },
    ManagedParameter {
        name: "wal_level",
        reason: "streaming replication needs `replica` or higher; pgcluster sets it",
    },
    ManagedParameter {
        name: "hot_standby",
        reason: "replicas must accept read-only queries for the ro endpoint and health checks",
    },
    ManagedParameter {
        name: "max_wal_senders",
        reason: "sized from `spec.instances` so every replica and a base backup can connect",
    },
    ManagedParameter {
        name: "max_replication_slots",
        reason: "sized from `spec.instances` (one slot per replica)",
    },
    ManagedParameter {
        name: "wal_log_hints",
        reason: "pg_rewind needs it to re-join a former primary",
    },
    ManagedParameter {
        name: "full_page_writes",
        reason: "pg_rewind and crash safety need it on",
    },
    ManagedParameter {
        name: "cluster_name",
        reason: "set to the instance name so replication views and logs identify it",
    },
    ManagedParameter {
        name: "password_encryption",
        reason: "pg_hba admits only scram-sha-256, so passwords must be stored as SCRAM",
    },
    ManagedParameter {
        name: "logging_collector",
        reason: "the server log is the postmaster's stderr: `kubectl logs` in a pod, one file per member in local mode",
    },
    ManagedParameter {
        name: "promote_trigger_file",
        reason: "promotion is done by the agent after it holds the leader lease",
    },
    ManagedParameter {
        name: "wal_keep_size",
        reason: "pg_rewind of a former primary needs the WAL since the fork; the agent keeps enough",
    },
    ManagedParameter {
        name: "max_slot_wal_keep_size",
        reason: "bounds the WAL a dead replica's slot can pin, so it can never fill the disk; the agent sets it",
    },
    ManagedParameter {
        name: "hot_standby_feedback",
        reason: "the agent enables it so queries on the ro endpoint are not cancelled by vacuum on the primary",
    },
];

/// The managed-parameter entry covering `name` (case-insensitive, like PostgreSQL), if any.
pub fn managed_parameter(name: &str) -> Option<&'static ManagedParameter> {
    let name = name.trim().to_ascii_lowercase();
    MANAGED_PARAMETERS
        .iter()
        .find(|p| match p.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p.name,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Managed names are found case-insensitively, prefixes cover their family.
    #[test]
    fn lookup() {
        assert!(managed_parameter("port").is_some());
        assert!(managed_parameter("Listen_Addresses").is_some());
        assert!(managed_parameter("recovery_target_time").is_some());
        assert!(managed_parameter("max_connections").is_none());
        assert!(managed_parameter("shared_buffers").is_none());
    }

    /// The table has no duplicates and every reason is non-empty.
    #[test]
    fn table_is_well_formed() {
        let mut names: Vec<_> = MANAGED_PARAMETERS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
        assert!(MANAGED_PARAMETERS.iter().all(|p| !p.reason.is_empty()));
    }
}
