use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Streaming replication between the primary and its replicas.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// `async` (default) or `sync`: in sync mode a commit is acknowledged only once a
    /// synchronous standby has flushed it, and only a synchronous standby may be promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ReplicationMode>,
    /// In sync mode, what the primary does when no standby is healthy: `block`
    /// (default; writes wait, nothing acknowledged can be lost) or `fallbackToAsync`
    /// (writes continue unreplicated until a standby returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_no_standby: Option<NoStandbyPolicy>,
    /// Largest replication lag a replica may have and still be promoted by an
    /// automatic failover, as a byte quantity (default `16Mi`). Used in async mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failover_lag: Option<String>,
}

/// Replication mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReplicationMode {
    /// Commits are acknowledged once the primary flushed them.
    #[default]
    Async,
    /// Commits are acknowledged once a synchronous standby flushed them too.
    Sync,
}

/// What a sync-mode primary does when no standby is healthy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NoStandbyPolicy {
    /// Writes wait until a standby confirms them (no acknowledged write can be lost).
    #[default]
    Block,
    /// Writes continue without a synchronous standby (availability over durability).
    FallbackToAsync,
}

/// Leader lease and loop timings. Durations are Go-style strings such as `500ms`, `2s`, `1m`.
/// Defaults differ by platform: local mode (`pgcluster up`) / Kubernetes, where an API
/// server's latency needs more room.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// How long a lease stays valid after its last renewal: the upper bound on
    /// how long a dead primary keeps the role (default `2s` / `4s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration: Option<String>,
    /// How often each agent observes PostgreSQL and the coordinator (default `250ms` / `400ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_interval: Option<String>,
    /// How long after its last successful renewal a primary keeps trying before it
    /// fences itself (default `1200ms` / `2400ms`). Must leave room for `stopWritesTimeout` and
    /// `maxClockDrift` before the lease expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_deadline: Option<String>,
    /// Budget for a fencing primary to stop accepting writes (immediate stop) (default `500ms` / `800ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_writes_timeout: Option<String>,
    /// Largest clock drift between members the safety margin allows for (default `200ms` / `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_drift: Option<String>,
    /// Whether replicas take over automatically when the primary's lease expires (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic: Option<bool>,
}
