//! `pgcluster status [NAME]`: one line per instance (role, state, timeline,
//! LSN, lag, PIDs or pod and node, ports).
//!
//! - Local (no NAME): the cluster of `--data-dir`, of `--name`, or the one
//!   running local cluster ([`super::local::Target`]); from each agent's
//!   `/status` and, for agents that do not run or answer, the state they last
//!   published. A cluster with no agent running is shown as `stopped`.
//! - Kubernetes (NAME): from the PostgresCluster's status, the leader Lease
//!   and the member states on the instance pods ([`super::kube::status_of`]).
//!
//! `-o json|yaml` prints [`ClusterStatus`] with the same fields in both
//! modes; a field that does not apply is `null` (local: `namespace`, `phase`,
//! `pod`, `node`; Kubernetes: `state`, `data_dir`, `agent_pid`, `postgres_pid`), and
//! `conditions` is empty locally.

use std::net::SocketAddr;
use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use pgcluster_ha::agent::AgentStatus;
use pgcluster_ha::agent::client;
use pgcluster_ha::local::layout::{ClusterRecord, Layout};
use pgcluster_ha::local::{cluster, discover};
use pgcluster_ha::machine::{ClusterView, MemberName};
use serde::Serialize;

use super::kube::{self, ClusterArgs, Route};
use super::local::{fail, runtime};
use crate::CliError;
use crate::output::{OutputFormat, to_machine};

/// Arguments of `pgcluster status`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pgcluster status                            # the running local cluster (pgcluster up)
  pgcluster status --name demo                # local cluster demo, running or not
  pgcluster status -o json | jq '.instances[] | select(.role == \"primary\") | .postgres_pid'
  pgcluster status main -n databases          # PostgresCluster main in Kubernetes
  kubectl pgcluster status main -n databases --context homelab")]
pub struct Args {
    /// Which cluster.
    #[command(flatten)]
    pub target: ClusterArgs,
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
    /// Kubernetes: the instance's pod (local: `null`).
    pub pod: Option<String>,
    /// Kubernetes: the node the pod runs on (local: `null`).
    pub node: Option<String>,
    /// Local: how often the supervisor restarted this member's agent since
    /// `up` (Kubernetes: `null`; the kubelet counts container restarts).
    pub restarts: Option<u32>,
}

/// Where the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `pgcluster up` on this machine.
    Local,
    /// A PostgresCluster in Kubernetes.
    Kubernetes,
}

/// One of the controller's conditions (Kubernetes only).
#[derive(Debug, Clone, Serialize)]
pub struct ConditionStatus {
    /// Ready, Available, Degraded, Progressing or SpecWarnings.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// What it means.
    pub message: String,
}

/// The whole cluster as shown.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// local or kubernetes.
    pub mode: Mode,
    /// Cluster name.
    pub name: String,
    /// Local: `running` (every agent runs), `degraded` (some do, or only
    /// servers without their agents) or `stopped` (nothing runs); Kubernetes: `null`.
    pub state: Option<String>,
    /// Kubernetes: the namespace (local: `null`).
    pub namespace: Option<String>,
    /// Kubernetes: the controller's phase (local: `null`).
    pub phase: Option<String>,
    /// Local: the data directory (Kubernetes: `null`).
    pub data_dir: Option<String>,
    /// The rw endpoint (`host:port`).
    pub rw_endpoint: Option<String>,
    /// The ro endpoint (`host:port`).
    pub ro_endpoint: Option<String>,
    /// The rw endpoint's port.
    pub rw_port: u16,
    /// The ro endpoint's port.
    pub ro_port: u16,
    /// The lease holder.
    pub lease_holder: Option<String>,
    /// The lease term.
    pub lease_term: u64,
    /// Kubernetes: the controller's conditions (local: empty).
    pub conditions: Vec<ConditionStatus>,
    /// Every instance.
    pub instances: Vec<InstanceStatus>,
}

