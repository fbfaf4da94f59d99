//! `pgcluster-controller`: the Kubernetes operator reconciling
//! PostgresCluster objects. Parses flags and runs the library's controller
//! process (pgcluster_k8s::controller::process). Telemetry (logs, and OTLP
//! traces when OTEL_EXPORTER_OTLP_ENDPOINT is set) is set up here.

use pgcluster_core::error_chain as chain;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use pgcluster_cli::telemetry;
use pgcluster_k8s::controller::process::{ProcessConfig, run_blocking};

/// The pgcluster Kubernetes controller (one leader among its replicas).
#[derive(Debug, Parser)]
#[command(
    name = "pgcluster-controller",
    version,
    about = "The pgcluster Kubernetes controller: reconciles PostgresCluster objects"
)]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "PGCLUSTER_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_address: SocketAddr,
    /// The controller's namespace (downward API in the Deployment).
    #[arg(long, env = "POD_NAMESPACE", default_value = "pgcluster-system")]
    namespace: String,
    /// This replica's identity for leader election (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "pgcluster-controller")]
    identity: String,
    /// Run without leader election (a single replica, e.g. outside the cluster).
    #[arg(long)]
    no_leader_election: bool,
    /// Log format: json (pods) or text (terminals).
    #[arg(long, env = "PGCLUSTER_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json_logs = args.log_format == "json";
    let setup = telemetry::Config::from_env(
        &telemetry::env_vars(),
        "info,kube=warn",
        "pgcluster-controller",
    )
    .map(|config| telemetry::Config {
        log_format: if json_logs {
            telemetry::LogFormat::Json
        } else {
            telemetry::LogFormat::Text
        },
        ..config
    });
    // Logs and OTLP traces; run_blocking's own logging setup then keeps this
    // subscriber. The guard flushes spans when main returns (SIGTERM included).
    let _telemetry = match setup
        .map_err(telemetry::TelemetryError::from)
        .and_then(|c| telemetry::init(&c))
    {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {}", chain(&err));
            return ExitCode::FAILURE;
        }
    };
    let config = ProcessConfig {
        metrics_address: args.metrics_address,
        namespace: args.namespace,
        identity: args.identity,
        leader_election: !args.no_leader_election,
        json_logs,
    };
    match run_blocking(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", chain(&err));
            ExitCode::FAILURE
        }
    }
}
