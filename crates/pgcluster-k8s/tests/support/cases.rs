// The clusters the golden files are rendered from: `examples/<name>.yaml`,
// loaded and validated by pgcluster-core exactly as `pgcluster render` does.

use std::path::Path;

use pgcluster_core::ValidatedCluster;

/// The examples with golden files.
pub const EXAMPLES: &[&str] = &["homelab", "single", "three-no-lb"];

/// Loads and validates `examples/<name>.yaml`.
pub fn example(repo: &Path, name: &str) -> ValidatedCluster {
    let path = repo.join("examples").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pgcluster_core::load::load_one(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .validate_on(pgcluster_core::Platform::Kubernetes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(golden name, cluster)` for every golden case.
pub fn all(repo: &Path) -> Vec<(&'static str, ValidatedCluster)> {
    EXAMPLES.iter().map(|name| (*name, example(repo, name))).collect()
}
