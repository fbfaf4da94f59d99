//! One PostgreSQL instance on this machine: where its files live, which port
//! it listens on, which OS user runs it and the superuser it is reached as.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::binaries::PgBinaries;
use super::error::PgError;
use super::os_user::OsUser;

/// How long a local connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where an instance keeps its files, all below one base directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The PostgreSQL data directory (`PGDATA`).
    pub data_dir: PathBuf,
    /// The Unix socket directory.
    pub socket_dir: PathBuf,
    /// Where the postmaster's output (its server log) goes.
    pub server_log: ServerLog,
    /// A libpq password file (`passfile=`) for replication and pg_rewind.
    pub passfile: PathBuf,
}

impl Layout {
    /// The layout below `base`: `data/`, `run/`, `log/postgresql.log`, `pgpass`.
    pub fn under(base: &Path) -> Self {
        Self {
            data_dir: base.join("data"),
            socket_dir: base.join("run"),
            server_log: ServerLog::File(base.join("log").join("postgresql.log")),
            passfile: base.join("pgpass"),
        }
    }
}

/// Where the postmaster's stdout and stderr go. With `logging_collector =
/// off` (always, see the managed parameters) that is the whole server log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLog {
    /// Appended to this file (local mode: one file per member that users and
    /// tests read).
    File(PathBuf),
    /// Written to the agent's own stderr, stdout included: in a container
    /// that is the log `kubectl logs` shows and the runtime rotates. Not the
    /// agent's stdout, which carries only its JSON lines.
    Inherit,
}

impl ServerLog {
    /// The log file, if the log goes to one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Inherit => None,
        }
    }
}

/// The PostgreSQL superuser and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Superuser {
    /// Role name (default `postgres`).
    pub name: String,
    /// Its password (scram-sha-256 is used everywhere).
    pub password: String,
}

impl std::fmt::Debug for Superuser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Superuser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Another server to stream from, clone from or rewind from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role used to connect (a superuser or a replication role).
    pub user: String,
}

/// One PostgreSQL instance controlled by this process.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The server binaries.
    pub bin: PgBinaries,
    /// The OS user the server runs as.
    pub os_user: OsUser,
    /// Its files.
    pub layout: Layout,
    /// The TCP port (also part of the Unix socket name).
    pub port: u16,
    /// The superuser.
    pub superuser: Superuser,
    /// Name used as `application_name` when streaming (so that
    /// `synchronous_standby_names` can name it) and for its slot.
    pub member: String,
    /// Start the server behind a fencer that outlives the agent (see
    /// [`crate::fence`]); `None` starts it directly (library tests).
    pub fence: Option<crate::fence::FenceSpawn>,
}

impl Instance {
    /// A libpq conninfo for `upstream` that reads the password from our
    /// password file and names us by member name.
    pub fn conninfo(&self, upstream: &Upstream) -> String {
        format!(
            "host={} port={} user={} passfile={} application_name={} connect_timeout=3",
            upstream.host,
            upstream.port,
            upstream.user,
            self.layout.passfile.display(),
            self.member
        )
    }

    /// This instance as an upstream for others (over 127.0.0.1).
    pub fn as_upstream(&self) -> Upstream {
        Upstream {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            user: self.superuser.name.clone(),
        }
    }

