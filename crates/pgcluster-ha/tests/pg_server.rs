//! Integration tests on one real PostgreSQL 15 server: bootstrap,
//! observation, the clear errors, and both fences.

use std::time::Duration;

use pgcluster_ha::postgres::{self, DataDirState, PgError, StopMode};
use pgcluster_ha::testing::TestServer;

/// initdb + start gives a checksummed primary on timeline 1 that observation
/// describes correctly, run by an unprivileged OS user.
#[tokio::test]
async fn initdb_start_observe() {
    let server = TestServer::primary("solo").await;
    let client = server.client().await;
    let state = postgres::observe(&client).await.expect("observe");
    assert!(!state.in_recovery);
    assert_eq!(state.timeline, 1);
    assert!(state.flushed_lsn.is_some_and(|l| l.0 > 0));
    assert!(state.standbys.is_empty());
    assert_eq!(state.connections.max, 100);
    assert!(state.connections.in_use >= 1);
    let show = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .expect("SHOW")
                .get::<_, String>(0)
        }
    };
    assert_eq!(show("data_checksums").await, "on");
    assert_eq!(show("wal_level").await, "replica");
    assert_eq!(show("wal_log_hints").await, "on");
    assert_eq!(show("listen_addresses").await, "127.0.0.1");
    assert_eq!(show("max_slot_wal_keep_size").await, "2GB");
    let owner: u32 = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(&server.instance.layout.data_dir).expect("data dir exists"),
    );
    assert_ne!(owner, 0, "the data directory must not belong to root");
    let via_instance = server.instance.observe().await.expect("observe");
    assert_eq!(
        via_instance.map(|s| s.system_identifier),
        Some(state.system_identifier)
    );
    let on_disk = server
        .instance
        .data_dir_state()
        .await
        .expect("pg_controldata");
    assert_eq!(
        on_disk,
        DataDirState::Initialised {
            system_identifier: state.system_identifier
        }
    );
}

/// A data directory of another cluster is refused, naming both identifiers;
/// a non-empty non-cluster directory is refused too. Nothing is removed.
#[tokio::test]
async fn foreign_or_junk_data_dir_is_refused() {
    let mut server = TestServer::primary("foreign").await;
    server.stop(StopMode::Fast).await;
    let DataDirState::Initialised { system_identifier } =
        server.instance.data_dir_state().await.expect("state")
    else {
        panic!("initialised cluster expected");
    };
    let err = server
        .instance
        .check_data_dir(Some(system_identifier ^ 1))
        .await
        .expect_err("another cluster's data dir");
    assert!(matches!(err, PgError::ForeignDataDir { .. }), "{err}");
    assert!(
        err.to_string().contains(&system_identifier.to_string()),
        "{err}"
    );
    assert!(
        server.instance.layout.data_dir.join("PG_VERSION").exists(),
        "nothing removed"
    );

    let junk = TestServer::new("junk").await;
    std::fs::create_dir_all(&junk.instance.layout.data_dir).expect("mkdir");
    std::fs::write(junk.instance.layout.data_dir.join("notes.txt"), "mine").expect("write");
    let err = junk
        .instance
        .check_data_dir(None)
        .await
        .expect_err("not a cluster");
    assert!(matches!(err, PgError::NotADataDir { .. }), "{err}");
    assert!(
        junk.instance.layout.data_dir.join("notes.txt").exists(),
        "nothing removed"
    );
}

/// Starting on a port another process holds fails before anything starts,
/// naming the port.
#[tokio::test]
async fn port_in_use_is_refused() {
    let mut server = TestServer::primary("port").await;
    server.stop(StopMode::Fast).await;
    let squatter =
        std::net::TcpListener::bind(("127.0.0.1", server.instance.port)).expect("take the port");
    let err = server.start().await.expect_err("port is taken");
    assert!(
        matches!(err, PgError::PortInUse { port } if port == server.instance.port),
        "{err}"
    );
    drop(squatter);
    server.start().await.expect("starts once the port is free");
}

/// The immediate fence (SIGQUIT to our postmaster) stops writes at once:
/// the open session fails, new connections are refused; committed data
/// survives the crash recovery at the next start.
#[tokio::test]
async fn immediate_fence_stops_writes() {
    let mut server = TestServer::primary("fence").await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .expect("write before the fence");
    let started = std::time::Instant::now();
    server
        .take_postmaster()
        .fence(Duration::from_secs(10))
        .await
        .expect("fenced");
    let fence_time = started.elapsed();
    assert!(
        client
            .batch_execute("INSERT INTO t VALUES (2)")
            .await
            .is_err(),
        "write after the fence must fail"
    );
    assert!(
        server.instance.connect().await.is_err(),
        "no new connections"
    );
    assert_eq!(
        server.instance.observe().await.expect("observe"),
        None,
        "observed as not running"
    );
    assert!(
        fence_time < Duration::from_secs(2),
        "fence took {fence_time:?}"
    );
    server.start().await.expect("restart after the fence");
    let count: i64 = server
        .client()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(count, 1, "the committed row survives");
}

/// A small tmpfs, unmounted (lazily) on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts a tmpfs of `size` on a fresh temp dir; `None` when we may not mount.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// A full disk during initdb is reported as DiskFull with the path that
/// could not be written (not as a generic command failure).
#[tokio::test]
async fn disk_full_is_reported_with_path() {
    let Some(fs) = Tmpfs::mount("12m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let server = TestServer::new_in("full", fs.0.path()).await;
    let err = server
        .instance
        .initdb(postgres::AuthMethod::ScramSha256)
        .await
        .expect_err("12 MB is too small for initdb");
    assert!(matches!(err, PgError::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    drop(server);
}
