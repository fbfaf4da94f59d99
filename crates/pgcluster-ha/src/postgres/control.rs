//! Role changes and settings applied over SQL: promotion,
//! synchronous_standby_names, the read-only fence, physical slots.

use std::time::Duration;

use super::error::PgError;

/// Promotes a standby and waits (up to `wait_seconds`) until it accepts writes.
///
/// Signals the promotion (`pg_promote(wait => false)`) and then polls
/// `pg_is_in_recovery()` every 5 ms: `pg_promote(wait => true)` polls only
/// every 100 ms, which would add up to 100 ms to every switchover.
pub async fn promote(client: &tokio_postgres::Client, wait_seconds: i32) -> Result<(), PgError> {
    let sql = "SELECT pg_promote(wait => false)";
    let signalled: bool = client
        .query_one(sql, &[])
        .await
        .map_err(|source| query_error(sql, source))?
        .get(0);
    let timed_out = || PgError::PromoteTimedOut {
        seconds: wait_seconds,
    };
    if !signalled {
        return Err(timed_out());
    }
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(u64::try_from(wait_seconds).unwrap_or(0));
    let sql = "SELECT pg_is_in_recovery()";
    loop {
        let in_recovery: bool = client
            .query_one(sql, &[])
            .await
            .map_err(|source| query_error(sql, source))?
            .get(0);
        if !in_recovery {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `CHECKPOINT`: after a promotion, makes the control file name the new
/// timeline (pg_rewind against this server needs that).
pub async fn checkpoint(client: &tokio_postgres::Client) -> Result<(), PgError> {
    let sql = "CHECKPOINT";
    client
        .batch_execute(sql)
        .await
        .map_err(|source| query_error(sql, source))
}

/// After a change of `synchronous_standby_names` on a primary: waits (up to
/// `wait`) until a walsender has taken a listed standby as synchronous, then
/// commits one transaction without waiting for standbys. PostgreSQL checks
/// waiting commits against the new setting only when a standby replies,
/// and an idle standby replies only when WAL arrives or
/// `wal_receiver_status_interval` passes: without this a commit that began
/// before the change waited seconds (measured: 4.7 s after a failover).
/// Returns whether a synchronous standby was there to nudge.
pub async fn nudge_sync_standbys(
    client: &tokio_postgres::Client,
    wait: Duration,
) -> Result<bool, PgError> {
    let sql = "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')";
    let started = std::time::Instant::now();
    loop {
        let n: i64 = client
            .query_one(sql, &[])
            .await
            .map_err(|source| query_error(sql, source))?
            .get(0);
        if n > 0 {
            break;
        }
        if started.elapsed() >= wait {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let nudge = "BEGIN; SET LOCAL synchronous_commit = local; SELECT pg_current_xact_id(); COMMIT";
    client
        .batch_execute(nudge)
        .await
        .map_err(|source| query_error(nudge, source))?;
    Ok(true)
}

/// `pg_reload_conf()`.
pub async fn reload(client: &tokio_postgres::Client) -> Result<(), PgError> {
    let sql = "SELECT pg_reload_conf()";
    client
        .batch_execute(sql)
        .await
        .map_err(|source| query_error(sql, source))
}

/// The physical slot name for a member: lower case, `-` and `.` become `_`.
pub fn slot_name_for(member: &str) -> Result<String, PgError> {
    let name: String = member
        .chars()
        .map(|c| {
            if c == '-' || c == '.' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    validate_slot_name(&name)?;
    Ok(name)
}

fn validate_slot_name(name: &str) -> Result<(), PgError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PgError::InvalidName {
            what: "replication slot",
            value: name.to_owned(),
        })
    }
}

/// A physical replication slot on this server (`pg_replication_slots`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotState {
    /// Slot name.
    pub name: String,
    /// A standby is streaming through it now.
    pub active: bool,
    /// Oldest WAL the slot keeps (None once invalidated).
    pub restart_lsn: Option<super::Lsn>,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

/// Creates a physical slot that reserves WAL at once; no-op when it exists.
/// Returns whether it was created.
pub async fn create_physical_slot(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<bool, PgError> {
    validate_slot_name(name)?;
    let sql = "SELECT count(pg_create_physical_replication_slot($1, true)) FROM (SELECT 1) AS one \
               WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";
    let created: i64 = client
        .query_one(sql, &[&name])
        .await
        .map_err(|source| query_error(sql, source))?
        .get(0);
    Ok(created > 0)
}

/// Drops a physical slot (a member left for good), terminating the walsender
/// that uses it first; no-op when missing. Returns whether it was dropped.
pub async fn drop_physical_slot(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<bool, PgError> {
    validate_slot_name(name)?;
    let kill = "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL";
    client
        .execute(kill, &[&name])
        .await
        .map_err(|source| query_error(kill, source))?;
    let sql = "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots \
               WHERE slot_name = $1 AND NOT active";
    for _ in 0..50 {
        let dropped: i64 = client
            .query_one(sql, &[&name])
            .await
            .map_err(|source| query_error(sql, source))?
            .get(0);
        if dropped > 0 || !slot_exists(client, name).await? {
            return Ok(dropped > 0);
        }
        // The terminated walsender releases the slot a moment later.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(false)
}

async fn slot_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool, PgError> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";
    Ok(client
        .query_one(sql, &[&name])
        .await
        .map_err(|source| query_error(sql, source))?
        .get(0))
}

/// The physical slots on this server.
pub async fn list_physical_slots(
    client: &tokio_postgres::Client,
) -> Result<Vec<SlotState>, PgError> {
    let sql = "SELECT slot_name::text, active, restart_lsn::text, wal_status FROM pg_replication_slots \
               WHERE slot_type = 'physical' ORDER BY slot_name";
    let rows = client
        .query(sql, &[])
        .await
        .map_err(|source| query_error(sql, source))?;
    rows.iter()
        .map(|row| {
            let restart: Option<&str> = row.get(2);
            Ok(SlotState {
                name: row.get(0),
                active: row.get(1),
                restart_lsn: restart
                    .map(|t| {
                        t.parse()
                            .map_err(|e: crate::machine::ParseLsnError| PgError::Parse {
                                command: sql.to_owned(),
                                detail: e.to_string(),
                            })
                    })
                    .transpose()?,
                wal_status: row.get(3),
            })
        })
        .collect()
}

fn query_error(sql: &str, source: tokio_postgres::Error) -> PgError {
    PgError::Query {
        statement: sql.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Member names map to valid slot names; unsafe ones are refused.
    #[test]
    fn slot_names() {
        assert_eq!(slot_name_for("Demo-1.x").expect("valid"), "demo_1_x");
        assert!(slot_name_for("a'b").is_err());
        assert!(slot_name_for("").is_err());
        assert!(slot_name_for(&"a".repeat(64)).is_err());
    }
}
