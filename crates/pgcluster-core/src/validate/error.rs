//! What validation reports: every problem, each with a field path, a message
//! and a hint saying what to do.

use std::fmt;

use serde::Serialize;

/// Which rule a problem breaks (bounded: usable as a metric label or Event reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A field the API does not have (reported by the loader).
    UnknownField,
    /// A key written twice in one mapping (reported by the loader).
    DuplicateKey,
    /// A value of the wrong type, e.g. text where a number belongs (reported by the loader).
    InvalidType,
    /// A value that is not one of the allowed ones (reported by the loader).
    UnknownValue,
    /// A required field that is not there (reported by the loader).
    MissingField,
    /// The object is not a well-formed `PostgresCluster` (missing name, wrong kind, ...).
    Object,
    /// A name that is not a valid DNS-1123 label or PostgreSQL identifier.
    InvalidName,
    /// Two entries with the same name.
    DuplicateName,
    /// A role or database name pgcluster or PostgreSQL reserves.
    ReservedName,
    /// `instances` out of 1..=9.
    Instances,
    /// Sync replication with a single instance.
    SyncNeedsReplica,
    /// A PostgreSQL major pgcluster does not support.
    UnsupportedVersion,
    /// An unusable image reference.
    InvalidImage,
    /// A parameter pgcluster manages itself.
    ManagedParameter,
    /// A malformed parameter name or value.
    InvalidParameter,
    /// A malformed or out-of-range quantity.
    InvalidQuantity,
    /// A request above its limit.
    RequestAboveLimit,
    /// A malformed or out-of-range duration.
    InvalidDuration,
    /// Failover timings that break the fencing rule.
    UnsafeTimings,
    /// A malformed CIDR or address.
    InvalidAddress,
    /// A public range or address without `allowPublic`.
    PublicAddress,
    /// A LoadBalancer address outside the allowed ranges or inside a cluster range.
    AddressOutOfRange,
    /// Overlapping cluster ranges.
    OverlappingRanges,
    /// A reference to an undeclared database or role.
    UndeclaredReference,
    /// An access rule that admits nobody or nothing.
    EmptyRule,
    /// An access rule pairing a role with a database it neither owns nor has a grant on.
    NoPrivilege,
    /// An access rule using an endpoint that is disabled.
    EndpointDisabled,
    /// A LoadBalancer no rule admits clients through.
    LoadBalancerUnused,
    /// A malformed Kubernetes label key or value.
    InvalidLabel,
    /// A value out of its allowed range (other than the above).
    OutOfRange,
}

impl Check {
    /// A short stable name (the serialized form).
    pub fn as_str(&self) -> &'static str {
        match self {
            Check::UnknownField => "unknown-field",
            Check::DuplicateKey => "duplicate-key",
            Check::InvalidType => "invalid-type",
            Check::UnknownValue => "unknown-value",
            Check::MissingField => "missing-field",
            Check::Object => "object",
            Check::InvalidName => "invalid-name",
            Check::DuplicateName => "duplicate-name",
            Check::ReservedName => "reserved-name",
            Check::Instances => "instances",
            Check::SyncNeedsReplica => "sync-needs-replica",
            Check::UnsupportedVersion => "unsupported-version",
            Check::InvalidImage => "invalid-image",
            Check::ManagedParameter => "managed-parameter",
            Check::InvalidParameter => "invalid-parameter",
            Check::InvalidQuantity => "invalid-quantity",
            Check::RequestAboveLimit => "request-above-limit",
            Check::InvalidDuration => "invalid-duration",
            Check::UnsafeTimings => "unsafe-timings",
            Check::InvalidAddress => "invalid-address",
            Check::PublicAddress => "public-address",
            Check::AddressOutOfRange => "address-out-of-range",
            Check::OverlappingRanges => "overlapping-ranges",
            Check::UndeclaredReference => "undeclared-reference",
            Check::EmptyRule => "empty-rule",
            Check::NoPrivilege => "no-privilege",
            Check::EndpointDisabled => "endpoint-disabled",
            Check::LoadBalancerUnused => "load-balancer-unused",
            Check::InvalidLabel => "invalid-label",
            Check::OutOfRange => "out-of-range",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    /// Field path, e.g. `spec.access[1].from.cidrs[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// The rule it breaks.
    pub check: Check,
    /// 1-based line in the input where the field is written, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl ValidationError {
    /// A problem at `path`.
    pub fn new(
        check: Check,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
            check,
            line: None,
        }
    }

    /// The same problem, located at `line` of the input.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Every problem found in a spec (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors {
    /// The problems, in field order.
    pub errors: Vec<ValidationError>,
}

impl ValidationErrors {
    /// Bounded category for metrics and Events.
    pub fn category(&self) -> &'static str {
        "invalid-spec"
    }
    /// Whether any problem sits at exactly `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
    /// The number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "the spec has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Collects problems while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub(crate) errors: Vec<ValidationError>,
}

impl Problems {
    /// Records a problem.
    pub(crate) fn push(
        &mut self,
        check: Check,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.errors
            .push(ValidationError::new(check, path, message, hint));
    }
    /// The number recorded so far (to tell whether a section added any).
    pub(crate) fn count(&self) -> usize {
        self.errors.len()
    }
}

/// `base.key`, or `base["key"]` when the key is not a plain identifier.
pub(crate) fn key_path(base: &str, key: &str) -> String {
    if key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        format!("{base}.{key}")
    } else {
        format!("{base}[{key:?}]")
    }
}
