//! What the agent observes about its local server, read through
//! tokio-postgres. Plain data: the state machine maps it into its own
//! observation type.

use serde::Serialize;

use super::error::PgError;
use crate::machine::Lsn;

/// The state of a running server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerState {
    /// `pg_is_in_recovery()`: a standby (or still recovering).
    pub in_recovery: bool,
    /// The timeline being written (primary) or received/replayed (standby).
    pub timeline: u32,
    /// `pg_control_system().system_identifier`: which cluster this is.
    pub system_identifier: u64,
    /// Standby: last WAL position received and flushed to disk.
    pub received_lsn: Option<Lsn>,
    /// Standby: last WAL position replayed.
    pub replayed_lsn: Option<Lsn>,
    /// Primary: WAL flushed locally (`pg_current_wal_flush_lsn()`).
    pub flushed_lsn: Option<Lsn>,
    /// Standby: whether the WAL receiver is streaming from a primary.
    pub streaming: bool,
    /// Primary: the standbys connected to it.
    pub standbys: Vec<StandbyState>,
    /// Client connections in use and the limit.
    pub connections: ConnectionUsage,
}

impl ServerState {
    /// The most advanced WAL position this server has durably: flushed on a
    /// primary, max(received, replayed) on a standby.
    pub fn wal_position(&self) -> Option<Lsn> {
        [self.flushed_lsn, self.received_lsn, self.replayed_lsn]
            .into_iter()
            .flatten()
            .max()
    }
}

/// One standby as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandbyState {
    /// `application_name` (pgcluster sets it to the member name).
    pub application_name: String,
    /// `state` (`streaming`, `catchup`, ...).
    pub state: String,
    /// `sync_state` (`sync`, `quorum`, `potential`, `async`).
    pub sync_state: String,
    /// WAL flushed on the standby.
    pub flush_lsn: Option<Lsn>,
    /// WAL replayed on the standby.
    pub replay_lsn: Option<Lsn>,
}

impl StandbyState {
    /// Whether commits wait for this standby (`sync` or `quorum`).
    pub fn is_synchronous(&self) -> bool {
        matches!(self.sync_state.as_str(), "sync" | "quorum")
    }
}

/// Client connections in use vs `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnectionUsage {
    /// Client backends now.
    pub in_use: u32,
    /// `max_connections`.
    pub max: u32,
}

