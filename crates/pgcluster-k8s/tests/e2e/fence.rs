//! Issue 10 on the real node: the fence that stops a primary's server
//! without its agent's help. The primary's agent alone paused or killed
//! (kill -9), and the whole primary (agent, fencer, PostgreSQL) paused for
//! longer than the lease and resumed. Two writers, each pinned to one pod
//! IP, show whether two servers ever acknowledged writes in the same
//! period; the rows on the final primary show whether an acknowledged
//! commit was lost.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgcluster_core::api::v1alpha1::ReplicationMode;

use super::checks::{APP, assert_roles_in_postgres, create_table, ids, writes_flow};
use super::node;
use super::running::{
    self, CONTAINER, Running, cluster_ip, lease_holder, members, pod, role_target, settled_primary,
};
use crate::e2e_support::node::{Paused, Proc, container_processes, signal};
use crate::e2e_support::sql::{Writer, WriterLog, missing};
use crate::e2e_support::{TestCluster, cluster, wait_for};

/// What happens to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGSTOP of its agent alone (fencer and PostgreSQL run on) until the
    /// replica holds the Lease and takes writes; then SIGCONT.
    AgentPaused,
    /// SIGKILL of its agent alone. The agent is the container's first
    /// process, so the kernel ends the container's other processes with
    /// it and the kubelet restarts it: the member's own unexpired Lease
    /// usually lets it restart as primary in place.
    AgentKilled,
    /// SIGSTOP of every process of the primary's container until the
    /// replica holds the Lease and takes writes; then SIGCONT. The fencer
    /// resumes past its deadline and must stop the server at once.
    MemberPaused,
}

/// The primary's processes in its instance container: (agent, PostgreSQL's).
fn primary_processes(procs: &[Proc], member: &str) -> (i32, Vec<i32>) {
    let agent: Vec<i32> = procs
        .iter()
        .filter(|p| p.cmdline.contains("pgcluster agent"))
        .map(|p| p.pid)
        .collect();
    assert_eq!(agent.len(), 1, "one agent process in {member}: {procs:?}");
    let postgres: Vec<i32> = procs
        .iter()
        .filter(|p| !p.cmdline.contains("pgcluster"))
        .map(|p| p.pid)
        .collect();
    assert!(
        !postgres.is_empty(),
        "no PostgreSQL process in {member}: {procs:?}"
    );
    (agent[0], postgres)
}

/// Whether `pid` still runs (a zombie does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The two writers' logs checked against each other: the old primary's
/// last acknowledged commit precedes the first write sent to the new one
/// (no two writable servers at once). Returns the margin.
fn assert_one_writable_at_a_time(old: &WriterLog, new: &WriterLog) -> Option<Duration> {
    let first_new = new.acks.first().copied()?;
    let late: Vec<i64> = old
        .acks
        .iter()
        .filter(|a| a.acked >= first_new.sent)
        .map(|a| a.id)
        .collect();
    assert!(
        late.is_empty(),
        "split brain: the old primary acknowledged {} commits after the first write to the new \
         primary was sent: {:?}",
        late.len(),
        &late[..late.len().min(20)]
    );
    let last_old = old.last_acked_before(first_new.sent)?;
    Some(first_new.sent - last_old.acked)
}

