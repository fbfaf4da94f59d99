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
    /// `synchronous_standby_names` as the server has it now.
    pub synchronous_standby_names: String,
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

/// Everything [`observe`] reads, in one statement: one round trip per
/// observation, and prepared once per connection by the agent
/// ([`observe_prepared`]). The primary-only and standby-only parts are
/// guarded by `CASE` (PostgreSQL evaluates only the branch taken), so the
/// same statement serves both roles.
pub const OBSERVE_SQL: &str = "SELECT pg_is_in_recovery(), \
     (SELECT system_identifier FROM pg_control_system()), \
     (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4, \
     current_setting('max_connections')::int4, \
     current_setting('synchronous_standby_names'), \
     CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_flush_lsn()::text END, \
     CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_lsn()) END, \
     pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
     CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) END, \
     (SELECT received_tli FROM pg_stat_wal_receiver), \
     coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false), \
     (SELECT coalesce(json_agg(json_build_array(application_name, coalesce(state, ''), \
        coalesce(sync_state, ''), flush_lsn::text, replay_lsn::text) ORDER BY application_name), \
        '[]')::text FROM pg_stat_replication)";

/// Reads the server's state with one statement ([`OBSERVE_SQL`]), prepared
/// for this call; see [`observe_prepared`] to prepare it once.
pub async fn observe(client: &tokio_postgres::Client) -> Result<ServerState, PgError> {
    let statement = prepare_observation(client).await?;
    observe_prepared(client, &statement).await
}

/// Prepares [`OBSERVE_SQL`] on `client`.
pub async fn prepare_observation(
    client: &tokio_postgres::Client,
) -> Result<tokio_postgres::Statement, PgError> {
    client
        .prepare(OBSERVE_SQL)
        .await
        .map_err(|source| query_error(OBSERVE_SQL, source))
}

/// Reads the server's state with `statement`, prepared on `client` by
/// [`prepare_observation`].
pub async fn observe_prepared(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
) -> Result<ServerState, PgError> {
    let sql = OBSERVE_SQL;
    let row = client
        .query_one(statement, &[])
        .await
        .map_err(|source| query_error(sql, source))?;
    let in_recovery: bool = row.get(0);
    let system_identifier: i64 = row.get(1);
    let in_use: i32 = row.get(2);
    let max: i32 = row.get(3);
    let mut state = ServerState {
        in_recovery,
        timeline: 0,
        system_identifier: system_identifier as u64,
        received_lsn: None,
        replayed_lsn: None,
        flushed_lsn: None,
        streaming: false,
        standbys: Vec::new(),
        connections: ConnectionUsage {
            in_use: in_use.max(0) as u32,
            max: max.max(0) as u32,
        },
        synchronous_standby_names: row.get(4),
    };
    if in_recovery {
        state.received_lsn = optional_lsn(row.get(7), sql)?;
        state.replayed_lsn = optional_lsn(row.get(8), sql)?;
        let checkpoint_tli: Option<i32> = row.get(9);
        let received_tli: Option<i32> = row.get(10);
        state.timeline = received_tli.unwrap_or(0).max(checkpoint_tli.unwrap_or(0)) as u32;
        state.streaming = row.get(11);
    } else {
        let flushed: Option<&str> = row.get(5);
        let walfile: Option<&str> = row.get(6);
        state.flushed_lsn = optional_lsn(flushed, sql)?;
        state.timeline = walfile
            .and_then(timeline_of_walfile)
            .ok_or_else(|| parse_error(sql, "bad WAL file name"))?;
        state.standbys = parse_standbys(row.get(12), sql)?;
    }
    Ok(state)
}

/// The standbys from the JSON array of
/// `[application_name, state, sync_state, flush_lsn, replay_lsn]` rows.
fn parse_standbys(json: &str, sql: &str) -> Result<Vec<StandbyState>, PgError> {
    type Row = (String, String, String, Option<String>, Option<String>);
    let rows: Vec<Row> =
        serde_json::from_str(json).map_err(|e| parse_error(sql, &e.to_string()))?;
    rows.into_iter()
        .map(|(application_name, state, sync_state, flush, replay)| {
            Ok(StandbyState {
                application_name,
                state,
                sync_state,
                flush_lsn: optional_lsn(flush.as_deref(), sql)?,
                replay_lsn: optional_lsn(replay.as_deref(), sql)?,
            })
        })
        .collect()
}

/// The timeline encoded in the first 8 hex digits of a WAL file name.
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    name.get(..8)
        .and_then(|tli| u32::from_str_radix(tli, 16).ok())
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

    /// The primary's standbys arrive as one JSON array; NULL positions stay `None`.
    #[test]
    fn standbys_from_json() {
        let json = r#"[["b-1","streaming","sync","0/3000060","0/3000060"],["c-2","catchup","async",null,null]]"#;
        let s = parse_standbys(json, "q").expect("parsed");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].application_name, "b-1");
        assert!(s[0].is_synchronous());
        assert_eq!(s[0].flush_lsn, Some(Lsn(0x0300_0060)));
        assert_eq!(s[1].replay_lsn, None);
        assert!(parse_standbys("[]", "q").expect("empty").is_empty());
        assert!(parse_standbys("{", "q").is_err());
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
            synchronous_standby_names: String::new(),
        };
        assert_eq!(state.wal_position(), Some(Lsn(10)));
    }
}
