//! The one user-facing error type; it owns exit codes.

use std::process::ExitCode;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input is invalid; the message lists every problem. Exit code 1.
    #[error("{0}")]
    Invalid(String),
    /// Anything else that went wrong. Exit code 2.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Invalid(_) => ExitCode::from(1),
            CliError::Other(_) => ExitCode::from(2),
        }
    }
}
