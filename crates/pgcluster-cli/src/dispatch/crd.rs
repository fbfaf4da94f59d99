//! `pgcluster crd`: print the CustomResourceDefinition.

use kube::CustomResourceExt;
use pgcluster_core::api::v1alpha1::PostgresCluster;

use crate::CliError;

/// Arguments of `pgcluster crd`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  pgcluster crd > kubernetes/crd.yaml\n  pgcluster crd | kubectl apply -f -"
)]
pub struct Args {}

/// Prints the CRD YAML to stdout.
pub fn exec(_args: Args) -> Result<(), CliError> {
    print!(
        "{}",
        pgcluster_core::crd_yaml().map_err(|e| CliError::Output {
            format: "YAML",
            source: Box::new(e),
        })?
    );
    let _ = PostgresCluster::crd_name();
    Ok(())
}
