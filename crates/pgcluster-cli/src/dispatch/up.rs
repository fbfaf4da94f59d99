//! `pgcluster up`: runs a cluster spec on this machine — one agent process
//! per instance supervising a real PostgreSQL server, the local coordinator
//! and the rw/ro router — and waits until it is ready.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use pgcluster_ha::local::cluster::{self, Prepared, UpOptions};
use pgcluster_ha::local::connect::{self, ClientOwner};
use pgcluster_ha::local::layout::Layout;
use pgcluster_ha::local::{Router, RouterConfig};

use super::local::{DEFAULT_SPEC, fail, runtime, shutdown_signal_now, validate_spec};
use crate::CliError;

/// Arguments of `pgcluster up`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without -f, runs the default spec: cluster `local` with two instances \
(a primary and a streaming replica). The cluster keeps its data in --data-dir; after \
`pgcluster down` (or Ctrl-C), `pgcluster up` starts it again with every row kept.

Ports (with the default base 15432): rw 15432, ro 15433, PostgreSQL 15440+i, agent APIs 15450+i.

Examples:
  pgcluster up                                   # foreground; Ctrl-C stops it
  pgcluster up --detach && pgcluster status      # background; stop with pgcluster down
  pgcluster up -f examples/local.yaml --port 25432 --data-dir /tmp/demo
  pgcluster psql -c 'select 1'                   # psql on the rw port, password from the cluster

When ready, `up` prints psql lines that connect as they are: they name the cluster's password \
file <data-dir>/pgpass (mode 0600; run through sudo, it belongs to SUDO_USER), so no password \
appears on a command line."
)]
pub struct Args {
    /// The PostgresCluster spec (YAML or JSON); default: two instances named local-0, local-1.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Where the cluster keeps everything (default: $XDG_DATA_HOME/pgcluster/NAME,
    /// ~/.local/share/pgcluster/NAME, or /var/lib/pgcluster/NAME as root).
    #[arg(long, value_name = "DIR", env = "PGCLUSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory with the PostgreSQL server binaries (default: PATH, pg_config, /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// OS user PostgreSQL runs as when started as root (default: postgres, else a created `pgcluster`).
    #[arg(long, value_name = "USER")]
    pub os_user: Option<String>,
    /// Return once the cluster is ready, leaving it running (stop it with `pgcluster down`).
    #[arg(long)]
    pub detach: bool,
    /// Base port: rw = BASE, ro = BASE+1, PostgreSQL BASE+8+i, agent APIs BASE+18+i.
    #[arg(long = "port", value_name = "BASE")]
    pub port: Option<u16>,
    /// How long to wait for the cluster to become ready, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,
}

/// Starts the cluster; in the foreground, runs until Ctrl-C/SIGTERM and stops it.
pub fn exec(args: Args) -> Result<(), CliError> {
    let _telemetry = crate::telemetry::init_from_env("warn", "pgcluster")?;
    let (spec, origin) = match &args.file {
        Some(f) => (super::validate::read_input(f)?, f.display().to_string()),
        None => (DEFAULT_SPEC.to_owned(), "the default spec".to_owned()),
    };
    let validated = validate_spec(&spec, &origin)?;
    let opts = UpOptions {
        spec,
        cluster: validated.clone(),
        data_dir: args.data_dir.clone(),
        pg_bin: args.pg_bin.clone(),
        os_user: args.os_user.clone(),
        base_port: args.port,
        client_owner: sudo_user(),
    };
    let rt = runtime()?;
    rt.block_on(async {
        // Handlers first: a Ctrl-C at any point from here on stops what was
        // started instead of killing `up` and orphaning the agents (they run
        // in their own process groups, so the terminal does not signal them).
        let signalled = shutdown_signal_now().map_err(|e| fail(&e))?;
        tokio::pin!(signalled);
        let prepared = cluster::prepare(&opts).await.map_err(|e| fail(&e))?;
        let started = tokio::select! {
            r = start(&args, &prepared, &validated) => r,
            () = &mut signalled => Err(interrupted(&prepared)),
        };
        let router = match started {
            Ok(router) => router,
            Err(err) => {
                // Nothing half-started is left behind.
                let _ = cluster::stop(&prepared.layout, Duration::from_secs(60)).await;
                return Err(err);
            }
        };
        if args.detach {
            return Ok(());
        }
        println!("Running in the foreground; Ctrl-C (or `pgcluster down`) stops the cluster.");
        // Keeps the agents running (restarts with back-off) until Ctrl-C.
        let exe = std::env::current_exe().map_err(|e| fail(&e))?;
        let first = pgcluster_ha::local::supervisor::first_restart(&validated.timings());
        let supervise = tokio::spawn(pgcluster_ha::local::supervisor::supervise(
            prepared.layout.clone(),
            exe,
            first,
        ));
        signalled.await;
        supervise.abort();
        eprintln!("stopping cluster {} ...", prepared.record.name);
        if let Some(router) = router {
            router.shutdown();
        }
        cluster::stop(&prepared.layout, Duration::from_secs(60))
            .await
            .map_err(|e| fail(&e))?;
        println!(
            "cluster {} stopped; data kept in {}",
            prepared.record.name,
            prepared.layout.root().display()
        );
        Ok(())
    })
}

