//! Shape checks for Kubernetes names and labels and for PostgreSQL identifiers.

use std::collections::BTreeMap;

use super::error::{Check, Problems, key_path};
use crate::names::check_dns_label;

/// Longest DNS-1123 label (namespace, label name part).
pub(crate) const MAX_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain (StorageClass, label prefix).
pub(crate) const MAX_SUBDOMAIN_LEN: usize = 253;
/// Longest PostgreSQL identifier (NAMEDATALEN - 1).
pub(crate) const MAX_IDENTIFIER_LEN: usize = 63;

/// DNS-1123 subdomain: dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SUBDOMAIN_LEN
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Label value or name part: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn is_label_token(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Checks a label key: `[prefix/]name`.
pub(crate) fn is_label_key(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_token(name),
        None => is_label_token(key),
    }
}

/// Checks a label value (may be empty).
pub(crate) fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_token(value)
}

/// Reports every bad key and value of a label map at `base`.
pub(crate) fn check_labels(problems: &mut Problems, base: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let path = key_path(base, key);
        if !is_label_key(key) {
            problems.push(
                Check::InvalidLabel,
                &path,
                format!("`{key}` is not a valid label key"),
                "use an optional DNS prefix and `/`, then at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric (e.g. `app.kubernetes.io/name`)",
            );
        }
        if !is_label_value(value) {
            problems.push(
                Check::InvalidLabel,
                &path,
                format!("`{value}` is not a valid label value"),
                "use at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric",
            );
        }
    }
}

/// Reports a namespace that is not a DNS-1123 label.
pub(crate) fn check_namespace(problems: &mut Problems, path: &str, ns: &str) -> bool {
    match check_dns_label(ns, MAX_LABEL_LEN) {
        Ok(()) => true,
        Err(e) => {
            problems.push(
                Check::InvalidName,
                path,
                format!("namespace `{ns}` {e}"),
                "write the namespace as Kubernetes shows it (`kubectl get namespaces`)",
            );
            false
        }
    }
}

/// PostgreSQL database names pgcluster accepts: `[a-z][a-z0-9_-]*`, at most 63.
pub(crate) fn is_database_name(s: &str) -> bool {
    s.len() <= MAX_IDENTIFIER_LEN
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label keys and values follow the Kubernetes grammar.
    #[test]
    fn labels() {
        assert!(is_label_key("app"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("-app"));
        assert!(!is_label_key("a/b/c"));
        assert!(!is_label_key(""));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3"));
        assert!(!is_label_value("has space"));
        assert!(!is_label_value(&"a".repeat(64)));
    }

    /// Subdomains and database names follow their grammars.
    #[test]
    fn names() {
        assert!(is_dns_subdomain("local-path"));
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain("Local"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_database_name("app_db"));
        assert!(!is_database_name("1app"));
        assert!(!is_database_name("App"));
    }
}
