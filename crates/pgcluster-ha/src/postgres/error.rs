//! The one error type of the PostgreSQL driver. Every variant names what was
//! being done (the command line, the path, the port) and, where there is one,
//! what the operator can do about it.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while controlling a PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No directory with the PostgreSQL server binaries was found.
    #[error(
        "failed to find the PostgreSQL binaries (searched: {}); install them \
         (for example `apt-get install postgresql-15`) or pass --pg-bin DIR",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    BinariesNotFound {
        /// Every place that was looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// A directory given with `--pg-bin` lacks a binary we need.
    #[error(
        "failed to find `{binary}` in {}; pass --pg-bin with the directory that holds \
         initdb, postgres, pg_basebackup and pg_rewind",
        .dir.display()
    )]
    MissingBinary {
        /// The directory that was searched.
        dir: PathBuf,
        /// The binary that is missing.
        binary: &'static str,
    },
    /// The OS user named for PostgreSQL does not exist.
    #[error("failed to find the OS user `{name}`; create it or pass another --os-user")]
    UnknownUser {
        /// The user name.
        name: String,
    },
    /// Looking up an OS user failed.
    #[error("failed to look up the OS user `{name}`")]
    UserLookup {
        /// The user name.
        name: String,
        /// The lookup error.
        #[source]
        source: nix::Error,
    },
    /// A child process could not be started at all.
    #[error("failed to start `{command}`; check that the binary exists and is executable")]
    Spawn {
        /// The command line.
        command: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A child process ran and failed.
    #[error("failed to run `{command}` ({status}): {stderr}; {hint}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it ended (exit code or signal).
        status: String,
        /// The last lines of its standard error.
        stderr: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The disk is full (ENOSPC) while writing below `path`.
    #[error("failed to write {}: the disk is full; free space on that file system and retry", .path.display())]
    DiskFull {
        /// The file or directory being written.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("failed to {action} {}", .path.display())]
    Io {
        /// What was being done ("create directory", "write", ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP port PostgreSQL should listen on is taken by another process.
    #[error(
        "failed to start PostgreSQL on 127.0.0.1:{port}: the port is in use by another process; \
         stop it or choose another port"
    )]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// The data directory belongs to another cluster.
    #[error(
        "failed to use data directory {}: it belongs to another cluster (system identifier {found}, \
         expected {expected}); point --data-dir elsewhere or move that directory away yourself",
        .data_dir.display()
    )]
    ForeignDataDir {
        /// The data directory.
        data_dir: PathBuf,
        /// The system identifier the cluster expects.
        expected: u64,
        /// The system identifier found in the directory.
        found: u64,
    },
    /// The data directory exists but is not an initialised PostgreSQL cluster.
    #[error(
        "failed to use data directory {}: it is not empty and holds no PG_VERSION; \
         move its contents away or choose another directory",
        .data_dir.display()
    )]
    NotADataDir {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// Output of a PostgreSQL tool could not be understood.
    #[error("failed to parse the output of `{command}`: {detail}")]
    Parse {
        /// The command whose output was parsed.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// The postmaster exited or did not accept connections in time.
    #[error(
        "failed to start PostgreSQL in {} within {waited:?}: {reason}; {log}",
        .data_dir.display()
    )]
    StartFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Exited (with status) or timed out.
        reason: String,
        /// Where the server log says why.
        log: StartLog,
    },
    /// The postmaster did not exit in time after a stop signal.
    #[error(
        "failed to stop PostgreSQL (pid {pid}) with a {mode} stop within {waited:?}; use an immediate stop"
    )]
    StopTimeout {
        /// The postmaster's PID.
        pid: u32,
        /// "fast" or "immediate".
        mode: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// Sending a signal to our postmaster failed.
    #[error("failed to send {signal} to the postmaster (pid {pid})")]
    Signal {
        /// The postmaster's PID.
        pid: u32,
        /// The signal name.
        signal: &'static str,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// Connecting to the server failed.
    #[error(
        "failed to connect to PostgreSQL at {target}; check that the server runs and the password is right"
    )]
    Connect {
        /// Socket directory or host:port.
        target: String,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("failed to execute `{statement}`")]
    Query {
        /// The SQL statement.
        statement: String,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `pg_promote()` returned false.
    #[error(
        "failed to promote: pg_promote(wait => true) returned false within {seconds} s; see the server log"
    )]
    PromoteTimedOut {
        /// The wait passed to pg_promote.
        seconds: i32,
    },
    /// A name that ends up in configuration or SQL is not safe there.
    #[error(
        "failed to use `{value}` as {what}: only a-z, 0-9 and _ are allowed (at most 63 characters)"
    )]
    InvalidName {
        /// What it names ("replication slot", ...).
        what: &'static str,
        /// The rejected value.
        value: String,
    },
}

