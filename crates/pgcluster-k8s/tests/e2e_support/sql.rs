//! SQL from the node's network namespace (see [`super::node`]): one-off
//! queries against a pod IP or a Service ClusterIP, and a writer that
//! commits one row at a time and records which commits were acknowledged
//! and when, for lost-write checks and write windows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::node::in_node_net;

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// IP address (a pod's or a Service's ClusterIP).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database.
    pub dbname: String,
}

impl Target {
    /// The same credentials at another address.
    pub fn at(&self, host: &str) -> Target {
        Target {
            host: host.to_owned(),
            ..self.clone()
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<tokio_postgres::Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname)
            .application_name("pgcluster-e2e")
            .connect_timeout(timeout);
        let (client, connection) =
            tokio::time::timeout(timeout, config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| format!("connecting to {}: timed out", self.host))?
                .map_err(|e| format!("connecting to {}: {e}", self.host))?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// Runs `sql` (simple query protocol, several statements allowed) on
/// `target` from the node's network namespace; returns the rows' columns as
/// text.
pub async fn query(target: &Target, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let target = target.clone();
    let sql = sql.to_owned();
    super::node::node_net("e2e-query", move || async move {
        let client = target.connect(Duration::from_secs(5)).await?;
        let messages = tokio::time::timeout(Duration::from_secs(20), client.simple_query(&sql))
            .await
            .map_err(|_| format!("{sql} on {}: timed out", target.host))?
            .map_err(|e| format!("{sql} on {}: {e}", target.host))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    })
    .await
}

/// The single value of a one-row, one-column answer.
pub async fn scalar(target: &Target, sql: &str) -> Result<String, String> {
    let rows = query(target, sql).await?;
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| format!("{sql} on {}: no value in {rows:?}", target.host))
}

/// One acknowledged commit.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    /// The row's id.
    pub id: i64,
    /// When the INSERT was sent.
    pub sent: Instant,
    /// When its commit was acknowledged.
    pub acked: Instant,
}

/// What a writer did.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// Acknowledged commits, in order.
    pub acks: Vec<Ack>,
    /// Failed attempts (connection or statement): when, and why.
    pub failures: Vec<(Instant, String)>,
}

impl WriterLog {
    /// The first acknowledged commit sent at or after `t`.
    pub fn first_sent_after(&self, t: Instant) -> Option<Ack> {
        self.acks.iter().copied().find(|a| a.sent >= t)
    }

    /// The last commit acknowledged before `t`.
    pub fn last_acked_before(&self, t: Instant) -> Option<Ack> {
        self.acks.iter().copied().rev().find(|a| a.acked < t)
    }
}

/// A writer committing one row at a time into `table (id bigint primary
/// key, at timestamptz)` through `target`, reconnecting after any error,
/// until stopped or `max_run` passed.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<WriterLog>,
}

impl Writer {
    /// Starts writing ids `first_id..` from the node's network namespace,
    /// one INSERT every `pace` at most.
    pub fn start(name: &str, target: Target, table: &str, first_id: i64, pace: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let insert = format!("INSERT INTO {table} (id, at) VALUES ($1, clock_timestamp())");
        let max_run = Duration::from_secs(600);
        let handle = in_node_net(name, move || async move {
            let started = Instant::now();
            let mut log = WriterLog::default();
            let mut client: Option<tokio_postgres::Client> = None;
            let mut id = first_id;
            while !stop2.load(Ordering::SeqCst) && started.elapsed() < max_run {
                let tick = Instant::now();
                if client
                    .as_ref()
                    .is_none_or(tokio_postgres::Client::is_closed)
                {
                    match target.connect(Duration::from_millis(1_000)).await {
                        Ok(c) => client = Some(c),
                        Err(e) => {
                            log.failures.push((tick, e));
                            tokio::time::sleep(pace).await;
                            continue;
                        }
                    }
                }
                let c = client.as_ref().expect("connected above");
                let sent = Instant::now();
                match tokio::time::timeout(Duration::from_secs(3), c.execute(&insert, &[&id])).await
                {
                    Ok(Ok(1)) => {
                        log.acks.push(Ack {
                            id,
                            sent,
                            acked: Instant::now(),
                        });
                        acked2.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Ok(n)) => log.failures.push((sent, format!("insert {id}: {n} rows"))),
                    Ok(Err(e)) => {
                        log.failures.push((sent, format!("insert {id}: {e}")));
                        client = None;
                    }
                    Err(_) => {
                        log.failures.push((sent, format!("insert {id}: timed out")));
                        client = None;
                    }
                }
                // Every id is used once: an unacknowledged insert may still
                // have committed, and must not collide with a later one.
                id += 1;
                let spent = tick.elapsed();
                if spent < pace {
                    tokio::time::sleep(pace - spent).await;
                }
            }
            log
        });
        Self {
            stop,
            acked,
            handle,
        }
    }

    /// Commits acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Stops the writer and returns its log.
    pub async fn finish(self) -> WriterLog {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.handle;
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .expect("the joining task is not cancelled")
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

/// Every id of `acks` missing from `present`.
pub fn missing(acks: &[Ack], present: &std::collections::BTreeSet<i64>) -> Vec<i64> {
    acks.iter()
        .map(|a| a.id)
        .filter(|id| !present.contains(id))
        .collect()
}

/// `values` sorted: (min, median, max), or `None` when empty.
pub fn min_median_max(values: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    let mut v = values.to_vec();
    v.sort();
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}
