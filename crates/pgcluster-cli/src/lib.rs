//! The pgcluster CLI: argument parsing, output and wiring only. Each subcommand
//! is one module under [`dispatch`] with an `exec()`; [`error::CliError`] owns
//! exit codes and how failures are shown.

pub mod dispatch;
pub mod error;
pub mod output;

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
    /// Print the PostgresCluster CustomResourceDefinition as YAML.
    Crd(dispatch::crd::Args),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Crd(args) => dispatch::crd::exec(args),
    }
}
