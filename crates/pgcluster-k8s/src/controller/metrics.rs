//! The controller's Prometheus metrics, registered in a `controller`
//! sub-registry of the process's one registry. Names start with `pgcluster_`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of the error counter: the bounded error category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`super::Error::category`].
    pub category: String,
}

/// The controller's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reconciliations run.
    pub reconciliations: Counter,
    /// Failed reconciliations by category.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds.
    pub duration: Histogram,
    /// Runs of the roles-and-databases SQL on a primary (only when its
    /// inputs changed).
    pub sql_runs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            sql_runs: Counter::default(),
        }
    }
}

impl Metrics {
    /// New metrics registered under `pgcluster_controller_` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("pgcluster_controller");
        sub.register(
            "reconciliations",
            "Reconciliations of PostgresCluster objects",
            metrics.reconciliations.clone(),
        );
        sub.register(
            "reconcile_errors",
            "Failed reconciliations by error category",
            metrics.failures.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of one reconciliation",
            metrics.duration.clone(),
        );
        sub.register(
            "sql_runs",
            "Runs of the roles and databases SQL on a primary (when its inputs changed)",
            metrics.sql_runs.clone(),
        );
        metrics
    }

    /// Counts a reconciliation and times it until the guard drops.
    pub fn start(&self) -> DurationGuard<'_> {
        self.reconciliations.inc();
        DurationGuard {
            histogram: &self.duration,
            start: Instant::now(),
        }
    }

    /// Counts a failure of `category`.
    pub fn failed(&self, category: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                category: category.to_owned(),
            })
            .inc();
    }
}

/// Observes the elapsed time into the histogram when dropped.
#[derive(Debug)]
pub struct DurationGuard<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for DurationGuard<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// The metrics render under the pgcluster_ prefix with the category label.
    #[test]
    fn encodes_with_prefix_and_category() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        drop(m.start());
        m.failed("apply");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        assert!(out.contains("pgcluster_controller_reconciliations_total 1"));
        assert!(out.contains("pgcluster_controller_reconcile_errors_total{category=\"apply\"} 1"));
        assert!(out.contains("pgcluster_controller_reconcile_duration_seconds_count 1"));
    }
}
