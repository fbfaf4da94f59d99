//! The pgcluster CLI: argument parsing, output and wiring only. Each subcommand
//! is one module under [`dispatch`] with an `exec()`; [`error::CliError`] owns
//! exit codes and how failures are shown.

pub mod dispatch;
pub mod error;
pub mod output;
pub mod telemetry;

use clap::{Parser, Subcommand};

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
    /// Status, switchover and failover of a PostgresCluster in Kubernetes (also as `kubectl pgcluster kube ...`).
    Kube(dispatch::kube::Args),
    /// Answer access questions from a spec's access rules (explain, pg_hba).
    Access(dispatch::access::Args),
    /// Print the PostgresCluster CustomResourceDefinition as YAML.
    Crd(dispatch::crd::Args),
    /// Print the Kubernetes manifests of a cluster spec (Secrets as shapes, never passwords).
    Render(dispatch::render::Args),
    /// Start a local HA cluster on this machine (one agent + PostgreSQL per instance, rw/ro router).
    Up(dispatch::up::Args),
    /// Stop a local cluster (data kept).
    Down(dispatch::down::Args),
    /// Show a local cluster's instances: role, state, timeline, LSN, lag, PIDs, ports.
    Status(dispatch::status::Args),
    /// Move the primary role to a caught-up replica without losing writes.
    Switchover(dispatch::switchover::Args),
    /// Force a replica to become primary when the primary is gone.
    Failover(dispatch::failover::Args),
    /// Measure failover, switchover and router overhead on local clusters.
    Bench(dispatch::bench::Args),
    /// Run the per-instance agent (started by `pgcluster up`).
    Agent(dispatch::agent::Args),
    /// Serve a detached local cluster's rw/ro ports (started by `pgcluster up --detach`).
    #[command(hide = true)]
    Router(dispatch::router::Args),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init(args) => dispatch::init::exec(args),
        Command::Validate(args) => dispatch::validate::exec(args),
        Command::Apply(args) => dispatch::apply::exec(args),
        Command::Kube(args) => dispatch::kube::exec(args),
        Command::Access(args) => dispatch::access::exec(args),
        Command::Crd(args) => dispatch::crd::exec(args),
        Command::Render(args) => dispatch::render::exec(args),
        Command::Up(args) => dispatch::up::exec(args),
        Command::Down(args) => dispatch::down::exec(args),
        Command::Status(args) => dispatch::status::exec(args),
        Command::Switchover(args) => dispatch::switchover::exec(args),
        Command::Failover(args) => dispatch::failover::exec(args),
        Command::Bench(args) => dispatch::bench::exec(args),
        Command::Agent(args) => dispatch::agent::exec(args),
        Command::Router(args) => dispatch::router::exec(args),
    }
}