impl super::Instance {
    /// Observes this instance over its Unix socket: `None` when it does not
    /// accept connections (stopped, starting up, crashed); errors only for
    /// failures after connecting.
    pub async fn observe(&self) -> Result<Option<ServerState>, PgError> {
        let client = match self.connect().await {
            Ok(client) => client,
            Err(PgError::Connect { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        observe(&client).await.map(Some)
    }
}

/// Reads the server's state: a handful of small queries on one connection.
pub async fn observe(client: &tokio_postgres::Client) -> Result<ServerState, PgError> {
    let in_recovery: bool = query_one(client, "SELECT pg_is_in_recovery()")
        .await?
        .get(0);
    let system_identifier: i64 =
        query_one(client, "SELECT system_identifier FROM pg_control_system()")
            .await?
            .get(0);
    let mut state = ServerState {
        in_recovery,
        timeline: 0,
        system_identifier: system_identifier as u64,
        received_lsn: None,
        replayed_lsn: None,
        flushed_lsn: None,
        streaming: false,
        standbys: Vec::new(),
        connections: connections(client).await?,
    };
    if in_recovery {
        observe_standby(client, &mut state).await?;
    } else {
        observe_primary(client, &mut state).await?;
    }
    Ok(state)
}

async fn observe_primary(
    client: &tokio_postgres::Client,
    state: &mut ServerState,
) -> Result<(), PgError> {
    let sql = "SELECT pg_current_wal_flush_lsn()::text, pg_walfile_name(pg_current_wal_lsn())";
    let row = query_one(client, sql).await?;
    state.flushed_lsn = Some(parse_lsn(row.get(0), sql)?);
    state.timeline =
        timeline_of_walfile(row.get(1)).ok_or_else(|| parse_error(sql, "bad WAL file name"))?;
    state.standbys = standbys(client).await?;
    Ok(())
}

async fn observe_standby(
    client: &tokio_postgres::Client,
    state: &mut ServerState,
) -> Result<(), PgError> {
    let sql = "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
               (SELECT timeline_id FROM pg_control_checkpoint()), \
               (SELECT received_tli FROM pg_stat_wal_receiver), \
               coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false)";
    let row = query_one(client, sql).await?;
    state.received_lsn = optional_lsn(row.get(0), sql)?;
    state.replayed_lsn = optional_lsn(row.get(1), sql)?;
    let checkpoint_tli: i32 = row.get(2);
    let received_tli: Option<i32> = row.get(3);
    state.timeline = received_tli.unwrap_or(0).max(checkpoint_tli) as u32;
    state.streaming = row.get(4);
    Ok(())
}

async fn standbys(client: &tokio_postgres::Client) -> Result<Vec<StandbyState>, PgError> {
    let sql = "SELECT application_name, coalesce(state, ''), coalesce(sync_state, ''), \
               flush_lsn::text, replay_lsn::text FROM pg_stat_replication ORDER BY application_name";
    let rows = client
        .query(sql, &[])
        .await
        .map_err(|source| query_error(sql, source))?;
    rows.iter()
        .map(|row| {
            Ok(StandbyState {
                application_name: row.get(0),
                state: row.get(1),
                sync_state: row.get(2),
                flush_lsn: optional_lsn(row.get(3), sql)?,
                replay_lsn: optional_lsn(row.get(4), sql)?,
            })
        })
        .collect()
}

async fn connections(client: &tokio_postgres::Client) -> Result<ConnectionUsage, PgError> {
    let sql = "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4, \
               current_setting('max_connections')::int4";
    let row = query_one(client, sql).await?;
    let in_use: i32 = row.get(0);
    let max: i32 = row.get(1);
    Ok(ConnectionUsage {
        in_use: in_use.max(0) as u32,
        max: max.max(0) as u32,
    })
}

/// The timeline encoded in the first 8 hex digits of a WAL file name.
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    name.get(..8)
        .and_then(|tli| u32::from_str_radix(tli, 16).ok())
}

async fn query_one(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<tokio_postgres::Row, PgError> {
    client
        .query_one(sql, &[])
        .await
        .map_err(|source| query_error(sql, source))
}

fn query_error(sql: &str, source: tokio_postgres::Error) -> PgError {
    PgError::Query {
        statement: sql.to_owned(),
        source,
    }
}

fn parse_error(sql: &str, detail: &str) -> PgError {
    PgError::Parse {
        command: sql.to_owned(),
        detail: detail.to_owned(),
    }
}

fn parse_lsn(text: &str, sql: &str) -> Result<Lsn, PgError> {
    text.parse()
        .map_err(|e: crate::machine::ParseLsnError| parse_error(sql, &e.to_string()))
}

fn optional_lsn(text: Option<&str>, sql: &str) -> Result<Option<Lsn>, PgError> {
    text.map(|t| parse_lsn(t, sql)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline comes from the WAL file name's first 8 hex digits.
    #[test]
    fn timeline_from_walfile_name() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000001A0000000000000003"), Some(26));
        assert_eq!(timeline_of_walfile("xyz"), None);
    }

    /// The most advanced position is used for ranking, whatever the role.
    #[test]
    fn wal_position_is_the_maximum() {
        let state = ServerState {
            in_recovery: true,
            timeline: 1,
            system_identifier: 1,
            received_lsn: Some(Lsn(10)),
            replayed_lsn: Some(Lsn(7)),
            flushed_lsn: None,
            streaming: true,
            standbys: vec![],
            connections: ConnectionUsage {
                in_use: 1,
                max: 100,
            },
        };
        assert_eq!(state.wal_position(), Some(Lsn(10)));
    }
}
