//! Shared fixtures of the local-cluster tests: a cluster in its own temp
//! data dir and port range, driven through the built `pgcluster` binary,
//! stopped by PID in `Drop` even when the test fails.
//!
//! A failed test prints the agents' logs (info; `PGCLUSTER_TEST_AGENT_LOG`
//! sets their filter, e.g. `info,pgcluster_ha::agent=debug`) and whether
//! each agent still runs; `PGCLUSTER_KEEP_FAILED=1` keeps a copy of the
//! data dir (`<dir>-kept`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pgcluster")
}

/// A spec with short failover timings (lease 1 s, loop 100 ms).
pub fn fast_spec(name: &str, mode: &str, extra: &str) -> String {
    format!(
        "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {{name: {name}, namespace: default}}
spec:
  instances: 2
  replication: {{mode: {mode}{extra}}}
  failover: {{leaseDuration: 1s, loopInterval: 100ms, renewDeadline: 600ms, stopWritesTimeout: 200ms, maxClockDrift: 100ms}}
"
    )
}

/// A base port whose whole derived range (base, base+1, base+8.., base+18..) is free.
pub fn free_base() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos() as u64;
    for i in 0..200u64 {
        let base = 20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 40000) as u16;
        let ports = [
            base,
            base + 1,
            base + 8,
            base + 9,
            base + 10,
            base + 18,
            base + 19,
            base + 20,
        ];
        if ports
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return base;
        }
    }
    panic!("no free port range");
}

