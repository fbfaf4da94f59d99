//! [`AgentStatus`]: what one agent reports about itself (`GET /status`, the
//! metrics and `pgcluster status`). Plain serde data, shared by the agent and
//! its readers.

use serde::{Deserialize, Serialize};

/// One agent's view of itself, refreshed every loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Cluster name.
    pub cluster: String,
    /// This member.
    pub member: String,
    /// `primary`, `replica`, `stopped`, `starting` or `refused`.
    pub role: String,
    /// The machine's phase (`Primary`, `Replica`, `Fenced`, ...).
    pub state: String,
    /// Serving its role: a writable primary holding the lease, or a streaming replica.
    pub ready: bool,
    /// PostgreSQL accepts connections.
    pub running: bool,
    /// Current timeline.
    pub timeline: u32,
    /// WAL position (primary: flushed; replica: received or replayed, the larger).
    pub lsn: String,
    /// The same as a number of bytes.
    pub lsn_bytes: u64,
    /// Bytes behind the lease's last known primary position (replicas), 0 on the primary.
    pub lag_bytes: u64,
    /// The member it streams from.
    pub following: Option<String>,
    /// The postmaster's PID while it runs.
    pub postgres_pid: Option<u32>,
    /// The agent's PID.
    pub agent_pid: u32,
    /// PostgreSQL's TCP port.
    pub pg_port: u16,
    /// The agent API's TCP port.
    pub api_port: u16,
    /// The lease holder as last read.
    pub lease_holder: Option<String>,
    /// The lease term as last read.
    pub lease_term: u64,
    /// Client connections in use.
    pub connections: u32,
    /// `max_connections`.
    pub max_connections: u32,
    /// Promotions this agent carried out after a lease expiry.
    pub failovers_total: u64,
    /// Promotions this agent carried out after a hand-over.
    pub switchovers_total: u64,
    /// Times the watchdog fenced PostgreSQL.
    pub watchdog_fired: u64,
    /// The last action that failed, with its error.
    pub last_error: Option<String>,
    /// Why the last forced failover naming this member was refused or is waiting.
    #[serde(default)]
    pub note: Option<String>,
}

impl AgentStatus {
    /// `GET /readyz`: whether the member serves its role.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}
