//! Integration tests of replication on real PostgreSQL 15 servers:
//! base backup with a slot, promotion, demotion, pg_rewind, re-clone and
//! synchronous replication.

use std::time::Duration;

use pgcluster_ha::machine::{MemberName, SyncStandbys};
use pgcluster_ha::postgres::{self, SlotMode, StopMode};
use pgcluster_ha::testing::{TestServer, wait_for};

const WAIT: Duration = Duration::from_secs(30);

async fn count(server: &TestServer, table: &str) -> Option<i64> {
    let client = server.instance.connect().await.ok()?;
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .ok()?;
    Some(row.get(0))
}

async fn wait_count(server: &TestServer, table: &str, expected: i64) {
    wait_for(
        &format!("{expected} rows in {table} on {}", server.instance.member),
        WAIT,
        || async { (count(server, table).await == Some(expected)).then_some(()) },
    )
    .await;
}

/// A replica built by pg_basebackup through a slot streams: a write on the
/// primary appears on the replica, both sides observe the link, the slot is
/// active, and the replica shares the primary's system identifier.
#[tokio::test]
async fn replica_via_basebackup_streams_writes() {
    let primary = TestServer::primary("a").await;
    let replica = TestServer::replica_of(&primary, "b").await;
    let pc = primary.client().await;
    pc.batch_execute("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 100)")
        .await
        .expect("write on primary");
    wait_count(&replica, "t", 100).await;

    let p = postgres::observe(&pc).await.expect("observe primary");
    let r = postgres::observe(&replica.client().await)
        .await
        .expect("observe replica");
    assert!(r.in_recovery && r.streaming);
    assert_eq!(r.system_identifier, p.system_identifier);
    assert_eq!(r.timeline, 1);
    assert!(r.received_lsn.is_some() && r.replayed_lsn.is_some());
    assert!(r.replayed_lsn <= p.flushed_lsn);
    let b = p
        .standbys
        .iter()
        .find(|s| s.application_name == "b")
        .expect("replica b is listed");
    assert_eq!(b.state, "streaming");
    assert_eq!(b.sync_state, "async");
    let slots = postgres::list_physical_slots(&pc).await.expect("slots");
    assert!(slots.iter().any(|s| s.name == "b" && s.active), "{slots:?}");
}

/// Promotion makes the replica writable on timeline 2.
#[tokio::test]
async fn promote_increments_timeline() {
    let primary = TestServer::primary("a").await;
    let replica = TestServer::replica_of(&primary, "b").await;
    let rc = replica.client().await;
    postgres::promote(&rc, 30).await.expect("promote");
    let state = postgres::observe(&rc).await.expect("observe");
    assert!(!state.in_recovery);
    assert_eq!(state.timeline, 2);
    rc.batch_execute("CREATE TABLE after_promote (v int)")
        .await
        .expect("writable");
}

/// After a failover the old primary, which wrote on its own (diverged), is
/// rewound with pg_rewind against the new primary and follows it on the new
/// timeline; its divergent write is gone.
#[tokio::test]
async fn old_primary_rewinds_and_follows_new_primary() {
    let mut a = TestServer::primary("a").await;
    let b = TestServer::replica_of(&a, "b").await;
    let ac = a.client().await;
    ac.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .expect("write");
    wait_count(&b, "t", 1).await;
    let bc = b.client().await;
    postgres::promote(&bc, 30).await.expect("promote b");
    ac.batch_execute("INSERT INTO t SELECT generate_series(1000, 2000); CHECKPOINT")
        .await
        .expect("divergent write on the old primary");
    drop(ac);
    a.stop(StopMode::Immediate).await;

    postgres::create_physical_slot(&bc, "a")
        .await
        .expect("slot for a on b");
    a.follow(&b);
    a.instance
        .rewind(&b.instance.as_upstream(), &a.config, &a.hba)
        .await
        .expect("pg_rewind");
    a.start().await.expect("old primary starts as replica");
    bc.batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("write on new primary");
    wait_count(&a, "t", 2).await;
    let state = postgres::observe(&a.client().await)
        .await
        .expect("observe a");
    assert!(state.in_recovery);
    assert_eq!(state.timeline, 2);
    assert!(state.streaming);
}

