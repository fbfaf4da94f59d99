//! `pgcluster psql`: runs psql against a local cluster's rw (or ro)
//! endpoint as the superuser or an application role, with the password in
//! psql's environment only (never on a command line or in shell history).
//!
//! ```text
//! Target --layout--> cluster.json + spec --> role, database, port --exec--> psql 'host=127.0.0.1 port=... user=... dbname=...'
//! ```

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use pgcluster_ha::local::connect;

use super::local::{Target, fail, load, require_running};
use crate::CliError;

/// Arguments of `pgcluster psql`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Everything after pgcluster's own options goes to psql as is.

Examples:
  pgcluster psql                                  # the running cluster's primary, as the superuser
  pgcluster psql -c 'select 1'
  pgcluster psql --ro -c 'select pg_is_in_recovery()'
  pgcluster psql --name demo --role app            # role app, in the first database it owns
  pgcluster psql --role app --db app -- -f schema.sql"
)]
pub struct Args {
    /// Which cluster.
    #[command(flatten)]
    pub target: Target,
    /// Connect to the ro endpoint (replicas, falling back to the primary) instead of rw.
    #[arg(long)]
    pub ro: bool,
    /// Log in as this application role (default: the superuser).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// The database (default: the first database the role owns, else postgres).
    #[arg(long = "db", value_name = "DB")]
    pub db: Option<String>,
    /// Arguments for psql (e.g. -c 'select 1').
    #[arg(
        value_name = "PSQL_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub psql_args: Vec<OsString>,
}

/// Replaces this process with psql; returns only when psql cannot be started.
pub fn exec(args: Args) -> Result<(), CliError> {
    let layout = args.target.layout()?;
    let (record, cluster) = load(&layout)?;
    require_running(&layout, &record)?;
    let (user, password_file) = match &args.role {
        None => (record.superuser.clone(), layout.superuser_password_file()),
        Some(role) if *role == record.superuser => (role.clone(), layout.superuser_password_file()),
        Some(role) => {
            if !cluster.roles().iter().any(|r| r.name == *role) {
                let known: Vec<&str> = std::iter::once(record.superuser.as_str())
                    .chain(cluster.roles().iter().map(|r| r.name.as_str()))
                    .collect();
                return Err(CliError::Invalid(format!(
                    "cluster {} has no role {role}; roles: {}",
                    record.name,
                    known.join(", ")
                )));
            }
            (role.clone(), layout.role_password_file(role))
        }
    };
    let db = args.db.clone().unwrap_or_else(|| {
        cluster
            .databases()
            .iter()
            .find(|d| args.role.is_some() && d.owner == user)
            .map_or_else(|| "postgres".to_owned(), |d| d.name.clone())
    });
    let port = if args.ro {
        record.ro_port
    } else {
        record.rw_port
    };
    let passfile = connect::passfile(&layout);
    let mut cmd = std::process::Command::new(psql_binary(&record.pg_bin));
    // The password: from the secret file when we may read it (psql's
    // environment only), else the clients' password file (`up` gave it to
    // the user who ran it through sudo).
    match layout.read_password(&password_file) {
        Ok(password) => {
            cmd.env("PGPASSWORD", password);
        }
        Err(e) if std::fs::File::open(&passfile).is_err() => {
            return Err(CliError::Failed(format!(
                "{}; neither it nor {} is readable by this user: run as the user who ran `pgcluster up` (or with sudo)",
                pgcluster_ha::agent::execute::error_chain(&e),
                passfile.display()
            )));
        }
        Err(_) => {
            cmd.env_remove("PGPASSWORD");
        }
    }
    cmd.arg(connect::conninfo(port, &user, &db, &passfile))
        .args(&args.psql_args);
    let err = cmd.exec();
    Err(fail(&err))
}

/// The cluster's own psql (beside its server binaries), else psql on PATH.
fn psql_binary(pg_bin: &std::path::Path) -> PathBuf {
    let own = pg_bin.join("psql");
    if own.is_file() {
        own
    } else {
        PathBuf::from("psql")
    }
}
