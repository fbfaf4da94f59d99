//! `pgcluster bench failover`: measures, on this machine, what a client of
//! the rw port sees during node crashes (agent + postmaster killed together,
//! kill -9) and switchovers, with a writer committing a counter every 20 ms:
//! the write-unavailability window, the time to promotion and acknowledged
//! writes lost; then the router's overhead against direct connections
//! (pgbench select-only) and 200 concurrent connections through it.
//!
//! `pgcluster bench idle`: what a healthy cluster nobody uses costs, per
//! process (CPU per minute and PSS), against the idle goals.
//!
//! `pgcluster bench kubernetes`: what an idle 2-instance cluster costs the
//! API server (requests per minute by verb and resource, from its audit
//! log, and the controller's reconciles), on the real single-node
//! Kubernetes of the test suite: it runs the repository's
//! `scripts/test-k8s` with the one test that measures it, over the window.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcluster_ha::local::bench::{self, BenchRun, BenchTarget};
use pgcluster_ha::local::cluster;
use pgcluster_ha::local::layout::{ClusterRecord, Layout};
use pgcluster_ha::postgres::PgBinaries;

use super::local::{fail, runtime};
use super::status::collect;
use super::switchover::request_and_wait;
use crate::CliError;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Node-crash failover, switchover and router overhead.
    Failover,
    /// CPU and memory of an idle cluster's processes.
    Idle,
    /// API server requests of an idle cluster on the test Kubernetes.
    Kubernetes,
}

/// Replication modes to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Synchronous replication.
    Sync,
    /// Asynchronous replication.
    Async,
    /// Both, one after the other.
    Both,
}

/// Arguments of `pgcluster bench`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Runs its own local clusters (default timings) in temporary directories \
and removes them afterwards. Takes a few minutes.

Examples:
  pgcluster bench failover
  pgcluster bench failover --kills 3 --switchovers 3 --mode sync
  pgcluster bench failover --mode sync --instances 3 --skip-router
  pgcluster bench failover --exe ./pgcluster-old      # the clusters run an older build
  pgcluster bench idle                       # a fresh default cluster, 60 s window
  pgcluster bench idle --window 20 --data-dir ~/.local/share/pgcluster/local
  pgcluster bench kubernetes --window 300    # in a checkout: runs the test Kubernetes"
)]
pub struct Args {
    /// What to measure.
    pub kind: Kind,
    /// Node crashes per mode.
    #[arg(long, default_value_t = 10)]
    pub kills: u32,
    /// Switchovers per mode.
    #[arg(long, default_value_t = 5)]
    pub switchovers: u32,
    /// Replication mode(s).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// Instances per cluster (with two, a sync-mode crash window includes
    /// the crashed node's re-join: block mode acknowledges nothing without a standby).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=5))]
    pub instances: u8,
    /// Base port of the benchmark clusters.
    #[arg(long = "port", default_value_t = 25432)]
    pub port: u16,
    /// Skip the pgbench router measurements.
    #[arg(long)]
    pub skip_router: bool,
    /// idle, kubernetes: how long to measure, in seconds (figures are per
    /// minute); default 60 (idle) or 300 (kubernetes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub window: Option<u64>,
    /// kubernetes: the pgcluster checkout whose scripts/test-k8s builds and
    /// starts the test Kubernetes.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// idle: measure this running cluster instead of starting a fresh one
    /// with the default spec.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The pgcluster binary the benchmark clusters run (default: this one),
    /// e.g. to compare an older build with this one in the same sitting.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
}

impl Args {
    /// The binary the benchmark clusters run.
    fn cluster_exe(&self) -> Result<PathBuf, CliError> {
        match &self.exe {
            Some(exe) => Ok(exe.clone()),
            None => std::env::current_exe().map_err(|e| fail(&e)),
        }
    }
}

#[derive(Default)]
struct Acks {
    rows: Vec<(i64, Instant)>,
}

