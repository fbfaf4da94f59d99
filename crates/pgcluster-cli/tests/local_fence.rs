//! The fence does not depend on the agent: with real PostgreSQL and the
//! default timings, the primary's agent alone is killed (kill -9) or paused
//! (SIGSTOP past the lease), or the whole primary (agent, fencer, postmaster
//! and every backend) is paused past the lease. Two writers, each pinned to
//! one member's own port, show that the old primary stops accepting writes
//! before the other member accepts its first one; in sync mode every write
//! the old primary acknowledged is on the new primary.

mod local_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_support::{TestCluster, alive, connect, eventually, kill};
use serde_json::Value;

fn spec(name: &str, mode: &str) -> String {
    let extra = if mode == "sync" {
        ", whenNoStandby: fallbackToAsync"
    } else {
        ""
    };
    format!(
        "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {{name: {name}, namespace: default}}
spec:
  instances: 2
  replication: {{mode: {mode}{extra}}}
"
    )
}

/// What one pinned writer saw: each acknowledged id with the instant its
/// request was sent and the instant the acknowledgement arrived.
#[derive(Default)]
struct Log {
    acks: Vec<(i64, Instant, Instant)>,
}

/// Writes ids `first..` into `w` on one server (not through the router)
/// every 20 ms until stopped, recording every acknowledgement.
struct Pinned {
    log: Arc<Mutex<Log>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Pinned {
    fn start(port: u16, password: String, first: i64) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut next = first;
            let mut client: Option<tokio_postgres::Client> = None;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = tokio::time::timeout(Duration::from_secs(1), connect(port, &password))
                        .await
                        .ok()
                        .and_then(Result::ok);
                }
                if let Some(c) = &client {
                    let sent = Instant::now();
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        c.execute("INSERT INTO w VALUES ($1)", &[&next]),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => {
                            l.lock()
                                .expect("log lock")
                                .acks
                                .push((next, sent, Instant::now()))
                        }
                        Ok(Err(e)) if e.as_db_error().is_some() => {
                            // Read-only (a replica): keep the connection.
                        }
                        _ => client = None,
                    }
                    next += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { log, stop, task }
    }

    fn acks(&self) -> Vec<(i64, Instant, Instant)> {
        self.log.lock().expect("log lock").acks.clone()
    }

    async fn finish(self) -> Vec<(i64, Instant, Instant)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        self.log.lock().expect("log lock").acks.clone()
    }
}

fn instance<'a>(status: &'a Value, role: &str) -> &'a Value {
    status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["role"] == role)
        .unwrap_or_else(|| panic!("no {role} in {status}"))
}

fn pid(v: &Value, key: &str) -> u32 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}")) as u32
}

/// Parent PID of `pid` (the fencer's own `/proc` reader).
fn parent_of(pid: u32) -> Option<u32> {
    let pid = i32::try_from(pid).ok()?;
    u32::try_from(pgcluster_ha::fence::fencer::parent_of(pid)?).ok()
}

/// Children of `pid` (the fencer's own `/proc` reader).
fn children_of(pid: u32) -> Vec<u32> {
    i32::try_from(pid).map_or_else(
        |_| Vec::new(),
        |pid| {
            pgcluster_ha::fence::fencer::children_of(pid)
                .into_iter()
                .filter_map(|p| u32::try_from(p).ok())
                .collect()
        },
    )
}

/// Waits (polling, bounded) until `pid` is gone; returns how long that took.
async fn gone_within(pid: u32, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if !alive(pid) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillAgent,
    PauseAgent,
    PauseMember,
}