/// A planned switchover: demote the primary (fast stop, standby config,
/// restart), then promote the replica; the old primary follows the new
/// timeline without rewind and nothing committed is lost.
#[tokio::test]
async fn demote_then_promote_switchover() {
    let mut a = TestServer::primary("a").await;
    let b = TestServer::replica_of(&a, "b").await;
    a.client()
        .await
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 10)")
        .await
        .expect("write");
    wait_count(&b, "t", 10).await;
    postgres::create_physical_slot(&b.client().await, "a")
        .await
        .expect("slot for a on b");
    a.follow(&b);
    let pm = a.take_postmaster();
    let pm = a
        .instance
        .demote(pm, &a.config, &a.hba, Duration::from_secs(30))
        .await
        .expect("demote");
    a.set_postmaster(pm);
    // The demoted primary's shutdown checkpoint must reach b before b is promoted.
    let a_state = postgres::observe(&a.client().await)
        .await
        .expect("observe a");
    assert!(a_state.in_recovery);
    let bc = b.client().await;
    postgres::promote(&bc, 30).await.expect("promote b");
    bc.batch_execute("INSERT INTO t VALUES (11)")
        .await
        .expect("write on b");
    wait_count(&a, "t", 11).await;
    wait_for("a on timeline 2", WAIT, || async {
        let st = postgres::observe(&a.client().await).await.ok()?;
        (st.timeline == 2).then_some(())
    })
    .await;
}

/// Re-clone replaces a diverged data directory with a fresh copy; when the
/// base backup fails the old directory is put back untouched.
#[tokio::test]
async fn reclone_keeps_old_data_until_new_copy_succeeds() {
    let mut a = TestServer::primary("a").await;
    let b = TestServer::replica_of(&a, "b").await;
    let bc = b.client().await;
    postgres::promote(&bc, 30).await.expect("promote b");
    bc.batch_execute("CREATE TABLE on_b (v int); INSERT INTO on_b VALUES (1)")
        .await
        .expect("write on b");
    a.client()
        .await
        .batch_execute("CREATE TABLE only_on_a (v int)")
        .await
        .expect("diverge");
    a.stop(StopMode::Fast).await;
    a.follow(&b);

    let mut bad = b.instance.as_upstream();
    bad.port = pgcluster_ha::testing::free_port();
    let err = a
        .instance
        .reclone(&bad, &SlotMode::None, &a.config, &a.hba)
        .await
        .expect_err("no server on that port");
    assert_eq!(err.category(), "command", "{err}");
    assert!(
        a.instance.layout.data_dir.join("PG_VERSION").exists(),
        "old data restored"
    );
    assert!(!a.instance.layout.data_dir.with_extension("old").exists());

    a.instance
        .reclone(
            &b.instance.as_upstream(),
            &SlotMode::Create("a".into()),
            &a.config,
            &a.hba,
        )
        .await
        .expect("re-clone from b");
    assert!(
        !a.instance.layout.data_dir.with_extension("old").exists(),
        "old copy removed after success"
    );
    a.start().await.expect("re-cloned replica starts");
    wait_count(&a, "on_b", 1).await;
    let ac = a.client().await;
    let exists: bool = ac
        .query_one("SELECT to_regclass('only_on_a') IS NOT NULL", &[])
        .await
        .expect("query")
        .get(0);
    assert!(!exists, "the divergent table is gone");
}

/// Sets `synchronous_standby_names` as the agent does: rendered from a
/// [`SyncStandbys`] into the managed configuration file, then a reload.
async fn configure_sync(server: &mut TestServer, sync: &SyncStandbys) {
    server.config.synchronous_standby_names = sync.to_setting();
    server
        .instance
        .write_config(&server.config, &server.hba)
        .expect("write the managed configuration");
    postgres::reload(&server.client().await)
        .await
        .expect("reload");
}

fn all_of(names: &[&str]) -> SyncStandbys {
    SyncStandbys::AllOf(names.iter().map(|n| MemberName::new(*n)).collect())
}