/// The longest gap between two consecutive acknowledgements from `from`
/// up to the first acknowledgement after `until`.
fn max_gap(acks: &Arc<Mutex<Acks>>, from: Instant, until: Instant) -> Option<f64> {
    let rows = acks.lock().expect("acks lock is never poisoned");
    let times: Vec<Instant> = rows.rows.iter().map(|r| r.1).collect();
    let start = times.iter().rposition(|t| *t <= from)?;
    let end = times.iter().position(|t| *t > until)?;
    times[start..=end]
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))))
}

fn stats(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    format!(
        "min {:.2} s / median {:.2} s / max {:.2} s",
        s[0],
        s[s.len() / 2],
        s[s.len() - 1]
    )
}

/// Runs the benchmark and prints the figures.
pub fn exec(args: Args) -> Result<(), CliError> {
    let _telemetry = crate::telemetry::init_from_env("error", "pgcluster")?;
    if args.kind == Kind::Idle {
        return runtime()?.block_on(idle(&args));
    }
    if args.kind == Kind::Kubernetes {
        return kubernetes(&args);
    }
    let modes: &[&str] = match args.mode {
        Mode::Sync => &["sync"],
        Mode::Async => &["async"],
        Mode::Both => &["sync", "async"],
    };
    let rt = runtime()?;
    for (i, mode) in modes.iter().enumerate() {
        let router = !args.skip_router && i == 0;
        rt.block_on(one_mode(&args, mode, router))?;
    }
    Ok(())
}

/// The one test that measures an idle cluster's API requests.
const KUBERNETES_IDLE_TEST: &str = "quiet::idle_cluster_is_quiet_on_the_api_server";