async fn run(name: &str, mode: &str, fault: Fault) {
    let cluster = TestCluster::new(&spec(name, mode));
    cluster.up();
    let status = cluster.wait_ready(1, Duration::from_secs(60));
    let pw = cluster.password();
    let primary = instance(&status, "primary").clone();
    let replica = instance(&status, "replica").clone();
    let agent = pid(&primary, "agent_pid");
    let postmaster = pid(&primary, "postgres_pid");
    let fencer = parent_of(postmaster).expect("the postmaster has a parent");
    assert_ne!(
        fencer, agent,
        "the postmaster's parent is its fencer, not the agent"
    );
    assert_eq!(
        parent_of(fencer),
        Some(agent),
        "the agent started the fencer"
    );

    {
        let c = connect(cluster.rw(), &pw).await.expect("rw connects");
        c.batch_execute("CREATE TABLE IF NOT EXISTS w (id bigint primary key)")
            .await
            .expect("create w");
    }
    let old = Pinned::start(pid(&primary, "pg_port") as u16, pw.clone(), 1);
    let new = Pinned::start(pid(&replica, "pg_port") as u16, pw.clone(), 1_000_000);
    eventually(
        "the old primary acknowledges writes",
        Duration::from_secs(20),
        || async { (old.acks().len() > 20).then_some(()) },
    )
    .await;
    assert!(new.acks().is_empty(), "a replica acknowledged a write");

    // The detached router supervises the agents and would restart a killed
    // one within a second, before any failover (it then takes its lease
    // back): hold it until the replica has taken over.
    let router = cluster.record()["router_pid"].as_u64().expect("router pid") as u32;
    let faulted = Instant::now();
    let mut paused: Vec<u32> = Vec::new();
    match fault {
        Fault::KillAgent => {
            assert!(kill(router, "STOP"));
            assert!(kill(agent, "KILL"));
            let fenced = gone_within(postmaster, Duration::from_secs(2))
                .await
                .expect("the server outlived its killed agent");
            eprintln!("{name}: the server stopped {fenced:?} after its agent was killed");
        }
        Fault::PauseAgent => {
            assert!(kill(agent, "STOP"));
            paused.push(agent);
        }
        Fault::PauseMember => {
            let mut all = vec![agent, fencer, postmaster];
            all.extend(children_of(postmaster));
            for p in &all {
                kill(*p, "STOP");
            }
            paused = all;
        }
    }

    // The other member takes over and accepts writes on its own port.
    eventually(
        "the replica is promoted and takes writes",
        Duration::from_secs(30),
        || async { (!new.acks().is_empty()).then_some(()) },
    )
    .await;
    let promoted_after = faulted.elapsed();
    let first_new_sent = new.acks()[0].1;

    let mut lived_after_resume = None;
    match fault {
        Fault::KillAgent | Fault::PauseAgent => {
            // Fenced by the fencer while the agent was dead or stopped.
            assert!(
                !alive(postmaster),
                "{fault:?}: the old primary's postmaster {postmaster} still runs after the promotion"
            );
        }
        Fault::PauseMember => {
            let resumed = Instant::now();
            for p in &paused {
                kill(*p, "CONT");
            }
            let lived = gone_within(postmaster, Duration::from_secs(10))
                .await
                .expect("the resumed old primary is fenced");
            lived_after_resume = Some(lived);
            eprintln!(
                "{name}: the resumed old primary lived {lived:?} after SIGCONT ({:?} since resuming began)",
                resumed.elapsed()
            );
        }
    }
    match fault {
        Fault::PauseAgent => {
            kill(agent, "CONT");
        }
        Fault::KillAgent => {
            kill(router, "CONT");
        }
        Fault::PauseMember => {}
    }

    // Let the new primary take a few more writes, then compare.
    let n = new.acks().len();
    eventually(
        "the new primary keeps taking writes",
        Duration::from_secs(20),
        || async { (new.acks().len() > n + 5).then_some(()) },
    )
    .await;
    let old_acks = old.finish().await;
    let new_acks = new.finish().await;
    let last_old_ack = old_acks.last().expect("old acks").2;
    eprintln!(
        "{name}: promoted {promoted_after:?} after the fault; old primary's last ack {:?} after the fault; \
         the new primary's first write was sent {:?} after the old one's last ack",
        last_old_ack.saturating_duration_since(faulted),
        first_new_sent.saturating_duration_since(last_old_ack),
    );
    if fault != Fault::PauseMember || mode == "sync" {
        // Every old acknowledgement arrived before the new primary was even
        // asked: the two never accepted writes in the same instant.
        assert!(
            last_old_ack < first_new_sent,
            "{fault:?}: the old primary acknowledged a write {:?} after the new primary's first write was sent",
            last_old_ack - first_new_sent
        );
    }
    if let Some(lived) = lived_after_resume {
        assert!(
            lived < Duration::from_secs(2),
            "the resumed old primary lived {lived:?}"
        );
    }
    if mode == "sync" {
        let c = connect(pid(&replica, "pg_port") as u16, &pw)
            .await
            .expect("the new primary connects");
        let rows = c.query("SELECT id FROM w", &[]).await.expect("read w");
        let have: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        let lost: Vec<i64> = old_acks
            .iter()
            .map(|a| a.0)
            .filter(|id| !have.contains(id))
            .collect();
        assert!(
            lost.is_empty(),
            "sync mode lost acknowledged writes: {lost:?}"
        );
    }
    // The old member comes back as a replica once its agent runs again: a
    // paused one by itself, a killed one restarted by the supervisor.
    let status = cluster.wait_ready(1, Duration::from_secs(60));
    let old_row = status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["instance"] == primary["instance"])
        .expect("the old primary is listed")
        .clone();
    assert_eq!(old_row["role"], "replica", "{old_row}");
    let restarts = if fault == Fault::KillAgent { 1 } else { 0 };
    assert_eq!(old_row["restarts"], restarts, "{old_row}");
    drop(new_acks);
}