    /// Connection settings for the local Unix socket.
    pub fn local_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.layout.socket_dir)
            .port(self.port)
            .user(&self.superuser.name)
            .password(&self.superuser.password)
            .dbname("postgres")
            .application_name("pgcluster-agent")
            .connect_timeout(CONNECT_TIMEOUT);
        config
    }

    /// Connects over the local Unix socket; the connection is driven by a
    /// spawned task that ends when the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let target = format!(
            "{}/.s.PGSQL.{}",
            self.layout.socket_dir.display(),
            self.port
        );
        let (client, connection) = self
            .local_config()
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| PgError::Connect { target, source })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "local PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Makes the superuser's password the one this agent was given (its
    /// Secret in Kubernetes, its password file locally) unless it already
    /// verifies: a cluster re-created on kept volumes gets new Secrets, and
    /// the data still holds the old password. Runs on the writable primary
    /// over the local socket (peer authentication in pods); commits without
    /// waiting for a synchronous standby. Returns whether it changed it.
    pub async fn ensure_superuser_password(&self) -> Result<bool, PgError> {
        let client = self.connect().await?;
        let read = "SELECT rolpassword FROM pg_authid WHERE rolname = $1";
        let stored: Option<String> = client
            .query_opt(read, &[&self.superuser.name])
            .await
            .map_err(|source| PgError::Query {
                statement: read.to_owned(),
                source,
            })?
            .and_then(|row| row.get(0));
        if stored.is_some_and(|v| super::scram::verifies(&self.superuser.password, &v)) {
            return Ok(false);
        }
        let verifier =
            postgres_protocol::password::scram_sha_256(self.superuser.password.as_bytes());
        client
            .batch_execute(&format!(
                "SET synchronous_commit = local; ALTER ROLE {} PASSWORD {}",
                pgcluster_core::postgres::sql::quote_ident(&self.superuser.name),
                pgcluster_core::postgres::sql::quote_literal(&verifier)
            ))
            .await
            .map_err(|source| PgError::Query {
                statement: format!("ALTER ROLE {} PASSWORD <redacted>", self.superuser.name),
                source,
            })?;
        Ok(true)
    }

    /// Connects to another member over TCP as `upstream.user` with our
    /// superuser's password (all members share the superuser secret).
    pub async fn connect_upstream(
        &self,
        upstream: &Upstream,
    ) -> Result<tokio_postgres::Client, PgError> {
        let target = format!("{}:{}", upstream.host, upstream.port);
        let mut config = tokio_postgres::Config::new();
        config
            .host(&upstream.host)
            .port(upstream.port)
            .user(&upstream.user)
            .password(&self.superuser.password)
            .dbname("postgres")
            .application_name("pgcluster-agent")
            .connect_timeout(CONNECT_TIMEOUT);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| PgError::Connect { target, source })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Creates the base directories (the socket's, the log file's if any)
    /// owned by the OS user and writes the password file every tool uses.
    pub fn prepare_dirs(&self) -> Result<(), PgError> {
        for dir in [
            Some(self.layout.socket_dir.as_path()),
            self.layout.server_log.file().and_then(Path::parent),
            self.layout.passfile.parent(),
        ]
        .into_iter()
        .flatten()
        {
            self.os_user.create_dir(dir, 0o700)?;
        }
        let line = format!(
            "*:*:*:{}:{}\n",
            escape_pgpass(&self.superuser.name),
            escape_pgpass(&self.superuser.password)
        );
        self.os_user
            .write_file(&self.layout.passfile, line.as_bytes(), 0o600)
    }

    /// A command for one of the PostgreSQL tools, run as the OS user, with
    /// `PGPASSFILE` pointing at our password file.
    pub fn tool(&self, name: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bin.tool(name));
        self.os_user.apply(&mut cmd, self.workdir());
        cmd.env("PGPASSFILE", &self.layout.passfile)
            .env_remove("PGDATA");
        cmd
    }

    /// The working directory of the tools (readable by the OS user).
    pub fn workdir(&self) -> &Path {
        self.layout.socket_dir.parent().unwrap_or(Path::new("/"))
    }
}

/// Escapes `:` and `\` for a `.pgpass` line.
pub(crate) fn escape_pgpass(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords with `:` or `\` survive the .pgpass format.
    #[test]
    fn pgpass_escaping() {
        assert_eq!(escape_pgpass(r"a:b\c"), r"a\:b\\c");
    }

    /// The superuser's password never shows up in Debug output (logs).
    #[test]
    fn superuser_debug_hides_password() {
        let su = Superuser {
            name: "postgres".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{su:?}").contains("s3cret"));
    }
}