fn interrupted(prepared: &Prepared) -> CliError {
    CliError::Failed(format!(
        "interrupted before cluster {} was ready; stopped everything it started (data kept in {})",
        prepared.record.name,
        prepared.layout.root().display()
    ))
}

async fn start(
    args: &Args,
    prepared: &Prepared,
    validated: &pgcluster_core::ValidatedCluster,
) -> Result<Option<Router>, CliError> {
    let exe = std::env::current_exe().map_err(|e| fail(&e))?;
    prepared
        .layout
        .update_record(|r| {
            if !args.detach {
                r.up_pid = Some(std::process::id());
            }
            r.stopping = false;
            for m in &mut r.members {
                m.restarts = 0;
            }
        })
        .map_err(|e| fail(&e))?;
    cluster::spawn_agents(prepared, &exe).map_err(|e| fail(&e))?;
    let router = if args.detach {
        cluster::spawn_router(prepared, &exe).map_err(|e| fail(&e))?;
        None
    } else {
        let (targets, _task) = cluster::route_targets(
            &prepared.layout,
            &prepared.record,
            Duration::from_millis(50),
        )
        .map_err(|e| fail(&e))?;
        let config = RouterConfig::for_cluster(&prepared.layout, &prepared.record);
        Some(Router::spawn_dedicated(config, targets).map_err(|e| fail(&e))?)
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
            .expect("the progress template is valid because it is a constant"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(format!("starting cluster {}", prepared.record.name));
    let ready = cluster::wait_ready(prepared, Duration::from_secs(args.timeout), |line| {
        bar.set_message(line.to_owned());
    })
    .await;
    bar.finish_and_clear();
    ready.map_err(|e| fail(&e))?;
    cluster::create_app_objects(prepared, validated)
        .await
        .map_err(|e| fail(&e))?;
    print_ready(prepared, validated);
    Ok(router)
}

/// Run as root through sudo: the user who ran sudo, who gets the clients'
/// password file (see [`pgcluster_ha::local::connect`]).
fn sudo_user() -> Option<ClientOwner> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let id = |var: &str| std::env::var(var).ok()?.parse::<u32>().ok();
    let (uid, gid) = (id("SUDO_UID")?, id("SUDO_GID")?);
    (uid != 0).then_some(ClientOwner { uid, gid })
}

fn print_ready(prepared: &Prepared, validated: &pgcluster_core::ValidatedCluster) {
    let r = &prepared.record;
    let l = &prepared.layout;
    let psql = |port: u16, user: &str, db: &str| {
        format!(
            "psql {}",
            shell_quote(&connect::conninfo(port, user, db, &prepared.passfile))
        )
    };
    // The shortest way back to this cluster for the other commands.
    let which = if l.root() == Layout::default_root(&r.name) {
        format!("--name {}", r.name)
    } else {
        format!(
            "--data-dir {}",
            shell_quote(&l.root().display().to_string())
        )
    };
    println!(
        "cluster {} is ready ({} instances)",
        r.name,
        r.members.len()
    );
    println!("  rw: {}", psql(r.rw_port, &r.superuser, "postgres"));
    println!("  ro: {}", psql(r.ro_port, &r.superuser, "postgres"));
    for db in validated.databases() {
        println!(
            "  database {} as {}: {}",
            db.name,
            db.owner,
            psql(r.rw_port, &db.owner, &db.name)
        );
    }
    println!("  or: pgcluster psql {which} [--ro] [--role ROLE] [--db DB] [-- PSQL_ARGS]");
    let reader = std::env::var("SUDO_USER")
        .ok()
        .filter(|_| sudo_user().is_some())
        .map_or_else(String::new, |u| format!(", readable by {u}"));
    println!(
        "  passwords: {} (every login, mode 0600{reader}); {}/*.password",
        prepared.passfile.display(),
        l.secrets_dir().display()
    );
    println!(
        "  data: {}   status: pgcluster status {which}",
        l.root().display()
    );
}

/// `s` as one shell word: as is when it holds only safe characters, else
/// single-quoted.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if safe {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    /// A printed conninfo stays one shell word, whatever its path holds.
    #[test]
    fn shell_quote_keeps_one_word() {
        assert_eq!(
            shell_quote("/var/lib/pgcluster/demo"),
            "/var/lib/pgcluster/demo"
        );
        assert_eq!(shell_quote("host=x port=1"), "'host=x port=1'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