/// kill -9 of the primary's agent alone (async): the server is fenced
/// before the replica is promoted; the supervisor restarts the agent and the
/// old primary re-joins as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_fences_its_server_async() {
    run("fencekilla", "async", Fault::KillAgent).await;
}

/// kill -9 of the primary's agent alone (sync): fenced before the
/// promotion, no acknowledged write lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_fences_its_server_sync() {
    run("fencekills", "sync", Fault::KillAgent).await;
}

/// SIGSTOP of the primary's agent past the lease (async), then SIGCONT:
/// fenced at the deadline; the agent re-joins as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_agent_fences_its_server_async() {
    run("fencepausea", "async", Fault::PauseAgent).await;
}

/// SIGSTOP of the primary's agent past the lease (sync), then SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_agent_fences_its_server_sync() {
    run("fencepauses", "sync", Fault::PauseAgent).await;
}

/// SIGSTOP of the whole primary (agent, fencer, postmaster, backends) past
/// the lease (sync), then SIGCONT: fenced at once, no acknowledged write
/// the new primary lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_member_is_fenced_on_resume_sync() {
    run("fencemember", "sync", Fault::PauseMember).await;
}

/// kill -9 of a replica's agent fences the replica's server too; a server
/// started by hand on that member's data directory (no agent, no fencer) is
/// shown as such by `status`, and `down` stops it although no agent is left
/// to ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_down_see_a_server_without_its_agent() {
    let cluster = TestCluster::new(&spec("fenceorphan", "async"));
    cluster.up();
    let status = cluster.wait_ready(1, Duration::from_secs(60));
    let replica = instance(&status, "replica").clone();
    let agent = pid(&replica, "agent_pid");
    let postmaster = pid(&replica, "postgres_pid");
    // The detached router supervises the agents: stop it, or it restarts
    // the agent killed below (tested in the fault tests above).
    let router = cluster.record()["router_pid"].as_u64().expect("router pid") as u32;
    assert!(kill(router, "STOP"));
    assert!(kill(agent, "KILL"));
    assert!(
        gone_within(postmaster, Duration::from_secs(5))
            .await
            .is_some(),
        "the replica's server outlived its agent"
    );
    let name = replica["instance"].as_str().expect("name").to_owned();
    let data = local_support::member_data(&cluster.data(), &name);
    let os_user = cluster.record()["os_user"]
        .as_str()
        .expect("os_user in the record")
        .to_owned();
    let mut pg_ctl = std::process::Command::new("pg_ctl");
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(data.parent().expect("member dir").join("log/by-hand.log"))
        .args(["-w", "start"]);
    let started = if nix_is_root() {
        std::process::Command::new("runuser")
            .args(["-u", &os_user, "--"])
            .arg(pg_ctl.get_program())
            .args(pg_ctl.get_args())
            .status()
    } else {
        pg_ctl.status()
    }
    .expect("pg_ctl runs");
    assert!(started.success(), "pg_ctl start: {started}");
    let by_hand =
        pgcluster_ha::agent::supervise::postmaster_of(&data).expect("server by hand runs");

    let row = eventually(
        "status shows the unmanaged server",
        Duration::from_secs(20),
        || {
            let status = cluster.status();
            let name = name.clone();
            async move {
                status["instances"]
                    .as_array()?
                    .iter()
                    .find(|i| i["instance"] == name.as_str() && i["role"] == "unmanaged")
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(
        row["postgres_pid"].as_u64(),
        Some(u64::from(by_hand)),
        "{row}"
    );
    assert!(
        row["state"]
            .as_str()
            .is_some_and(|s| s.contains("server still running")),
        "{row}"
    );
    assert!(kill(router, "KILL"));
    let out = cluster.run(&["down"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ran without their agents"),
        "{out:?}"
    );
    assert!(
        gone_within(by_hand, Duration::from_secs(5)).await.is_some(),
        "down left the server {by_hand} running"
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}