/// Runs `scripts/test-k8s` for [`KUBERNETES_IDLE_TEST`] over the window and
/// repeats its summary line last.
fn kubernetes(args: &Args) -> Result<(), CliError> {
    let script = args.repo.join("scripts/test-k8s");
    if !script.is_file() {
        return Err(CliError::Failed(format!(
            "{} not found: pgcluster bench kubernetes runs the repository's scripts/test-k8s \
             (it builds and starts the test Kubernetes); run it in a pgcluster checkout or pass --repo DIR",
            script.display()
        )));
    }
    let window = args.window.unwrap_or(300);
    println!(
        "pgcluster bench kubernetes: an idle 2-instance cluster for {window} s on the test Kubernetes ({})",
        script.display()
    );
    let output = Command::new(&script)
        .args(["--", KUBERNETES_IDLE_TEST, "--exact"])
        .env("PGCLUSTER_BENCH_WINDOW", window.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| CliError::Failed(format!("failed to run {}: {e}", script.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    let summary = text.lines().rev().find(|l| l.starts_with("k8s-idle "));
    match (summary, output.status.success()) {
        (Some(line), true) => {
            println!("{line}");
            Ok(())
        }
        (Some(line), false) => Err(CliError::Failed(format!(
            "the idle cluster missed a goal (at most 90 writes and 2 reconciles a minute): {line}"
        ))),
        (None, _) => Err(CliError::Failed(format!(
            "{} printed no k8s-idle line ({}); see its output above",
            script.display(),
            output.status
        ))),
    }
}

async fn one_mode(args: &Args, mode: &str, router: bool) -> Result<(), CliError> {
    let exe = args.cluster_exe()?;
    let dir = tempfile::Builder::new()
        .prefix("pgcluster-bench-")
        .tempdir_in("/tmp")
        .map_err(|e| fail(&e))?;
    let data = dir.path().join("data");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: bench, namespace: default}}\nspec:\n  instances: {}\n  replication: {{mode: {mode}}}\n  postgres: {{parameters: {{max_connections: \"300\"}}}}\n",
            args.instances
        ),
    )
    .map_err(|e| fail(&e))?;
    let layout = Layout::new(&data);
    let result = run_mode(args, mode, router, &exe, &spec, &layout).await;
    let _ = cluster::stop(&layout, Duration::from_secs(60)).await;
    result
}

/// `bench idle`: on the cluster in `--data-dir`, or on a fresh default
/// cluster that is removed afterwards.
async fn idle(args: &Args) -> Result<(), CliError> {
    if let Some(dir) = &args.data_dir {
        return idle_on(&Layout::new(dir), args).await;
    }
    let exe = args.cluster_exe()?;
    let dir = tempfile::Builder::new()
        .prefix("pgcluster-bench-idle-")
        .tempdir_in("/tmp")
        .map_err(|e| fail(&e))?;
    let layout = Layout::new(dir.path().join("data"));
    let root = layout.root().display().to_string();
    let base = args.port.to_string();
    let started = pgcluster(
        &exe,
        &["up", "--data-dir", &root, "--port", &base, "--detach"],
    );
    let result = match started {
        Ok(()) => idle_on(&layout, args).await,
        Err(e) => Err(e),
    };
    let _ = cluster::stop(&layout, Duration::from_secs(60)).await;
    result
}

/// Waits for the cluster in `layout` to be healthy and quiet, then measures
/// its processes over the window and prints the table.
async fn idle_on(layout: &Layout, args: &Args) -> Result<(), CliError> {
    use pgcluster_ha::local::idle;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    if !settled(layout, &record, Duration::from_secs(120)).await {
        return Err(CliError::Failed(format!(
            "cluster {} in {} did not become healthy (a primary, every replica streaming from it) \
             within 120 s; see `pgcluster status --data-dir {}`",
            record.name,
            layout.root().display(),
            layout.root().display()
        )));
    }
    // Start-up work (the first checkpoint, application objects, the
    // router's first connections) is not what an idle cluster costs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    let groups = idle::processes(layout, &record).map_err(|e| fail(&e))?;
    let secs = args.window.unwrap_or(60);
    let window = Duration::from_secs(secs);
    println!(
        "idle cluster {} ({} instances, {}), measuring {secs} s with no client...",
        record.name,
        record.members.len(),
        layout.root().display(),
    );
    let rows = idle::measure(&groups, window).await.map_err(|e| fail(&e))?;
    print!("{}", idle::table(&rows));
    println!(
        "resolution: {:.0} ms/min (one /proc clock tick over the window; --window longer for finer figures)",
        idle::resolution_ms_per_min(window)
    );
    let worst = |role: idle::Role| {
        rows.iter()
            .filter(|r| r.role == role)
            .filter_map(idle::Row::ratio)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    for (role, goal) in [
        (idle::Role::Agent, idle::AGENT_GOAL),
        (idle::Role::Router, idle::ROUTER_GOAL),
    ] {
        if let Some(ratio) = worst(role) {
            println!(
                "{}: worst {:.2}x the goal of {} ms CPU per idle minute ({})",
                role.name(),
                ratio,
                goal.as_millis(),
                if ratio <= 1.0 { "met" } else { "missed" }
            );
        }
    }
    Ok(())
}

/// Waits (bounded) until every instance is ready and every replica streams
/// from the primary; false on timeout.
async fn settled(layout: &Layout, record: &ClusterRecord, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        // A restarted agent has a new PID: only the current record knows it.
        let record = layout.read_record().unwrap_or_else(|_| record.clone());
        let s = collect(layout, &record).await;
        let primary = s
            .instances
            .iter()
            .find(|i| i.role == "primary")
            .map(|i| i.instance.clone());
        let all_follow = s
            .instances
            .iter()
            .filter(|i| i.role != "primary")
            .all(|i| i.following.is_some() && i.following == primary);
        if primary.is_some() && all_follow && s.instances.iter().all(|i| i.ready) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn pgcluster(exe: &Path, args: &[&str]) -> Result<(), CliError> {
    let out = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .map_err(|e| fail(&e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "pgcluster {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

async fn run_mode(
    args: &Args,
    mode: &str,
    router: bool,
    exe: &Path,
    spec: &Path,
    layout: &Layout,
) -> Result<(), CliError> {
    let root = layout.root().display().to_string();
    let base = args.port.to_string();
    let spec_s = spec.display().to_string();
    pgcluster(
        exe,
        &[
            "up",
            "-f",
            &spec_s,
            "--data-dir",
            &root,
            "--port",
            &base,
            "--detach",
        ],
    )?;
    let record = layout.read_record().map_err(|e| fail(&e))?;
    let password = layout
        .read_password(&layout.superuser_password_file())
        .map_err(|e| fail(&e))?;
    let rw = record.rw_port;
    let c = cluster::connect(rw, "postgres", &password, "postgres")
        .await
        .map_err(|e| fail(&e))?;
    c.batch_execute("CREATE TABLE IF NOT EXISTS w (id bigint primary key)")
        .await
        .map_err(|e| fail(&e))?;
    drop(c);

    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let acks = acks.clone();
        let stop = stop.clone();
        let password = password.clone();
        tokio::spawn(async move {
            let mut next = 1i64;
            let mut client: Option<tokio_postgres::Client> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = cluster::connect(rw, "postgres", &password, "postgres")
                        .await
                        .ok();
                }
                if let Some(c) = &client {
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        c.execute("INSERT INTO w VALUES ($1)", &[&next]),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => acks
                            .lock()
                            .expect("acks lock is never poisoned")
                            .rows
                            .push((next, Instant::now())),
                        _ => client = None,
                    }
                    next += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let last_ack = |acks: &Arc<Mutex<Acks>>| {
        acks.lock()
            .expect("acks lock is never poisoned")
            .rows
            .last()
            .map(|r| r.1)
    };
    let wait_ack_after = |t: Instant, acks: Arc<Mutex<Acks>>| async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(a) = acks
                .lock()
                .expect("acks lock is never poisoned")
                .rows
                .iter()
                .find(|r| r.1 > t)
            {
                return Some(a.1);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let coord = cluster::coordinator(layout, Duration::from_secs(1)).map_err(|e| fail(&e))?;
    let holder = |coord: &pgcluster_ha::coordinator::local::LocalCoordinator| {
        coord.read_now().ok().and_then(|v| {
            let h = v.lease.as_ref()?.record.holder.clone()?;
            let m = v.members.get(&h)?;
            (m.role == pgcluster_ha::machine::MemberRole::Primary && m.healthy)
                .then(|| h.to_string())
        })
    };
    let mut windows = Vec::new();
    let mut promotions = Vec::new();
    for k in 0..args.kills {
        let record = layout.read_record().map_err(|e| fail(&e))?;
        let status = collect(layout, &record).await;
        let Some(p) = status
            .instances
            .iter()
            .find(|i| i.role == "primary" && i.ready)
        else {
            eprintln!("kill {k}: no ready primary; stopping the crash series");
            break;
        };
        let (Some(agent), Some(pg)) = (p.agent_pid, p.postgres_pid) else {
            break;
        };
        let old = p.instance.clone();
        let before = last_ack(&acks).unwrap_or_else(Instant::now);
        let killed = Instant::now();
        let _ = Command::new("kill")
            .args(["-9", &agent.to_string(), &pg.to_string()])
            .status();
        let mut promoted = None;
        while killed.elapsed() < Duration::from_secs(60) {
            if holder(&coord).is_some_and(|h| h != old) {
                promoted = Some(killed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The old node comes back at once (in sync mode with two instances,
        // writes wait for a standby) and re-joins before the next crash.
        cluster::spawn_agent(layout, &old, exe).map_err(|e| fail(&e))?;
        let done_at = killed + promoted.unwrap_or_default();
        let after = wait_ack_after(done_at, acks.clone()).await;
        let gap = after.and_then(|_| max_gap(&acks, before, done_at));
        if let (Some(pr), Some(g)) = (promoted, gap) {
            promotions.push(pr.as_secs_f64());
            windows.push(g);
            println!(
                "  [{mode}] crash {}: promoted after {:.2} s, writes unavailable {:.2} s",
                k + 1,
                pr.as_secs_f64(),
                g
            );
        }
        if !settled(layout, &record, Duration::from_secs(90)).await {
            eprintln!("  [{mode}] {old} did not re-join within 90 s");
        }
    }
    let mut sw_windows = Vec::new();
    let mut sw_took = Vec::new();
    for k in 0..args.switchovers {
        let before = last_ack(&acks).unwrap_or_else(Instant::now);
        let started = Instant::now();
        match request_and_wait(layout, &record, None, Duration::from_secs(30)).await {
            Ok(done) => {
                let done_at = started + done.took;
                let after = wait_ack_after(done_at, acks.clone()).await;
                sw_took.push(done.took.as_secs_f64());
                let gap = after.and_then(|_| max_gap(&acks, before, done_at));
                sw_windows.extend(gap);
                println!(
                    "  [{mode}] switchover {}: {} -> {} in {:.2} s, writes unavailable {}",
                    k + 1,
                    done.from.map(|m| m.to_string()).unwrap_or_default(),
                    done.to,
                    done.took.as_secs_f64(),
                    gap.map_or_else(|| "(no write after it)".to_owned(), |g| format!("{g:.2} s"))
                );
            }
            Err(e) => eprintln!("  [{mode}] switchover {} failed: {e}", k + 1),
        }
        // The next switchover needs the old primary streaming from the new one.
        if !settled(layout, &record, Duration::from_secs(90)).await {
            eprintln!("  [{mode}] the old primary did not re-join within 90 s");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.await;
    let acked: Vec<i64> = acks
        .lock()
        .expect("acks lock is never poisoned")
        .rows
        .iter()
        .map(|r| r.0)
        .collect();
    let c = cluster::connect(rw, "postgres", &password, "postgres")
        .await
        .map_err(|e| fail(&e))?;
    let have: std::collections::HashSet<i64> = c
        .query("SELECT id FROM w", &[])
        .await
        .map_err(|e| fail(&e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost = acked.iter().filter(|id| !have.contains(id)).count();
    println!(
        "mode {mode}, {} instances: {} node crashes, {} switchovers, {} writes acknowledged",
        args.instances,
        windows.len(),
        sw_took.len(),
        acked.len()
    );
    println!("  failover write-unavailability: {}", stats(&windows));
    println!("  failover time to promotion:    {}", stats(&promotions));
    println!("  switchover write-unavailability: {}", stats(&sw_windows));
    println!("  switchover duration:             {}", stats(&sw_took));
    println!("  acknowledged writes lost: {lost}");

    if router {
        let bin = PgBinaries::in_dir(&record.pg_bin).map_err(|e| fail(&e))?;
        let pgbench = bin.tool("pgbench");
        let record = layout.read_record().map_err(|e| fail(&e))?;
        let status = collect(layout, &record).await;
        let primary_port = status
            .instances
            .iter()
            .find(|i| i.role == "primary")
            .map_or(rw, |i| i.pg_port);
        let target = |port| BenchTarget {
            host: "127.0.0.1".to_owned(),
            port,
            user: "postgres".to_owned(),
            password: password.clone(),
            dbname: "postgres".to_owned(),
        };
        let scratch: PathBuf = layout.root().join("bench");
        bench::init(&pgbench, &target(primary_port), 10)
            .await
            .map_err(|e| fail(&e))?;
        let select = BenchRun {
            clients: 8,
            threads: 2,
            duration: Duration::from_secs(10),
            select_only: true,
            log_latencies: false,
        };
        let o = bench::compare_direct_vs_routed(
            &pgbench,
            &target(primary_port),
            &target(rw),
            &select,
            2,
            &scratch,
        )
        .await
        .map_err(|e| fail(&e))?;
        println!(
            "router: select-only direct {:.0} tps, through rw {:.0} tps, ratio {:.2}",
            o.direct.tps, o.routed.tps, o.ratio
        );
        let many = BenchRun {
            clients: 200,
            threads: 2,
            duration: Duration::from_secs(10),
            select_only: true,
            log_latencies: true,
        };
        let r = bench::run(&pgbench, &target(rw), &many, &scratch)
            .await
            .map_err(|e| fail(&e))?;
        println!(
            "router: 200 connections through rw: {:.0} tps, {} errors, p95 {:.1} ms",
            r.tps,
            r.errors(),
            r.latency_p95_ms.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
