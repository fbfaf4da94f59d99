//! The one user-facing error type; it owns exit codes.

use std::process::ExitCode;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input is invalid; the message lists every problem. Exit code 1.
    #[error("{0}")]
    Invalid(String),
    /// A spec could not be read from a file or stdin. Exit code 2.
    #[error("failed to read {what}")]
    Read {
        /// the file name, or `the spec from stdin`
        what: String,
        /// what to do about it
        hint: String,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// Anything else that went wrong. Exit code 2.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Invalid(_) => ExitCode::from(1),
            CliError::Read { .. } | CliError::Other(_) => ExitCode::from(2),
        }
    }

    /// The message with every cause in the chain, then what to do when known.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(&format!(": {c}"));
            cause = c.source();
        }
        if let CliError::Read { hint, .. } = self {
            out.push_str(&format!("\n    hint: {hint}"));
        }
        out
    }
}