/// Where the server log of a failed start can be read, as
/// [`PgError::StartFailed`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLog {
    /// The log file and its last lines.
    File {
        /// The log file.
        path: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The log went to the agent's stderr ([`super::ServerLog::Inherit`]):
    /// the agent keeps no copy, so the error can only say where to look.
    Inherited,
}

impl std::fmt::Display for StartLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path, tail } => {
                write!(
                    f,
                    "see the server log {} (last lines: {tail})",
                    path.display()
                )
            }
            Self::Inherited => f.write_str(
                "see PostgreSQL's own messages in the agent's stderr (in a pod: \
                 `kubectl logs <pod>`, with `--previous` after a container restart)",
            ),
        }
    }
}

impl PgError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::BinariesNotFound { .. } | Self::MissingBinary { .. } => "binaries",
            Self::UnknownUser { .. } | Self::UserLookup { .. } => "os_user",
            Self::Spawn { .. } | Self::CommandFailed { .. } | Self::Parse { .. } => "command",
            Self::DiskFull { .. } => "disk_full",
            Self::Io { .. } => "io",
            Self::PortInUse { .. } => "port_in_use",
            Self::ForeignDataDir { .. } | Self::NotADataDir { .. } => "data_dir",
            Self::StartFailed { .. } => "start",
            Self::StopTimeout { .. } | Self::Signal { .. } => "stop",
            Self::Connect { .. } => "connect",
            Self::Query { .. } | Self::PromoteTimedOut { .. } => "query",
            Self::InvalidName { .. } => "invalid_name",
        }
    }

    /// Maps an I/O error on `path` to [`PgError::DiskFull`] when it is ENOSPC,
    /// else to [`PgError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull {
            Self::DiskFull { path }
        } else {
            Self::Io {
                action,
                path,
                source,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_failed(log: StartLog) -> String {
        PgError::StartFailed {
            data_dir: "/pg/data".into(),
            waited: Duration::from_secs(1),
            reason: "the postmaster exited (exit status: 1)".to_owned(),
            log,
        }
        .to_string()
    }

    /// A failed start with a log file quotes the file and its last lines.
    #[test]
    fn start_failure_quotes_the_log_file() {
        let message = start_failed(StartLog::File {
            path: "/pg/log/postgresql.log".into(),
            tail: "FATAL:  bad".to_owned(),
        });
        assert!(message.contains("/pg/log/postgresql.log"), "{message}");
        assert!(message.contains("FATAL:  bad"), "{message}");
    }

    /// A failed start whose log went to our stderr still says where to read
    /// it (there is no file to quote), in a pod's terms too.
    #[test]
    fn start_failure_with_an_inherited_log_says_where_it_went() {
        let message = start_failed(StartLog::Inherited);
        assert!(message.contains("/pg/data"), "{message}");
        assert!(message.contains("agent's stderr"), "{message}");
        assert!(message.contains("kubectl logs"), "{message}");
        assert!(!message.contains("last lines"), "{message}");
    }
}
