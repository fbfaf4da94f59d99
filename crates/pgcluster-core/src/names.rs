//! Names of the cluster and of every object derived from it.
//!
//! One place derives every object name so builders, the agent and the CLI agree.

use std::fmt;

/// Longest cluster name: `<name>-<10-char revision hash>` labels on StatefulSet
/// pods must fit in 63 characters, with room for the derived names.
pub const MAX_CLUSTER_NAME_LEN: usize = 40;

/// A validated cluster name: DNS-1123 label, at most [`MAX_CLUSTER_NAME_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(String);

/// Why a string is not a valid DNS-1123 label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("must not be empty")]
    Empty,
    /// Too long.
    #[error("is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// actual length
        len: usize,
        /// allowed length
        max: usize,
    },
    /// Bad characters or shape.
    #[error(
        "must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit"
    )]
    Invalid,
}

/// Checks a DNS-1123 label (`[a-z]([-a-z0-9]*[a-z0-9])?`) of at most `max` characters.
pub fn check_dns_label(s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > max {
        return Err(NameError::TooLong { len: s.len(), max });
    }
    let bytes = s.as_bytes();
    let ok_inner = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let first_ok = bytes[0].is_ascii_lowercase();
    let last_ok =
        bytes[bytes.len() - 1].is_ascii_lowercase() || bytes[bytes.len() - 1].is_ascii_digit();
    if ok_inner && first_ok && last_ok {
        Ok(())
    } else {
        Err(NameError::Invalid)
    }
}

impl ClusterName {
    /// Parses a cluster name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        check_dns_label(s, MAX_CLUSTER_NAME_LEN)?;
        Ok(Self(s.to_owned()))
    }
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// StatefulSet (and pod name prefix).
    pub fn statefulset(&self) -> String {
        self.0.clone()
    }
    /// Pod / instance name of ordinal `i`.
    pub fn instance(&self, i: u32) -> String {
        format!("{}-{i}", self.0)
    }
    /// Headless Service giving pods stable DNS names.
    pub fn headless_service(&self) -> String {
        format!("{}-pods", self.0)
    }
    /// Read-write Service.
    pub fn rw_service(&self) -> String {
        format!("{}-rw", self.0)
    }
    /// Read-only Service.
    pub fn ro_service(&self) -> String {
        format!("{}-ro", self.0)
    }
    /// LoadBalancer Service.
    pub fn lb_service(&self) -> String {
        format!("{}-lb", self.0)
    }
    /// ConfigMap with postgresql.conf and pg_hba.conf.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.0)
    }
    /// Leader Lease.
    pub fn leader_lease(&self) -> String {
        format!("{}-leader", self.0)
    }
    /// Secret of the superuser.
    pub fn superuser_secret(&self) -> String {
        format!("{}-superuser", self.0)
    }
    /// Secret of an application role.
    pub fn role_secret(&self, role: &str) -> String {
        format!("{}-role-{role}", self.0)
    }
    /// ServiceAccount of the agents.
    pub fn service_account(&self) -> String {
        format!("{}-agent", self.0)
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reserved for a dedicated replication role. pgcluster creates no such role
/// today (the agents stream, clone and rewind as [`SUPERUSER_ROLE`]); specs
/// may not declare it, so it stays free for pgcluster.
pub const REPLICATION_ROLE: &str = "pgcluster_replication";
/// The superuser role (reserved).
pub const SUPERUSER_ROLE: &str = "postgres";

#[cfg(test)]
mod tests {
    use super::*;

    /// DNS-1123 shape rules.
    #[test]
    fn dns_labels() {
        assert!(ClusterName::new("db").is_ok());
        assert!(ClusterName::new("pg-main-1").is_ok());
        assert_eq!(ClusterName::new(""), Err(NameError::Empty));
        assert_eq!(ClusterName::new("Db"), Err(NameError::Invalid));
        assert_eq!(ClusterName::new("1db"), Err(NameError::Invalid));
        assert_eq!(ClusterName::new("db-"), Err(NameError::Invalid));
        assert!(matches!(
            ClusterName::new(&"a".repeat(41)),
            Err(NameError::TooLong { len: 41, max: 40 })
        ));
    }
}
