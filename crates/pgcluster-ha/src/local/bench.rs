//! pgbench-based measurements of the router, for `pgcluster bench` and the
//! `router_bench` example: select-only TPS directly vs through the router
//! (the ratio is the figure of merit), and many concurrent connections
//! through the router (errors and p95 latency from pgbench's
//! per-transaction log).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Where pgbench connects.
#[derive(Clone)]
pub struct BenchTarget {
    /// Host (127.0.0.1).
    pub host: String,
    /// Port (the server's or the router's).
    pub port: u16,
    /// Role.
    pub user: String,
    /// Its password (passed through `PGPASSWORD`, never the command line).
    pub password: String,
    /// Database.
    pub dbname: String,
}

impl std::fmt::Debug for BenchTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// One pgbench run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchRun {
    /// Concurrent clients (`-c`).
    pub clients: u32,
    /// Worker threads (`-j`).
    pub threads: u32,
    /// Duration (`-T`, whole seconds, at least 1).
    pub duration: Duration,
    /// Built-in select-only script (`-S`); otherwise TPC-B-like.
    pub select_only: bool,
    /// Write a per-transaction log to compute latency percentiles.
    pub log_latencies: bool,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    /// Transactions per second (without initial connection time).
    pub tps: f64,
    /// Transactions processed.
    pub transactions: u64,
    /// Failed transactions pgbench reported.
    pub failed_transactions: u64,
    /// Clients that aborted (connection errors and the like).
    pub aborted_clients: u64,
    /// Mean latency from pgbench's summary, in ms.
    pub latency_avg_ms: Option<f64>,
    /// 95th percentile latency from the per-transaction log, in ms.
    pub latency_p95_ms: Option<f64>,
}

impl BenchResult {
    /// Failed transactions plus aborted clients.
    pub fn errors(&self) -> u64 {
        self.failed_transactions + self.aborted_clients
    }
}

/// Direct vs routed select-only throughput measured in the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterOverhead {
    /// Best direct run.
    pub direct: BenchResult,
    /// Best run through the router.
    pub routed: BenchResult,
    /// routed.tps / direct.tps (1.0 = no overhead).
    pub ratio: f64,
}

/// Failures of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// pgbench could not be started.
    #[error(
        "failed to start `{command}`; check the pgbench path (e.g. /usr/lib/postgresql/15/bin/pgbench)"
    )]
    Spawn {
        /// The command line.
        command: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// pgbench failed without producing results.
    #[error(
        "failed to run `{command}` ({status}): {stderr}; check that the target accepts connections"
    )]
    Failed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Last lines of stderr.
        stderr: String,
    },
    /// Its output had no TPS line.
    #[error(
        "failed to read the results of `{command}`: no `tps =` line in its output; it ended with:\n{output}"
    )]
    NoResults {
        /// The command line.
        command: String,
        /// The last lines of its stdout and stderr.
        output: String,
    },
    /// The latency log could not be read.
    #[error("failed to read pgbench's latency log in {}", .dir.display())]
    Log {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BenchError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "spawn",
            Self::Failed { .. } | Self::NoResults { .. } => "pgbench",
            Self::Log { .. } => "log",
        }
    }
}