/// A local agent's `/status` on `api_port` (1 s at most); `None` when it
/// does not answer with one.
pub async fn agent_status(api_port: u16) -> Option<AgentStatus> {
    let addr = SocketAddr::from(([127, 0, 0, 1], api_port));
    match client::get(addr, "/status", Duration::from_secs(1)).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
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
        .map(|m| tokio::spawn(agent_status(m.api_port)))
        .collect();
    let mut instances = Vec::new();
    for (m, ask) in record.members.iter().zip(asks) {
        let agent_alive = m
            .agent_pid
            .is_some_and(|p| cluster::pid_is_ours(p, Some(layout.root())));
        // Only this member's own agent counts: when it is not running, its
        // API port may be another cluster's (a stopped cluster once showed
        // a running one's agents as its own, healthy).
        let agent = ask
            .await
            .ok()
            .flatten()
            .filter(|a| agent_alive && a.cluster == record.name && a.member == m.name);
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
                pod: None,
                node: None,
                restarts: Some(m.restarts),
            },
            None => {
                // The server may outlive an unanswering agent for a moment
                // (until its fencer stops it): say so rather than "down".
                let server = pgcluster_ha::agent::supervise::postmaster_of(
                    &layout.member_layout(&m.name).data_dir,
                );
                InstanceStatus {
                instance: m.name.clone(),
                role: if server.is_some() { "unmanaged" } else { "down" }.to_owned(),
                state: match (agent_alive, server) {
                    (true, Some(_)) => "agent not answering; server running (fenced at its lease deadline)",
                    (true, None) => "not answering",
                    (false, Some(_)) => "agent not running; server still running (being fenced; `pgcluster down` stops it)",
                    (false, None) => "agent not running",
                }
                .to_owned(),
                ready: false,
                timeline: published.map_or(0, |p| p.timeline.0),
                lsn: published.map_or("-".to_owned(), |p| p.flushed_lsn.to_string()),
                lag_bytes: 0,
                agent_pid: m.agent_pid.filter(|_| agent_alive),
                postgres_pid: server,
                pg_port: m.pg_port,
                api_port: m.api_port,
                following: None,
                pod: None,
                node: None,
                restarts: Some(m.restarts),
            }
            }
        };
        instances.push(row);
    }
    let lease = view.lease.as_ref();
    let agents = instances.iter().filter(|i| i.agent_pid.is_some()).count();
    let state = if agents == instances.len() {
        "running"
    } else if discover::is_running(layout, record) {
        "degraded"
    } else {
        "stopped"
    };
    ClusterStatus {
        mode: Mode::Local,
        name: record.name.clone(),
        state: Some(state.to_owned()),
        namespace: None,
        phase: None,
        data_dir: Some(layout.root().display().to_string()),
        rw_endpoint: Some(format!("127.0.0.1:{}", record.rw_port)),
        ro_endpoint: Some(format!("127.0.0.1:{}", record.ro_port)),
        rw_port: record.rw_port,
        ro_port: record.ro_port,
        lease_holder: lease.and_then(|l| l.record.holder.as_ref().map(|h| h.to_string())),
        lease_term: lease.map_or(0, |l| l.record.term),
        conditions: vec![],
        instances,
    }
}

/// Prints the status.
pub fn exec(args: Args) -> Result<(), CliError> {
    let status = match args.target.route() {
        Route::Kube(target) => kube::status(&target)?,
        Route::Local(target) => {
            let layout = target.layout()?;
            let record = layout.read_record().map_err(|e| fail(&e))?;
            runtime()?.block_on(collect(&layout, &record))
        }
    };
    if let Some(text) = to_machine(&status, args.output)? {
        print!("{text}");
        return Ok(());
    }
    print!("{}", render(&status));
    Ok(())
}

/// The text form: a header line (and the conditions in Kubernetes), then
/// one table row per instance; the PID columns locally, pod and node in
/// Kubernetes.
pub fn render(status: &ClusterStatus) -> String {
    let or_dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
    let mut out = match status.mode {
        Mode::Local => format!(
            "cluster {} ({})  rw {}  ro {}  lease {} (term {})  data {}\n",
            status.name,
            or_dash(status.state.as_deref()),
            or_dash(status.rw_endpoint.as_deref()),
            or_dash(status.ro_endpoint.as_deref()),
            or_dash(status.lease_holder.as_deref()),
            status.lease_term,
            or_dash(status.data_dir.as_deref()),
        ),
        Mode::Kubernetes => format!(
            "cluster {}/{}  phase {}  rw {}  ro {}  lease {} (term {})\n",
            or_dash(status.namespace.as_deref()),
            status.name,
            or_dash(status.phase.as_deref()),
            or_dash(status.rw_endpoint.as_deref()),
            or_dash(status.ro_endpoint.as_deref()),
            or_dash(status.lease_holder.as_deref()),
            status.lease_term,
        ),
    };
    for c in &status.conditions {
        out.push_str(&format!(
            "  {:<12} {:<6} {}: {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    let (where_a, where_b) = match status.mode {
        Mode::Local => ("agent pid", "pg pid"),
        Mode::Kubernetes => ("pod", "node"),
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "instance", "role", "state", "ready", "timeline", "lsn", "lag", where_a, where_b,
        "pg port", "api port", "restarts",
    ]);
    let pid = |p: Option<u32>| p.map_or("-".to_owned(), |p| p.to_string());
    for i in &status.instances {
        let (a, b) = match status.mode {
            Mode::Local => (pid(i.agent_pid), pid(i.postgres_pid)),
            Mode::Kubernetes => (or_dash(i.pod.as_deref()), or_dash(i.node.as_deref())),
        };
        table.add_row(vec![
            i.instance.clone(),
            i.role.clone(),
            i.state.clone(),
            if i.ready { "yes" } else { "no" }.to_owned(),
            i.timeline.to_string(),
            i.lsn.clone(),
            i.lag_bytes.to_string(),
            a,
            b,
            i.pg_port.to_string(),
            i.api_port.to_string(),
            i.restarts.map_or("-".to_owned(), |r| r.to_string()),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    out
}