/// Runs `fault` on the primary of a fresh cluster of `instances` in `mode`
/// and checks the fence's guarantees; prints a benchmark line.
async fn fence_holds(label: &str, instances: u32, mode: ReplicationMode, fault: Fault) {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r = running::start(&c, label, instances, |spec| {
        let replication = spec.spec.replication.get_or_insert_with(Default::default);
        replication.mode = Some(mode);
    })
    .await;
    let old = settled_primary(&c, &r, Duration::from_secs(60)).await;
    let all = members(&c, &r).await;
    let old_ip = all[&old].ip.clone().unwrap();
    let restarts = all[&old].restarts;
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let app = role_target(&c, &r, APP, &rw_ip).await;
    let table = format!("e2e_{}", label.replace('-', "_"));
    create_table(&app, &table).await;
    // Writers pinned to each server; ids apart.
    let on_old = Writer::start(
        "e2e-fence-old",
        app.at(&old_ip),
        &table,
        1,
        Duration::from_millis(10),
    );
    // One writer pinned to each replica, any of which may be promoted.
    let on_replicas: Vec<(String, Writer)> = all
        .iter()
        .filter(|(name, _)| **name != old)
        .enumerate()
        .map(|(i, (name, m))| {
            let writer = Writer::start(
                &format!("e2e-fence-{name}"),
                app.at(m.ip.as_deref().unwrap()),
                &table,
                1_000_000_000 * (i as i64 + 1),
                Duration::from_millis(10),
            );
            (name.clone(), writer)
        })
        .collect();
    let replicas_acked = || on_replicas.iter().map(|(_, w)| w.acked()).sum::<u64>();
    writes_flow(&on_old, 0, 5, "writes on the primary before the fault").await;
    assert_eq!(
        replicas_acked(),
        0,
        "a replica accepted a write before any failover"
    );

    let procs = container_processes(&pod(&c, &r, &old).await, CONTAINER);
    let (agent, postgres) = primary_processes(&procs, &old);
    let struck = Instant::now();
    let mut lived_after_resume = None;
    // Until when the old server may have acknowledged commits: its stop,
    // or the first write sent to the new primary.
    let fault_over: Instant;
    let mut promoted = None;
    let outcome = match fault {
        Fault::AgentPaused | Fault::MemberPaused => {
            let pids = if fault == Fault::AgentPaused {
                vec![agent]
            } else {
                procs.iter().map(|p| p.pid).collect()
            };
            let paused = Paused::stop(&format!("{fault:?} on {old}"), pids);
            let new = took_the_lease(&c, &r, &old).await;
            let on_new = &on_replicas.iter().find(|(m, _)| *m == new).unwrap().1;
            writes_flow(on_new, 0, 5, "writes on the new primary").await;
            promoted = Some(new.clone());
            let paused_for = paused.resume();
            let resumed = Instant::now();
            fault_over = resumed;
            if fault == Fault::MemberPaused {
                // Every PostgreSQL process of the old primary ends once the
                // fencer runs again and finds its deadline past.
                wait_for(
                    "the resumed old primary's server to be fenced",
                    Duration::from_secs(30),
                    || async { (!postgres.iter().any(|&p| alive(p))).then_some(()) },
                )
                .await;
                lived_after_resume = Some(resumed.elapsed());
            }
            format!(
                "paused {:.1}s, {new} took the Lease",
                paused_for.as_secs_f64()
            )
        }
        Fault::AgentKilled => {
            signal(agent, Signal::SIGKILL);
            // The container's processes end with its first one.
            wait_for(
                "the killed agent's server to stop",
                Duration::from_secs(30),
                || async { (!postgres.iter().any(|&p| alive(p))).then_some(()) },
            )
            .await;
            let stopped = Instant::now();
            let acked_when_stopped = on_old.acked();
            // Either the restarted member resumes its own Lease (a restart
            // in place) or the replica takes over.
            let serving = wait_for(
                "writes on a primary again after the kill",
                Duration::from_secs(120),
                || async {
                    if let Some((m, _)) = on_replicas.iter().find(|(_, w)| w.acked() > 0) {
                        Some(m.clone())
                    } else {
                        (on_old.acked() > acked_when_stopped).then(|| old.clone())
                    }
                },
            )
            .await;
            fault_over = stopped;
            format!(
                "its server stopped {} ms after the kill; {serving} serves writes again {} ms \
                 after the kill",
                (stopped - struck).as_millis(),
                struck.elapsed().as_millis()
            )
        }
    };
    let old_log = on_old.finish().await;
    // The replicas' writers as one log: at most one of them is a primary.
    let mut new_log = WriterLog::default();
    for (_, writer) in on_replicas {
        let log = writer.finish().await;
        new_log.acks.extend(log.acks);
        new_log.failures.extend(log.failures);
    }
    new_log.acks.sort_by_key(|a| a.sent);
    let margin = assert_one_writable_at_a_time(&old_log, &new_log);
    if fault != Fault::AgentKilled {
        assert!(margin.is_some(), "no write reached the new primary");
    }
    let last_old_ack_after_fault = old_log
        .last_acked_before(fault_over)
        .map(|a| a.acked.saturating_duration_since(struck));

    // Afterwards: one primary, the other member(s) ready replicas; the
    // restarted or resumed old primary re-joined.
    running::wait_ready(&c, &r, Duration::from_secs(180)).await;
    let primary = settled_primary(&c, &r, Duration::from_secs(60)).await;
    if fault == Fault::AgentKilled {
        wait_for(
            "the killed agent's container to be restarted",
            Duration::from_secs(60),
            || async { (members(&c, &r).await[&old].restarts > restarts).then_some(()) },
        )
        .await;
    } else {
        assert_eq!(
            Some(&primary),
            promoted.as_ref(),
            "the promoted replica serves rw"
        );
    }
    assert_roles_in_postgres(&c, &r, &app, &primary).await;
    let primary_ip = members(&c, &r).await[&primary].ip.clone().unwrap();
    let present = ids(&app.at(&primary_ip), &table).await;
    let lost_new = missing(&new_log.acks, &present);
    assert!(
        lost_new.is_empty(),
        "commits acknowledged by the new primary lost: {lost_new:?}"
    );
    let lost_old = missing(&old_log.acks, &present);
    if mode == ReplicationMode::Sync {
        assert!(
            lost_old.is_empty(),
            "sync mode: {} commits acknowledged by the old primary are not on {primary}: {:?}",
            lost_old.len(),
            &lost_old[..lost_old.len().min(20)]
        );
    }
    eprintln!(
        "benchmark: fence on the node ({fault:?}, {mode:?}, {instances} instances): {outcome}; \
         old server's last acknowledged commit {} ms after the fault; margin before the new \
         primary's first write {}; {}; {} + {} acknowledged commits, {} of the old one's not on \
         the final primary",
        last_old_ack_after_fault.map_or(-1, |d| d.as_millis() as i64),
        margin.map_or_else(
            || "n/a (no failover)".to_owned(),
            |m| format!("{} ms", m.as_millis())
        ),
        lived_after_resume.map_or_else(
            || "not resumed".to_owned(),
            |d| format!("the resumed server lived {} ms", d.as_millis())
        ),
        old_log.acks.len(),
        new_log.acks.len(),
        lost_old.len(),
    );
}

