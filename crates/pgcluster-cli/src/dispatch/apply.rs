//! `pgcluster apply -f FILE [--wait]`: validate the spec (every problem at
//! once, nothing sent when any), server-side apply the PostgresCluster with
//! the CLI's field manager, and with `--wait` show progress until the
//! controller reports Ready, or say why it is not.

use std::path::PathBuf;
use std::time::Duration;

use pgcluster_k8s::client_ops;

use super::validate::read_input;
use crate::CliError;

/// Arguments of `pgcluster apply`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Uses the current kubeconfig context (or --context); the namespace is the \
file's metadata.namespace, else -n, else the context's default.

Examples:
  pgcluster apply -f examples/homelab.yaml --wait
  kubectl pgcluster apply -f cluster.yaml -n databases"
)]
pub struct Args {
    /// The PostgresCluster spec (one document, YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Namespace when the file does not set one.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Wait until the cluster is Ready, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
}

/// Validates, applies and optionally waits.
pub fn exec(args: Args) -> Result<(), CliError> {
    let text = read_input(&args.file)?;
    let mut loaded = pgcluster_core::load::load_one(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", args.file.display())))?;
    let meta = &mut loaded.cluster.metadata;
    if let (Some(file_ns), Some(n)) = (&meta.namespace, &args.namespace)
        && file_ns != n
    {
        return Err(CliError::Invalid(format!(
            "the file says namespace {file_ns:?} but -n says {n:?}"
        )));
    }
    if meta.namespace.is_none() {
        meta.namespace.clone_from(&args.namespace);
    }
    // Validate before any network call; a missing namespace is checked as
    // `default` here and resolved from the kubeconfig context below.
    let mut probe = loaded.clone();
    probe
        .cluster
        .metadata
        .namespace
        .get_or_insert_with(|| "default".to_owned());
    probe
        .validate_on(pgcluster_core::Platform::Kubernetes)
        .map_err(|e| {
            CliError::Invalid(format!("{}: nothing applied:\n{e}", args.file.display()))
        })?;
    client_ops::block_on(async {
        let (client, default_ns) = client_ops::connect(args.context.as_deref())
            .await
            .map_err(CliError::from)?;
        loaded.cluster.metadata.namespace.get_or_insert(default_ns);
        let stored = client_ops::apply(&client, &loaded.cluster)
            .await
            .map_err(CliError::from)?;
        let name = client_ops::display_name(&stored);
        println!(
            "postgrescluster {name} applied (generation {})",
            stored.metadata.generation.unwrap_or(0)
        );
        if !args.wait {
            return Ok(());
        }
        let namespace = stored.metadata.namespace.clone().unwrap_or_default();
        let plain = stored.metadata.name.clone().unwrap_or_default();
        let ready = client_ops::wait_ready(
            &client,
            &namespace,
            &plain,
            Duration::from_secs(args.timeout),
            Duration::from_secs(2),
            |line| println!("  {line}"),
        )
        .await
        .map_err(CliError::from)?;
        println!(
            "postgrescluster {name} is ready; primary {}",
            ready.status.and_then(|s| s.primary).unwrap_or_default()
        );
        Ok(())
    })
}
