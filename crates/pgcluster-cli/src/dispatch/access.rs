//! `pgcluster access`: questions answered from the access model of a spec.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::ValueEnum;
use pgcluster_core::access::explain::{Client, Decision};
use pgcluster_core::api::v1alpha1::AccessEndpoint;
use pgcluster_core::validate::endpoint_name;
use serde::Serialize;

use super::validate::load_valid_one;
use crate::CliError;
use crate::output::{OutputFormat, to_machine};

/// Arguments of `pgcluster access`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The question.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// Subcommands of `pgcluster access`.
#[derive(Debug, clap::Subcommand)]
pub enum AccessCommand {
    /// May this client reach this database as this role, and by which rule?
    Explain(ExplainArgs),
    /// Print the pg_hba.conf rendered from the access rules.
    Hba(HbaArgs),
}

/// An endpoint as typed on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    /// The read-write Service.
    Rw,
    /// The read-only Service.
    Ro,
    /// The MetalLB LoadBalancer (spelled as in the spec; `lb` also works).
    #[value(name = "loadBalancer", alias = "lb", alias = "loadbalancer")]
    LoadBalancer,
}

impl From<EndpointArg> for AccessEndpoint {
    fn from(e: EndpointArg) -> Self {
        match e {
            EndpointArg::Rw => AccessEndpoint::Rw,
            EndpointArg::Ro => AccessEndpoint::Ro,
            EndpointArg::LoadBalancer => AccessEndpoint::LoadBalancer,
        }
    }
}

/// Arguments of `pgcluster access explain`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the connection is allowed, 1 when it is denied or the spec is invalid, 2 on other errors.

Examples:
  pgcluster access explain -f examples/homelab.yaml --from 10.0.10.7 --database gitea --role admin
  pgcluster access explain -f cluster.yaml --from namespace/apps,app=web --database app --role app
  pgcluster access explain -f cluster.yaml --from 8.8.8.8 --database app --role app -o json"
)]
pub struct ExplainArgs {
    /// The PostgresCluster spec (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// The client: an IP address, or `namespace/NS[,label=value...]` for a pod.
    #[arg(long, value_name = "IP|namespace/NS[,label=value]")]
    pub from: Client,
    /// The pod's IP, when --from is a pod (matched against CIDR sources).
    #[arg(long, value_name = "IP")]
    pub pod_ip: Option<IpAddr>,
    /// The database to connect to.
    #[arg(long, value_name = "DATABASE")]
    pub database: String,
    /// The role to connect as.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// The endpoint used, spelled as in the spec's `endpoints` (default: rw for pods, loadBalancer for addresses).
    #[arg(long, value_enum, value_name = "rw|ro|loadBalancer")]
    pub endpoint: Option<EndpointArg>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Arguments of `pgcluster access hba`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  pgcluster access hba -f examples/homelab.yaml")]
pub struct HbaArgs {
    /// The PostgresCluster spec (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
}

/// What `explain -o json|yaml` prints.
#[derive(Debug, Serialize)]
struct Explained<'a> {
    client: &'a Client,
    endpoint: &'static str,
    database: &'a str,
    role: &'a str,
    #[serde(flatten)]
    decision: &'a Decision,
}

/// Runs an access subcommand.
pub fn exec(args: Args) -> Result<(), CliError> {
    match args.command {
        AccessCommand::Explain(a) => explain(a),
        AccessCommand::Hba(a) => {
            let cluster = load_valid_one(&a.file)?;
            print!("{}", cluster.pg_hba());
            Ok(())
        }
    }
}

fn explain(args: ExplainArgs) -> Result<(), CliError> {
    let cluster = load_valid_one(&args.file)?;
    let mut client = args.from;
    if let (Client::Pod { ip, .. }, Some(pod_ip)) = (&mut client, args.pod_ip) {
        *ip = Some(pod_ip);
    }
    let endpoint: AccessEndpoint = match (args.endpoint, &client) {
        (Some(e), _) => e.into(),
        (None, Client::Pod { .. }) => AccessEndpoint::Rw,
        (None, Client::Address { .. }) => AccessEndpoint::LoadBalancer,
    };
    let decision = cluster.explain(&client, endpoint, &args.database, &args.role);
    let explained = Explained {
        client: &client,
        endpoint: endpoint_name(endpoint),
        database: &args.database,
        role: &args.role,
        decision: &decision,
    };
    match to_machine(&explained, args.output)? {
        Some(out) => print!("{out}"),
        None => print!("{}", text(&explained)),
    }
    if decision.is_allowed() {
        Ok(())
    } else {
        Err(CliError::Invalid("the connection is denied".to_owned()))
    }
}

fn text(e: &Explained<'_>) -> String {
    let question = format!(
        "{} -> endpoint {}, database {}, role {}",
        e.client, e.endpoint, e.database, e.role
    );
    match e.decision {
        Decision::Allowed { rule, source } => {
            format!("ALLOWED: {question}\n  by rule `{rule}` (source: {source})\n")
        }
        Decision::Denied { rules, fix } => {
            let mut out = format!("DENIED: {question}\n");
            if rules.is_empty() {
                out.push_str("  the spec has no access rules\n");
            }
            for r in rules {
                let reasons: Vec<_> = r.misses.iter().map(ToString::to_string).collect();
                out.push_str(&format!("  rule `{}`: {}\n", r.rule, reasons.join("; ")));
            }
            out.push_str(&format!("  to allow it: {fix}\n"));
            out
        }
    }
}
