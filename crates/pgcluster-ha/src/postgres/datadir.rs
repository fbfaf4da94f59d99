//! Creating a data directory (`initdb`) and recognising what is already in
//! one (pg_controldata), so that we never start on another cluster's data.

use std::path::Path;

use super::command::run_checked;
use super::config::AuthMethod;
use super::error::PgError;
use super::instance::Instance;

/// What a data directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirState {
    /// Missing or empty: ready for initdb or a base backup.
    Empty,
    /// An initialised cluster with this system identifier.
    Initialised {
        /// `Database system identifier` from pg_control.
        system_identifier: u64,
    },
}

impl Instance {
    /// Runs `initdb` with data checksums, scram-sha-256 for TCP,
    /// `local_auth` for the Unix socket and the superuser's password (passed
    /// through a temporary file, never on the command line).
    pub async fn initdb(&self, local_auth: AuthMethod) -> Result<(), PgError> {
        let data = &self.layout.data_dir;
        self.os_user.create_dir(data, 0o700)?;
        let pwfile = self.layout.passfile.with_extension("initdb-pw");
        self.os_user.write_file(
            &pwfile,
            format!("{}\n", self.superuser.password).as_bytes(),
            0o600,
        )?;
        let mut cmd = self.tool("initdb");
        cmd.arg("--pgdata")
            .arg(data)
            .args([
                "--data-checksums",
                "--encoding=UTF8",
                "--locale=C",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--auth-local={}", local_auth.keyword()))
            .arg(format!("--username={}", self.superuser.name))
            .arg("--pwfile")
            .arg(&pwfile);
        let result = run_checked(
            cmd,
            "check that the data directory is empty and writable by the OS user",
        )
        .await;
        let _ = std::fs::remove_file(&pwfile);
        result.map(|_| ())
    }

    /// Reads the data directory: [`DataDirState::Empty`] when missing or
    /// empty, the system identifier when initialised, an error otherwise.
    pub async fn data_dir_state(&self) -> Result<DataDirState, PgError> {
        let data = &self.layout.data_dir;
        if is_empty_or_missing(data)? {
            return Ok(DataDirState::Empty);
        }
        if !data.join("PG_VERSION").exists() {
            return Err(PgError::NotADataDir {
                data_dir: data.clone(),
            });
        }
        let mut cmd = self.tool("pg_controldata");
        cmd.arg(data).env("LC_ALL", "C");
        let command = super::command::describe(&cmd);
        let out = run_checked(
            cmd,
            "the data directory may be damaged; restore it or re-clone this member",
        )
        .await?;
        let system_identifier = parse_system_identifier(&out).ok_or_else(|| PgError::Parse {
            command,
            detail: "no `Database system identifier:` line".to_owned(),
        })?;
        Ok(DataDirState::Initialised { system_identifier })
    }

    /// Fails with [`PgError::ForeignDataDir`] when the data directory holds
    /// a cluster other than `expected`; returns the state otherwise.
    pub async fn check_data_dir(&self, expected: Option<u64>) -> Result<DataDirState, PgError> {
        let state = self.data_dir_state().await?;
        if let (Some(expected), DataDirState::Initialised { system_identifier }) = (expected, state)
            && expected != system_identifier
        {
            return Err(PgError::ForeignDataDir {
                data_dir: self.layout.data_dir.clone(),
                expected,
                found: system_identifier,
            });
        }
        Ok(state)
    }
}

fn is_empty_or_missing(dir: &Path) -> Result<bool, PgError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(PgError::io("read directory", dir, e)),
    }
}

/// The system identifier from `pg_controldata` output.
pub fn parse_system_identifier(controldata: &str) -> Option<u64> {
    controldata
        .lines()
        .find_map(|l| l.strip_prefix("Database system identifier:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identifier is read from pg_controldata's C-locale output.
    #[test]
    fn parses_controldata() {
        let out = "pg_control version number:            1300\nDatabase system identifier:           7311111111111111111\n";
        assert_eq!(
            parse_system_identifier(out),
            Some(7_311_111_111_111_111_111)
        );
        assert_eq!(parse_system_identifier("garbage"), None);
    }
}
