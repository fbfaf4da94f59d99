//! The pgcluster CLI: argument parsing, output and wiring only. Each subcommand
//! is one module under [`dispatch`] with an `exec()`; [`error::CliError`] owns
//! exit codes and how failures are shown.

pub mod dispatch;
pub mod error;
pub mod output;
pub mod telemetry;

use std::ffi::OsString;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use error::CliError;

/// Highly available PostgreSQL for homelab Kubernetes, and locally with `pgcluster up`.
#[derive(Debug, Parser)]
#[command(name = "pgcluster", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand; each maps to a module in [`dispatch`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an annotated PostgresCluster spec (every field explained) that validates as is.
    Init(dispatch::init::Args),
    /// Check a spec: every problem with its field path and a hint, or a summary of the resolved cluster.
    Validate(dispatch::validate::Args),
    /// Validate a spec, then server-side apply it to Kubernetes (current kubeconfig context); --wait shows progress until Ready.
    Apply(dispatch::apply::Args),
    /// Answer access questions from a spec's access rules (explain, hba).
    Access(dispatch::access::Args),
    /// Print the PostgresCluster CustomResourceDefinition as YAML.
    Crd(dispatch::crd::Args),
    /// Print the Kubernetes manifests of a cluster spec (Secrets as shapes, never passwords).
    Render(dispatch::render::Args),
    /// Start a local HA cluster on this machine (one agent + PostgreSQL per instance, rw/ro router).
    Up(dispatch::up::Args),
    /// Stop a local cluster (data kept).
    Down(dispatch::down::Args),
    /// Show a cluster's instances: role, state, timeline, LSN, lag, PIDs (pods and nodes in Kubernetes), ports.
    Status(dispatch::status::Args),
    /// Move the primary role to a caught-up replica without losing writes.
    Switchover(dispatch::switchover::Args),
    /// Force a replica to become primary when the primary is gone.
    Failover(dispatch::failover::Args),
    /// Run psql against a local cluster (rw or ro, superuser or a role); the password never on a command line.
    Psql(dispatch::psql::Args),
    /// Measure failover, switchover and router overhead on local clusters.
    Bench(dispatch::bench::Args),
    /// Run the per-instance agent (started by `pgcluster up`).
    Agent(dispatch::agent::Args),
    /// Serve a detached local cluster's rw/ro ports (started by `pgcluster up --detach`).
    #[command(hide = true)]
    Router(dispatch::router::Args),
    /// Keep one server from outliving its lease when its agent dies or stalls (started by the agent).
    #[command(hide = true)]
    Fence(dispatch::fence::Args),
    /// Exec a server with a parent-death signal (started by the fencer).
    #[command(hide = true, name = "fence-exec")]
    FenceExec(dispatch::fence::ExecArgs),
}

/// The file name under which kubectl finds pgcluster as a plugin.
pub const KUBECTL_PLUGIN: &str = "kubectl-pgcluster";

/// Whether `argv0` is the kubectl plugin's executable (`kubectl-pgcluster`,
/// also with `.exe`), however it is reached (symlink, copy, PATH).
pub fn is_kubectl_plugin(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_stem()
        .is_some_and(|stem| stem == KUBECTL_PLUGIN)
}

/// Parses a command line (`args[0]` is the program). Run as
/// `kubectl-pgcluster` (`kubectl pgcluster ...`), it behaves the same and its
/// help and errors say `kubectl pgcluster`.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if args.first().is_some_and(is_kubectl_plugin) {
        command = command.bin_name("kubectl pgcluster");
    }
    let matches = command.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// [`try_parse_from`] that prints the error or help and exits on failure.
pub fn parse_from<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    try_parse_from(args).unwrap_or_else(|e| e.exit())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init(args) => dispatch::init::exec(args),
        Command::Validate(args) => dispatch::validate::exec(args),
        Command::Apply(args) => dispatch::apply::exec(args),
        Command::Access(args) => dispatch::access::exec(args),
        Command::Crd(args) => dispatch::crd::exec(args),
        Command::Render(args) => dispatch::render::exec(args),
        Command::Up(args) => dispatch::up::exec(args),
        Command::Down(args) => dispatch::down::exec(args),
        Command::Status(args) => dispatch::status::exec(args),
        Command::Switchover(args) => dispatch::switchover::exec(args),
        Command::Failover(args) => dispatch::failover::exec(args),
        Command::Psql(args) => dispatch::psql::exec(args),
        Command::Bench(args) => dispatch::bench::exec(args),
        Command::Agent(args) => dispatch::agent::exec(args),
        Command::Router(args) => dispatch::router::exec(args),
        Command::Fence(args) => dispatch::fence::exec(args),
        Command::FenceExec(args) => dispatch::fence::exec_server(args),
    }
}
