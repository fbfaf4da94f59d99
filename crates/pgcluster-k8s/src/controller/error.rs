//! The reconcile pipeline's errors: one variant per step and object, each
//! with a bounded [`Error::category`] used as metric label and Event reason,
//! and [`Error::retry`] which `error_policy` turns into a requeue.

use pgcluster_core::ValidationErrors;

use crate::build::BuildError;

/// How `error_policy` reacts to an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Only a change of the object can fix it (invalid spec): wait for one.
    AwaitChange,
    /// Transient (API server, network, PostgreSQL not up yet): back off and retry.
    Backoff,
}

/// A failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace (the CRD is namespaced; a bug or a broken object).
    #[error("failed to reconcile {name}: the object has no namespace")]
    MissingNamespace {
        /// Object name.
        name: String,
    },
    /// Reading the current state (Secrets, pods, Lease) failed.
    #[error("failed to read {kind} of {cluster}")]
    Dereference {
        /// Cluster name.
        cluster: String,
        /// What was being read.
        kind: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The spec did not validate (the messages go to the Ready condition).
    #[error("failed to validate the spec of {cluster}")]
    Validate {
        /// Cluster name.
        cluster: String,
        /// Every problem.
        #[source]
        source: ValidationErrors,
    },
    /// The builders refused the validated cluster.
    #[error("failed to build the objects of {cluster}")]
    Build {
        /// Cluster name.
        cluster: String,
        /// The builder's error.
        #[source]
        source: BuildError,
    },
    /// Server-side apply of one object failed.
    #[error("failed to apply {kind} {name}")]
    Apply {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The API server refused some objects (the others were applied).
    #[error("failed to apply {}", failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    ApplyRefused {
        /// Cluster name.
        cluster: String,
        /// Every refusal.
        failed: Vec<super::apply::ApplyFailure>,
    },
    /// Deleting an orphan (an object no longer built) failed.
    #[error("failed to delete the orphaned {kind} {name}")]
    DeleteOrphan {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating databases and roles on the primary failed.
    #[error("failed to create the databases and roles of {cluster} on the primary")]
    Sql {
        /// Cluster name.
        cluster: String,
        /// The database error.
        #[source]
        source: super::sql::AdminError,
    },
    /// Writing the status subresource failed.
    #[error("failed to write the status of {cluster}")]
    Status {
        /// Cluster name.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer, or the retention cleanup, failed.
    #[error("failed to run the finalizer of {cluster}")]
    Finalizer {
        /// Cluster name.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A bounded category: metric label and Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingNamespace { .. } => "missing_namespace",
            Error::Dereference { .. } => "dereference",
            Error::Validate { .. } => "invalid_spec",
            Error::Build { source, .. } => source.category(),
            Error::Apply { .. } | Error::ApplyRefused { .. } => "apply",
            Error::DeleteOrphan { .. } => "delete_orphan",
            Error::Sql { .. } => "sql",
            Error::Status { .. } => "status",
            Error::Finalizer { .. } => "finalizer",
        }
    }

    /// The Event reason (PascalCase of the category).
    pub fn reason(&self) -> String {
        self.category()
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Whether retrying can help without a change of the object.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Validate { .. } | Error::Build { .. } | Error::MissingNamespace { .. } => {
                Retry::AwaitChange
            }
            // A refusal only a spec change can fix: no retry loop against it.
            Error::ApplyRefused { failed, .. }
                if failed
                    .iter()
                    .all(super::apply::ApplyFailure::needs_a_spec_change) =>
            {
                Retry::AwaitChange
            }
            _ => Retry::Backoff,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Invalid specs wait for a change; API trouble backs off; reasons are PascalCase.
    #[test]
    fn retry_policy_and_reason() {
        let invalid = Error::Validate {
            cluster: "pg".into(),
            source: ValidationErrors { errors: vec![] },
        };
        assert_eq!(invalid.retry(), Retry::AwaitChange);
        assert_eq!(invalid.reason(), "InvalidSpec");
        let api = Error::Status {
            cluster: "pg".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert_eq!(api.retry(), Retry::Backoff);
        assert_eq!(api.reason(), "Status");
    }
}
