//! `pgcluster init`: print an annotated PostgresCluster spec, every field
//! explained, that validates as is.

use pgcluster_core::names::ClusterName;

use crate::CliError;

/// Arguments of `pgcluster init`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The output is a complete spec: every field is shown with a comment; fields that \
are off by default are commented out. It validates as printed.

Examples:
  pgcluster init --name main --namespace databases > cluster.yaml
  pgcluster init | pgcluster validate -f -"
)]
pub struct Args {
    /// Cluster name (lowercase letters, digits and `-`, at most 40 characters).
    #[arg(long, default_value = "main")]
    pub name: String,
    /// Namespace of the cluster object.
    #[arg(long, default_value = "databases")]
    pub namespace: String,
}

/// The annotated spec with `__NAME__` and `__NAMESPACE__` placeholders.
pub const TEMPLATE: &str = include_str!("init_template.yaml");

/// The annotated spec for a name and namespace.
pub fn annotated_spec(name: &str, namespace: &str) -> String {
    TEMPLATE
        .replace("__NAMESPACE__", namespace)
        .replace("__NAME__", name)
}

/// Prints the annotated spec.
pub fn exec(args: Args) -> Result<(), CliError> {
    if let Err(e) = ClusterName::new(&args.name) {
        return Err(CliError::Invalid(format!("--name `{}` {e}", args.name)));
    }
    if let Err(e) = pgcluster_core::names::check_dns_label(&args.namespace, 63) {
        return Err(CliError::Invalid(format!(
            "--namespace `{}` {e}",
            args.namespace
        )));
    }
    print!("{}", annotated_spec(&args.name, &args.namespace));
    Ok(())
}
