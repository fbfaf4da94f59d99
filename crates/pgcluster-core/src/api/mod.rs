//! Versions of the `PostgresCluster` API.

pub mod v1alpha1;
