//! `pgcluster status`: one line per instance of a local cluster (role,
//! state, timeline, LSN, lag, PIDs, ports), from each agent's `/status` and,
//! for agents that do not answer, the state they last published.

use std::net::SocketAddr;
use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use pgcluster_ha::agent::AgentStatus;
use pgcluster_ha::agent::client;
use pgcluster_ha::local::cluster;
use pgcluster_ha::local::layout::{ClusterRecord, Layout};
use pgcluster_ha::machine::{ClusterView, MemberName};
use serde::Serialize;

use super::local::{Target, fail, runtime};
use crate::CliError;
use crate::output::{OutputFormat, to_machine};

/// Arguments of `pgcluster status`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pgcluster status
  pgcluster status -o json | jq '.instances[] | select(.role == \"primary\") | .postgres_pid'")]
pub struct Args {
    /// Which cluster.
    #[command(flatten)]
    pub target: Target,
    /// Output format: a table (text), or json/yaml with the same fields.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// One instance as shown.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    /// Member name.
    pub instance: String,
    /// primary, replica, stopped, starting, refused, or down (agent not answering).
    pub role: String,
    /// The state machine's phase.
    pub state: String,
    /// Serving its role.
    pub ready: bool,
    /// Timeline.
    pub timeline: u32,
    /// WAL position.
    pub lsn: String,
    /// Bytes behind the primary.
    pub lag_bytes: u64,
    /// The agent's PID (as recorded).
    pub agent_pid: Option<u32>,
    /// The postmaster's PID.
    pub postgres_pid: Option<u32>,
    /// PostgreSQL's port.
    pub pg_port: u16,
    /// The agent API's port.
    pub api_port: u16,
    /// The member it streams from.
    pub following: Option<String>,
}

/// The whole cluster as shown.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Data directory.
    pub data_dir: String,
    /// The rw endpoint's port.
    pub rw_port: u16,
    /// The ro endpoint's port.
    pub ro_port: u16,
    /// The lease holder.
    pub lease_holder: Option<String>,
    /// The lease term.
    pub lease_term: u64,
    /// Every instance.
    pub instances: Vec<InstanceStatus>,
}

/// Collects the status of every instance (agents asked in parallel, 1 s each).
pub async fn collect(layout: &Layout, record: &ClusterRecord) -> ClusterStatus {
    let view: ClusterView = cluster::coordinator(layout, Duration::from_millis(500))
        .ok()
        .and_then(|c| c.read_now().ok())
        .unwrap_or_default();
    let asks: Vec<_> = record
        .members
        .iter()
        .map(|m| {
            let addr = SocketAddr::from(([127, 0, 0, 1], m.api_port));
            tokio::spawn(async move { client::get(addr, "/status", Duration::from_secs(1)).await })
        })
        .collect();
    let mut instances = Vec::new();
    for (m, ask) in record.members.iter().zip(asks) {
        let agent: Option<AgentStatus> = match ask.await {
            Ok(Ok((200, body))) => serde_json::from_str(&body).ok(),
            _ => None,
        };
        let agent_alive = m
            .agent_pid
            .is_some_and(|p| cluster::pid_is_ours(p, Some(layout.root())));
        let published = view.members.get(&MemberName::new(m.name.clone()));
        let row = match agent {
            Some(a) => InstanceStatus {
                instance: m.name.clone(),
                role: a.role,
                state: a.state,
                ready: a.ready,
                timeline: a.timeline,
                lsn: a.lsn,
                lag_bytes: a.lag_bytes,
                agent_pid: Some(a.agent_pid),
                postgres_pid: a.postgres_pid,
                pg_port: m.pg_port,
                api_port: m.api_port,
                following: a.following,
            },
            None => InstanceStatus {
                instance: m.name.clone(),
                role: "down".to_owned(),
                state: if agent_alive {
                    "not answering"
                } else {
                    "agent not running"
                }
                .to_owned(),
                ready: false,
                timeline: published.map_or(0, |p| p.timeline.0),
                lsn: published.map_or("-".to_owned(), |p| p.flushed_lsn.to_string()),
                lag_bytes: 0,
                agent_pid: m.agent_pid.filter(|_| agent_alive),
                postgres_pid: None,
                pg_port: m.pg_port,
                api_port: m.api_port,
                following: None,
            },
        };
        instances.push(row);
    }
    let lease = view.lease.as_ref();
    ClusterStatus {
        name: record.name.clone(),
        data_dir: layout.root().display().to_string(),
        rw_port: record.rw_port,
        ro_port: record.ro_port,
        lease_holder: lease.and_then(|l| l.record.holder.as_ref().map(|h| h.to_string())),
        lease_term: lease.map_or(0, |l| l.record.term),
        instances,
    }
}

/// Prints the status.
pub fn exec(args: Args) -> Result<(), CliError> {
    let layout = args.target.layout();
    let record = layout.read_record().map_err(|e| fail(&e))?;
    let status = runtime()?.block_on(collect(&layout, &record));
    if let Some(text) = to_machine(&status, args.output)? {
        print!("{text}");
        return Ok(());
    }
    println!(
        "cluster {}  rw 127.0.0.1:{}  ro 127.0.0.1:{}  lease {} (term {})  data {}",
        status.name,
        status.rw_port,
        status.ro_port,
        status.lease_holder.as_deref().unwrap_or("-"),
        status.lease_term,
        status.data_dir
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "instance",
        "role",
        "state",
        "ready",
        "timeline",
        "lsn",
        "lag",
        "agent pid",
        "pg pid",
        "pg port",
        "api port",
    ]);
    let pid = |p: Option<u32>| p.map_or("-".to_owned(), |p| p.to_string());
    for i in &status.instances {
        table.add_row(vec![
            i.instance.clone(),
            i.role.clone(),
            i.state.clone(),
            if i.ready { "yes" } else { "no" }.to_owned(),
            i.timeline.to_string(),
            i.lsn.clone(),
            i.lag_bytes.to_string(),
            pid(i.agent_pid),
            pid(i.postgres_pid),
            i.pg_port.to_string(),
            i.api_port.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}
