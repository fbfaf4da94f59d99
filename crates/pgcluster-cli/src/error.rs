//! The one user-facing error type; it owns exit codes and prints the whole
//! cause chain, then what to do.

use std::path::PathBuf;
use std::process::ExitCode;

use pgcluster_k8s::client_ops::OpsError;

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
    /// A file or directory could not be written. Exit code 2.
    #[error("failed to write {}", path.display())]
    Write {
        /// the path
        path: PathBuf,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// A step failed; the message says what failed and what to do. Exit code 2.
    #[error("{0}")]
    Failed(String),
    /// A cluster operation in Kubernetes (apply, switchover, failover,
    /// status) failed. Exit code 2.
    #[error(transparent)]
    Ops(OpsError),
    /// Data could not be printed as JSON or YAML. Exit code 2.
    #[error("failed to print the output as {format}")]
    Output {
        /// `JSON` or `YAML`
        format: &'static str,
        /// the serializer's error
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The manifests could not be rendered. Exit code 2.
    #[error(transparent)]
    Render(#[from] pgcluster_k8s::render::RenderError),
    /// Telemetry could not be set up. Exit code 2.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Invalid(_) => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }

    /// The message with every cause in the chain, then what to do when known.
    pub fn render(&self) -> String {
        let mut out = chain(self);
        if let Some(hint) = self.hint() {
            out.push_str(&format!("\n    hint: {hint}"));
        }
        out
    }

    fn hint(&self) -> Option<&str> {
        match self {
            CliError::Read { hint, .. } => Some(hint),
            CliError::Write { .. } => {
                Some("check that the directory exists and is writable, and that the disk has room")
            }
            CliError::Output { .. } => Some("report this as a bug, or use `-o text`"),
            _ => None,
        }
    }
}

impl From<OpsError> for CliError {
    /// Usage errors (an unknown instance, a target that cannot take over)
    /// are the user's input: exit code 1; the rest exit 2.
    fn from(e: OpsError) -> Self {
        let usage = match &e {
            OpsError::Operation(op) => op.is_usage(),
            OpsError::InvalidName { .. } | OpsError::Incomplete { .. } => true,
            _ => false,
        };
        if usage {
            CliError::Invalid(chain(&e))
        } else {
            CliError::Ops(e)
        }
    }
}

pub use pgcluster_core::error_chain as chain;

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendering keeps every cause and ends with what to do.
    #[test]
    fn render_prints_the_chain_and_the_hint() {
        let err = CliError::Write {
            path: PathBuf::from("/nope/out.yaml"),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let text = err.render();
        assert!(
            text.starts_with("failed to write /nope/out.yaml: permission denied"),
            "{text}"
        );
        assert!(
            text.contains("\n    hint: check that the directory"),
            "{text}"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));
        assert_eq!(CliError::Invalid("x".into()).exit_code(), ExitCode::from(1));
    }
}