/// Waits until a commit on `server` waits for a synchronous standby
/// (`wait_event = 'SyncRep'`): proof the insert was sent and is held.
async fn wait_held(server: &TestServer) {
    let c = server.client().await;
    wait_for(
        "a commit waiting for a synchronous standby",
        WAIT,
        || async {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (n > 0).then_some(())
        },
    )
    .await;
}

/// With `synchronous_standby_names` naming the replica (`FIRST 1 ("b")`, as
/// the agent writes it), commits are acknowledged while it streams and wait
/// while it is down, completing once it is back; `Off` releases waiting
/// commits.
#[tokio::test]
async fn synchronous_replication_blocks_and_acks() {
    let mut primary = TestServer::primary("a").await;
    let mut replica = TestServer::replica_of(&primary, "b").await;
    let pc = primary.client().await;
    pc.batch_execute("CREATE TABLE t (v int)")
        .await
        .expect("create");
    configure_sync(&mut primary, &all_of(&["b"])).await;
    wait_for("b is a synchronous standby", WAIT, || async {
        let st = postgres::observe(&pc).await.ok()?;
        st.standbys
            .iter()
            .any(|s| s.application_name == "b" && s.is_synchronous())
            .then_some(())
    })
    .await;
    tokio::time::timeout(
        Duration::from_secs(10),
        pc.batch_execute("INSERT INTO t VALUES (1)"),
    )
    .await
    .expect("acked while the sync standby streams")
    .expect("insert");

    replica.stop(StopMode::Fast).await;
    let writer = primary.client().await;
    let blocked =
        tokio::spawn(async move { writer.batch_execute("INSERT INTO t VALUES (2)").await });
    wait_held(&primary).await;
    assert!(
        !blocked.is_finished(),
        "commit must wait for the synchronous standby"
    );
    replica.start().await.expect("replica back");
    tokio::time::timeout(WAIT, blocked)
        .await
        .expect("commit acknowledged once the standby is back")
        .expect("task")
        .expect("insert");
    wait_count(&replica, "t", 2).await;

    replica.stop(StopMode::Fast).await;
    let writer = primary.client().await;
    let blocked =
        tokio::spawn(async move { writer.batch_execute("INSERT INTO t VALUES (3)").await });
    wait_held(&primary).await;
    assert!(!blocked.is_finished());
    configure_sync(&mut primary, &SyncStandbys::Off).await;
    tokio::time::timeout(WAIT, blocked)
        .await
        .expect("released by switching to async")
        .expect("task")
        .expect("insert");
}

/// A commit waiting under a setting that names no streaming standby (the
/// agent's empty set, which blocks) is released once the setting names one
/// and the standbys are nudged, though the idle standby (status interval an
/// hour here) would send no reply of its own: PostgreSQL re-checks waiting
/// commits only on a standby's reply. Without the nudge the commit waits for
/// unrelated WAL (the background writer's snapshot, every 15 s at best);
/// with it, it is released at once.
#[tokio::test]
async fn nudge_releases_commits_waiting_on_a_changed_standby_set() {
    let mut primary = TestServer::primary("a").await;
    let mut replica = TestServer::replica_of(&primary, "b").await;
    replica
        .config
        .extra
        .insert("wal_receiver_status_interval".into(), "1h".into());
    replica
        .instance
        .write_config(&replica.config, &replica.hba)
        .expect("configure the standby");
    postgres::reload(&replica.client().await)
        .await
        .expect("reload the standby");
    let pc = primary.client().await;
    pc.batch_execute("CREATE TABLE t (v int)")
        .await
        .expect("create");
    wait_count(&replica, "t", 0).await;
    configure_sync(&mut primary, &all_of(&[])).await;
    let writer = primary.client().await;
    let blocked =
        tokio::spawn(async move { writer.batch_execute("INSERT INTO t VALUES (1)").await });
    wait_held(&primary).await;
    assert!(!blocked.is_finished(), "waits: no listed standby streams");

    configure_sync(&mut primary, &all_of(&["b"])).await;
    let nudged = postgres::nudge_sync_standbys(&pc, Duration::from_secs(10))
        .await
        .expect("nudge");
    assert!(nudged, "b streams, so it was nudged");
    tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("released by the nudge, not by unrelated WAL much later")
        .expect("task")
        .expect("insert");
    wait_count(&replica, "t", 1).await;
}
