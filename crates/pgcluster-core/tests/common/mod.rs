//! Fixtures shared by the integration tests: YAML first, then typed modifiers.

#![allow(dead_code)]

use pgcluster_core::api::v1alpha1::PostgresCluster;
use pgcluster_core::load::load_one;

/// The reference homelab example as text.
pub const HOMELAB_YAML: &str = include_str!("../../../../examples/homelab.yaml");

/// The reference homelab example, loaded.
pub fn homelab() -> PostgresCluster {
    load_one(HOMELAB_YAML)
        .expect("examples/homelab.yaml loads because it is a committed, tested example")
        .cluster
}

/// Chainable modifiers on a cluster fixture.
pub trait Modify: Sized {
    /// Applies `f` and returns the result.
    fn with(self, f: impl FnOnce(&mut PostgresCluster)) -> PostgresCluster;
}

impl Modify for PostgresCluster {
    fn with(mut self, f: impl FnOnce(&mut PostgresCluster)) -> PostgresCluster {
        f(&mut self);
        self
    }
}
