//! `pgcluster fence` and `pgcluster fence-exec`: the process that keeps a
//! server from outliving its lease when the agent is killed, paused or
//! wedged (see `pgcluster_ha::fence`). The agent starts them; nobody types them.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::CliError;

/// The unprivileged user the server runs as (when started as root).
#[derive(Debug, clap::Args)]
pub struct RunAs {
    /// Run the server as this uid (with --gid).
    #[arg(long, requires = "gid")]
    pub uid: Option<u32>,
    /// Run the server as this gid (with --uid).
    #[arg(long, requires = "uid")]
    pub gid: Option<u32>,
}

impl RunAs {
    fn ids(&self) -> Option<(u32, u32)> {
        self.uid.zip(self.gid)
    }
}

/// Arguments of `pgcluster fence`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Who runs the server.
    #[command(flatten)]
    pub run_as: RunAs,
    /// The server program and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// Arguments of `pgcluster fence-exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The fencer's PID: exit at once if it is no longer our parent.
    #[arg(long)]
    pub parent: u32,
    /// Who runs the server (switched to before the parent-death signal is set).
    #[command(flatten)]
    pub run_as: RunAs,
    /// The server program and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// Runs the fencer until the server exits; exits with the server's status.
pub fn exec(args: Args) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::Failed(format!(
            "failed to find the pgcluster binary for the fencer: {e}; run pgcluster by its full path"
        ))
    })?;
    let mut command = args.command.into_iter();
    let program = command
        .next()
        .expect("clap requires at least one value after --");
    let code = pgcluster_ha::fence::run_fencer(pgcluster_ha::fence::FencerArgs {
        exe,
        user: args.run_as.ids(),
        program,
        args: command.collect(),
    });
    std::process::exit(code)
}

/// Sets the parent-death signal and replaces this process with the server.
pub fn exec_server(args: ExecArgs) -> Result<(), CliError> {
    let mut command = args.command.into_iter();
    let program = command
        .next()
        .expect("clap requires at least one value after --");
    let rest: Vec<OsString> = command.collect();
    let error = pgcluster_ha::fence::exec_with_parent_death_signal(
        args.parent,
        args.run_as.ids(),
        &program,
        &rest,
    );
    Err(CliError::Failed(format!(
        "failed to start {} under the fencer: {error}; check that the file exists and is executable by the PostgreSQL OS user",
        PathBuf::from(program).display()
    )))
}