/// Waits until a member other than `old` holds the Lease; returns it.
async fn took_the_lease(c: &TestCluster, r: &Running, old: &str) -> String {
    wait_for(
        "another member to take the Lease",
        Duration::from_secs(60),
        || async { lease_holder(c, r).await.filter(|h| h != old) },
    )
    .await
}

/// The primary's agent alone paused for longer than the lease (async mode,
/// so the new primary writes at once and an overlap would show): its
/// server stops acknowledging before the replica is promoted; resumed, the
/// old primary re-joins as a replica.
#[tokio::test]
async fn fence_stops_a_primary_whose_agent_is_paused() {
    fence_holds("fence-pause", 2, ReplicationMode::Async, Fault::AgentPaused).await;
}

/// kill -9 of the primary's agent alone, async mode: its server stops at
/// once, never alongside another writable server; the container restarts.
#[tokio::test]
async fn fence_stops_a_primary_whose_agent_is_killed_async() {
    fence_holds(
        "fence-kill-a",
        2,
        ReplicationMode::Async,
        Fault::AgentKilled,
    )
    .await;
}

/// kill -9 of the primary's agent alone, sync mode: as above, and no
/// acknowledged commit is lost.
#[tokio::test]
async fn fence_stops_a_primary_whose_agent_is_killed_sync() {
    fence_holds("fence-kill-s", 2, ReplicationMode::Sync, Fault::AgentKilled).await;
}

/// The whole primary (agent, fencer, PostgreSQL) paused for longer than the
/// lease, sync mode with three instances (a standby is left for the new
/// primary's commits): resumed, its server is fenced at once (the time it
/// lived is printed) and it acknowledged no commit the new primary lacks.
#[tokio::test]
async fn fence_stops_a_resumed_primary_at_once() {
    fence_holds(
        "fence-member",
        3,
        ReplicationMode::Sync,
        Fault::MemberPaused,
    )
    .await;
}