fn command(pgbench: &Path, target: &BenchTarget, workdir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(pgbench);
    cmd.current_dir(workdir)
        .env("PGPASSWORD", &target.password)
        .arg("-h")
        .arg(&target.host)
        .arg("-p")
        .arg(target.port.to_string())
        .arg("-U")
        .arg(&target.user)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn describe(cmd: &tokio::process::Command) -> String {
    let std = cmd.as_std();
    std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `pgbench -i -s scale` (creates and fills the pgbench tables).
pub async fn init(pgbench: &Path, target: &BenchTarget, scale: u32) -> Result<(), BenchError> {
    let mut cmd = command(pgbench, target, Path::new("/"));
    cmd.args(["-i", "-q", "-s", &scale.to_string()])
        .arg(&target.dbname);
    let command = describe(&cmd);
    let out = cmd.output().await.map_err(|source| BenchError::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Failed {
            command,
            status: out.status.to_string(),
            stderr: last_lines(&String::from_utf8_lossy(&out.stderr), 5),
        })
    }
}

/// Runs pgbench once against `target`. The per-transaction log (if asked
/// for) goes to a fresh directory below `scratch` and is removed afterwards.
pub async fn run(
    pgbench: &Path,
    target: &BenchTarget,
    spec: &BenchRun,
    scratch: &Path,
) -> Result<BenchResult, BenchError> {
    let logdir = scratch.join(format!("pgbench-{}-{}", target.port, std::process::id()));
    std::fs::create_dir_all(&logdir).map_err(|source| BenchError::Log {
        dir: logdir.clone(),
        source,
    })?;
    let mut cmd = command(pgbench, target, &logdir);
    cmd.args([
        "-n",
        "-c",
        &spec.clients.to_string(),
        "-j",
        &spec.threads.to_string(),
    ])
    .args(["-T", &spec.duration.as_secs().max(1).to_string()]);
    if spec.select_only {
        cmd.arg("-S");
    }
    if spec.log_latencies {
        cmd.args(["-l", "--log-prefix=tx"]);
    }
    cmd.arg(&target.dbname);
    let command = describe(&cmd);
    let out = cmd.output().await.map_err(|source| BenchError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Some(summary) = parse_summary(&stdout) else {
        let _ = std::fs::remove_dir_all(&logdir);
        return Err(if out.status.success() {
            BenchError::NoResults {
                command,
                output: format!("{}\n{}", last_lines(&stdout, 5), last_lines(&stderr, 5)),
            }
        } else {
            BenchError::Failed {
                command,
                status: out.status.to_string(),
                stderr: last_lines(&stderr, 5),
            }
        });
    };
    let p95 = if spec.log_latencies {
        let mut latencies = read_latency_logs(&logdir)?;
        percentile_ms(&mut latencies, 0.95)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&logdir);
    Ok(BenchResult {
        tps: summary.tps,
        transactions: summary.transactions,
        failed_transactions: summary.failed,
        aborted_clients: count_aborted(&stderr),
        latency_avg_ms: summary.latency_avg_ms,
        latency_p95_ms: p95,
    })
}

/// Select-only TPS directly and through the router, alternating
/// `rounds` times (so that both see the same machine load); keeps the best
/// run of each.
pub async fn compare_direct_vs_routed(
    pgbench: &Path,
    direct: &BenchTarget,
    routed: &BenchTarget,
    spec: &BenchRun,
    rounds: u32,
    scratch: &Path,
) -> Result<RouterOverhead, BenchError> {
    let mut best: (Option<BenchResult>, Option<BenchResult>) = (None, None);
    for _ in 0..rounds.max(1) {
        let d = run(pgbench, direct, spec, scratch).await?;
        let r = run(pgbench, routed, spec, scratch).await?;
        if best.0.as_ref().is_none_or(|b| d.tps > b.tps) {
            best.0 = Some(d);
        }
        if best.1.as_ref().is_none_or(|b| r.tps > b.tps) {
            best.1 = Some(r);
        }
    }
    let direct = best
        .0
        .expect("at least one round ran because rounds.max(1) >= 1");
    let routed = best
        .1
        .expect("at least one round ran because rounds.max(1) >= 1");
    let ratio = if direct.tps > 0.0 {
        routed.tps / direct.tps
    } else {
        0.0
    };
    Ok(RouterOverhead {
        direct,
        routed,
        ratio,
    })
}

/// The numbers from pgbench's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `tps = ...`.
    pub tps: f64,
    /// `number of transactions actually processed: N`.
    pub transactions: u64,
    /// `number of failed transactions: N`.
    pub failed: u64,
    /// `latency average = X ms`.
    pub latency_avg_ms: Option<f64>,
}

/// Parses pgbench's summary on stdout; `None` without a `tps =` line.
pub fn parse_summary(stdout: &str) -> Option<Summary> {
    let after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|n| n.split('/').next().unwrap_or(n).to_owned())
    };
    let tps = after("tps = ")?.parse().ok()?;
    Some(Summary {
        tps,
        transactions: after("number of transactions actually processed:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        failed: after("number of failed transactions:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        latency_avg_ms: after("latency average = ").and_then(|n| n.parse().ok()),
    })
}

/// Latencies in µs from every `tx*` log file in `dir` (failed and skipped
/// transactions are left out).
fn read_latency_logs(dir: &Path) -> Result<Vec<u64>, BenchError> {
    let io = |source| BenchError::Log {
        dir: dir.to_owned(),
        source,
    };
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tx"))
        {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            latencies.extend(parse_latency_log(&text));
        }
    }
    Ok(latencies)
}

/// The latency column (third field, µs) of a pgbench transaction log.
pub fn parse_latency_log(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

/// The `p` quantile (0..=1) of latencies in µs, in ms (nearest rank).
pub fn percentile_ms(latencies_us: &mut [u64], p: f64) -> Option<f64> {
    if latencies_us.is_empty() {
        return None;
    }
    latencies_us.sort_unstable();
    let rank = ((p.clamp(0.0, 1.0) * latencies_us.len() as f64).ceil() as usize)
        .clamp(1, latencies_us.len());
    Some(latencies_us[rank - 1] as f64 / 1000.0)
}

fn count_aborted(stderr: &str) -> u64 {
    stderr.lines().filter(|l| l.contains("aborted")).count() as u64
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "pgbench (15.8 (Debian 15.8-1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 104273
number of failed transactions: 0 (0.000%)
latency average = 0.383 ms
initial connection time = 12.204 ms
tps = 20868.129419 (without initial connection time)
";

    /// The summary numbers are read from pgbench 15's output.
    #[test]
    fn parses_pgbench_summary() {
        let s = parse_summary(OUTPUT).expect("has tps");
        assert!((s.tps - 20868.129419).abs() < 1e-6);
        assert_eq!(s.transactions, 104_273);
        assert_eq!(s.failed, 0);
        assert_eq!(s.latency_avg_ms, Some(0.383));
        assert_eq!(parse_summary("nothing"), None);
    }

    /// p95 by nearest rank, in ms; failed lines skipped.
    #[test]
    fn p95_from_transaction_log() {
        let log = "0 1 100 0 1700000000 1\n0 2 failed 0 1700000000 2\n1 1 300 0 1700000000 3\n";
        let mut lat: Vec<u64> = parse_latency_log(log).collect();
        assert_eq!(lat, vec![100, 300]);
        assert_eq!(percentile_ms(&mut lat, 0.95), Some(0.3));
        let mut many: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile_ms(&mut many, 0.95), Some(0.095));
        assert_eq!(percentile_ms(&mut [], 0.95), None);
    }
}