/// A local cluster under test.
pub struct TestCluster {
    /// Its data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// Base port.
    pub base: u16,
    /// Spec file.
    pub spec: PathBuf,
    /// Agents the test started itself (restarts).
    pub extra: Vec<Child>,
    /// `$XDG_DATA_HOME` of every command when the cluster lives in its
    /// default data dir below it ([`TestCluster::in_default_dir`]).
    pub xdg: Option<PathBuf>,
    /// Its data dir.
    data: PathBuf,
    /// One cluster at a time per test binary (released after `Drop` stopped
    /// it); `None` for a second cluster of the same test.
    _serial: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Takes [`SERIAL`]; a test that failed while holding it poisoned it (the data is `()`).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serialises the clusters of one test binary. Several clusters cloning and
/// checkpointing at once on this 2-core VM delayed the fsync of one cluster's
/// lease file past its renew deadline, and its watchdog fenced a healthy
/// primary mid-test (CI, async crash test: the postmaster it meant to kill
/// had been restarted). The tests are about failover, not disk contention.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl TestCluster {
    /// Prints the last `n` lines of every agent's log (and the router's) to
    /// stderr: what a failed test needs, since its data dir is removed.
    pub fn print_agent_logs(&self, n: usize) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.data().join("members"))
            .map(|d| d.flatten().map(|m| m.path().join("agent.log")).collect())
            .unwrap_or_default();
        logs.sort();
        logs.push(self.data().join("router.log"));
        // Whether each agent still runs tells a crash or hang from a refusal.
        let record: Value = std::fs::read_to_string(self.data().join("cluster.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        for m in record["members"].as_array().into_iter().flatten() {
            if let Some(pid) = m["agent_pid"].as_u64() {
                let state = if alive(pid as u32) { "running" } else { "gone" };
                eprintln!("agent of {} (pid {pid}): {state}", m["name"]);
            }
        }
        if std::env::var_os("PGCLUSTER_KEEP_FAILED").is_some() {
            let keep = PathBuf::from(format!("{}-kept", self.dir.path().display()));
            let _ = Command::new("cp")
                .arg("-a")
                .arg(self.dir.path())
                .arg(&keep)
                .status();
            eprintln!("data dir copied to {}", keep.display());
        }
        // Only the decisions, one short line each: a CI excerpt keeps the
        // head and tail of a long output, and the routine lines would push
        // every agent but the last out of it.
        for log in logs {
            let Ok(text) = std::fs::read_to_string(&log) else {
                continue;
            };
            let lines: Vec<String> = text.lines().filter_map(condensed).collect();
            eprintln!("---- {} (decisions, last {n}) ----", log.display());
            for line in &lines[lines.len().saturating_sub(n)..] {
                eprintln!("{line}");
            }
        }
    }

    /// A cluster (not started) with `spec`; waits while another test of this
    /// binary has one.
    pub fn new(spec: &str) -> Self {
        Self::with_data(spec, None, Some(serial()))
    }

    /// A cluster (not started) named `name` (its spec's) in its default data
    /// dir below `xdg` (`$XDG_DATA_HOME/pgcluster/<name>`), so that
    /// [`TestCluster::run_found`] reaches it without --data-dir or --name.
    /// The first cluster of a test takes the serial lock (`first`), further
    /// ones do not; drop them before the first and `xdg` after all.
    pub fn in_default_dir(spec: &str, name: &str, xdg: &Path, first: bool) -> Self {
        let data = xdg.join("pgcluster").join(name);
        let mut cluster = Self::with_data(spec, Some(data), first.then(serial));
        cluster.xdg = Some(xdg.to_owned());
        cluster
    }

    fn with_data(
        spec: &str,
        data: Option<PathBuf>,
        serial: Option<std::sync::MutexGuard<'static, ()>>,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pgcluster-local-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let spec_path = dir.path().join("spec.yaml");
        std::fs::write(&spec_path, spec).expect("write spec");
        Self {
            data: data.unwrap_or_else(|| dir.path().join("data")),
            dir,
            base: free_base(),
            spec: spec_path,
            extra: Vec::new(),
            xdg: None,
            _serial: serial,
        }
    }

    /// The data dir.
    pub fn data(&self) -> PathBuf {
        self.data.clone()
    }

    /// Runs `pgcluster <args> --data-dir <data>`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, true)
    }

    /// Runs `pgcluster <args>` without --data-dir (with this cluster's
    /// `$XDG_DATA_HOME`): the command finds the cluster itself.
    pub fn run_found(&self, args: &[&str]) -> Output {
        self.run_with(args, false)
    }

    fn run_with(&self, args: &[&str], data_dir: bool) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        if data_dir {
            cmd.arg("--data-dir").arg(self.data());
        }
        if let Some(xdg) = &self.xdg {
            cmd.env("XDG_DATA_HOME", xdg);
        }
        // Agents inherit `up`'s environment: without RUST_LOG they log at
        // info, which a failed test prints.
        if args.first() == Some(&"up") {
            match std::env::var("PGCLUSTER_TEST_AGENT_LOG") {
                Ok(filter) => cmd.env("RUST_LOG", filter),
                Err(_) => cmd.env_remove("RUST_LOG"),
            };
        } else {
            cmd.env("RUST_LOG", "warn");
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run pgcluster");
        eprintln!(
            "$ pgcluster {} -> {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `pgcluster up -f spec --port base --detach`; panics with the output when it fails.
    pub fn up(&self) {
        let base = self.base.to_string();
        let spec = self.spec.display().to_string();
        let out = self.run(&[
            "up",
            "-f",
            &spec,
            "--port",
            &base,
            "--detach",
            "--timeout",
            "90",
        ]);
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pgcluster up -f spec --port base` in the foreground (no `--detach`),
    /// its output in `up.out`/`up.err` of the temp dir; the caller waits for it.
    pub fn spawn_up_foreground(&self) -> Child {
        let out = std::fs::File::create(self.dir.path().join("up.out")).expect("up.out");
        let err = std::fs::File::create(self.dir.path().join("up.err")).expect("up.err");
        Command::new(bin())
            .args(["up", "-f"])
            .arg(&self.spec)
            .args(["--port", &self.base.to_string(), "--timeout", "90"])
            .arg("--data-dir")
            .arg(self.data())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn pgcluster up")
    }

    /// What the foreground `up` printed so far (stdout, then stderr).
    pub fn up_output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("up.out"), read("up.err"))
    }

    /// The `cluster.json` record.
    pub fn record(&self) -> Value {
        serde_json::from_slice(
            &std::fs::read(self.data().join("cluster.json")).expect("cluster.json"),
        )
        .expect("cluster.json is JSON")
    }

    /// `pgcluster status -o json`.
    pub fn status(&self) -> Value {
        let out = self.run(&["status", "-o", "json"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// The instance with `role`, if any.
    pub fn instance_with_role(&self, role: &str) -> Option<Value> {
        self.status()["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["role"] == role && i["ready"] == true)
            .cloned()
    }

    /// Waits for a ready primary and `replicas` ready replicas.
    pub fn wait_ready(&self, replicas: usize, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let s = self.status();
            let inst = s["instances"].as_array().expect("instances");
            let p = inst
                .iter()
                .filter(|i| i["role"] == "primary" && i["ready"] == true)
                .count();
            let r = inst
                .iter()
                .filter(|i| i["role"] == "replica" && i["ready"] == true)
                .count();
            if p == 1 && r == replicas {
                return s;
            }
            assert!(
                started.elapsed() < timeout,
                "cluster not ready in {timeout:?}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The superuser password.
    pub fn password(&self) -> String {
        std::fs::read_to_string(self.data().join("secrets/superuser.password"))
            .expect("password file")
            .trim()
            .to_owned()
    }

    /// An application role's generated password.
    pub fn role_password(&self, role: &str) -> String {
        std::fs::read_to_string(self.data().join(format!("secrets/role-{role}.password")))
            .expect("role password file")
            .trim()
            .to_owned()
    }

    /// rw port.
    pub fn rw(&self) -> u16 {
        self.base
    }

    /// ro port.
    pub fn ro(&self) -> u16 {
        self.base + 1
    }

    /// Starts one member's agent by hand (a restart after a crash).
    pub fn start_agent(&mut self, member: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data().join(format!("members/{member}/agent.log")))
            .expect("agent log");
        let child = Command::new(bin())
            .args(["agent", "--local", "--member", member, "--data-dir"])
            .arg(self.data())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn agent");
        self.extra.push(child);
    }
}

use std::os::unix::process::CommandExt as _;

/// One log line as `time LEVEL message key=value...` when it records a
/// decision or a problem (phase changes, actions, operations, warnings),
/// else `None`. Lines that are not JSON are kept as they are.
fn condensed(line: &str) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) else {
        return Some(line.to_owned());
    };
    let message = map.get("message").and_then(Value::as_str).unwrap_or("");
    let level = map.get("level").and_then(Value::as_str).unwrap_or("");
    let routine = level == "INFO"
        && ![
            "phase",
            "executing",
            "operation",
            "lease",
            "route",
            "started",
            "forced",
        ]
        .iter()
        .any(|w| message.contains(w));
    if routine || level == "DEBUG" || level == "TRACE" {
        return None;
    }
    let time = map
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.split_once('T'))
        .map_or("", |(_, t)| t.trim_end_matches('Z'));
    let mut out = format!("{time} {level} {message}");
    for (k, v) in &map {
        if !["timestamp", "level", "message", "target", "span", "spans"].contains(&k.as_str()) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.push_str(&format!(" {k}={v}"));
        }
    }
    Some(out)
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_agent_logs(40);
        }
        if self.data().join("cluster.json").exists() {
            let _ = Command::new(bin())
                .args(["down", "--data-dir"])
                .arg(self.data())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for c in &mut self.extra {
            // Only children not yet reaped: a reaped PID may belong to anyone now.
            if matches!(c.try_wait(), Ok(None)) {
                let _ = kill(c.id(), "TERM");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for c in &mut self.extra {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Any postmaster still running in our data dir (its own pid file).
        if let Ok(members) = std::fs::read_dir(self.data().join("members")) {
            for m in members.flatten() {
                // Only a live postgres of that data dir: a pid file left by a
                // killed postmaster may name a PID reused since.
                if let Some(pid) =
                    pgcluster_ha::agent::supervise::postmaster_of(&m.path().join("data"))
                {
                    let _ = kill(pid, "KILL");
                }
            }
        }
    }
}

/// `kill -SIG pid`.
pub fn kill(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Waits (polling, bounded by `timeout`) for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            started.elapsed() < timeout,
            "process {} did not exit within {timeout:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects as the superuser to 127.0.0.1:port.
pub async fn connect(
    port: u16,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_as(port, "postgres", password, "postgres").await
}

/// Connects as `user` to database `db` on 127.0.0.1:port.
pub async fn connect_as(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Waits until `f` returns Some, polling every 100 ms.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The path of a member's data dir.
pub fn member_data(data: &Path, member: &str) -> PathBuf {
    data.join("members").join(member).join("data")
}

/// A writer committing one counter row every `every` through the rw port,
/// reconnecting after errors; returns every acknowledged id.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<i64>>,
}

impl Writer {
    /// Starts writing into table `w(id bigint primary key)` (created if missing).
    pub async fn start(port: u16, password: String, every: Duration) -> Self {
        let c = connect(port, &password).await.expect("rw connects");
        c.batch_execute("CREATE TABLE IF NOT EXISTS w (id bigint primary key)")
            .await
            .expect("create w");
        drop(c);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let flag = stop.clone();
        let count = acked_count.clone();
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut next = 1i64;
            let mut client: Option<tokio_postgres::Client> = None;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = connect(port, &password).await.ok();
                }
                if let Some(c) = &client {
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        c.execute("INSERT INTO w VALUES ($1)", &[&next]),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => {
                            acked.push(next);
                            count.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                        _ => client = None,
                    }
                    next += 1;
                }
                tokio::time::sleep(every).await;
            }
            acked
        });
        Self {
            stop,
            acked: acked_count,
            task,
        }
    }

    /// How many writes have been acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (polling, bounded by `timeout`) until more than `n` writes are
    /// acknowledged; returns the count then.
    pub async fn wait_acked_over(&self, n: usize, timeout: Duration) -> usize {
        eventually(
            &format!("more than {n} acknowledged writes"),
            timeout,
            || async {
                let now = self.acked();
                (now > n).then_some(now)
            },
        )
        .await
    }

    /// Stops and returns the acknowledged ids.
    pub async fn finish(self) -> Vec<i64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// A started two-instance cluster with a writer committing every 20 ms
/// through rw, once it has acknowledged more than `warmup` writes.
pub struct WrittenCluster {
    /// The cluster.
    pub cluster: TestCluster,
    /// The superuser password.
    pub password: String,
    /// The primary's status entry when the writer started.
    pub primary: Value,
    /// The running writer.
    pub writer: Writer,
}

impl WrittenCluster {
    /// `up` with `spec`, waits for a primary and one replica, starts the
    /// writer and waits until it has more than `warmup` acknowledged writes.
    pub async fn start(spec: &str, warmup: usize) -> Self {
        let cluster = TestCluster::new(spec);
        cluster.up();
        let status = cluster.wait_ready(1, Duration::from_secs(40));
        let password = cluster.password();
        let primary = status["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["role"] == "primary")
            .cloned()
            .expect("a primary");
        let writer = Writer::start(cluster.rw(), password.clone(), Duration::from_millis(20)).await;
        writer
            .wait_acked_over(warmup, Duration::from_secs(30))
            .await;
        Self {
            cluster,
            password,
            primary,
            writer,
        }
    }

    /// The primary's instance name when the writer started.
    pub fn primary_name(&self) -> String {
        self.primary["instance"]
            .as_str()
            .expect("instance name")
            .to_owned()
    }
}

/// Ids of `acked` missing from table w on the server at `port`.
pub async fn missing(port: u16, password: &str, acked: &[i64]) -> Vec<i64> {
    let c = connect(port, password)
        .await
        .expect("connect to check rows");
    let rows = c.query("SELECT id FROM w", &[]).await.expect("read w");
    let have: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    acked
        .iter()
        .copied()
        .filter(|id| !have.contains(id))
        .collect()
}
