//! Where a real PostgreSQL 15 server's log goes with [`ServerLog::Inherit`]
//! (Kubernetes mode): to the stderr of the process that started it, and into
//! no file.
//!
//! The server inherits the stderr of the whole test process, which libtest
//! does not capture, so the test re-runs this binary with only
//! [`inherited_log_child`] selected and its stderr sent to a file it reads:
//!
//! ```text
//! inherited_server_log_reaches_our_stderr --spawn self, stderr=file--> inherited_log_child
//!     --Instance::start (Inherit)--> postgres (stderr: that file)
//! ```

use std::path::PathBuf;
use std::process::Command;

use pgcluster_ha::postgres::{AuthMethod, Layout, PgError, ServerLog, StartLog, StopMode};
use pgcluster_ha::testing::TestServer;

/// Set (to a directory) only in the re-run child: where it may write.
const CHILD_DIR: &str = "PGCLUSTER_TEST_INHERITED_LOG_DIR";

/// A server started with an inherited log writes its startup and shutdown
/// messages to the starter's stderr, a failed start's complaint too, and no
/// log file appears (see [`inherited_log_child`] for what it asserts inside).
#[test]
fn inherited_server_log_reaches_our_stderr() {
    let dir = tempfile::tempdir().expect("the temp dir is writable");
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("the temp dir is writable");
    let out = Command::new(std::env::current_exe().expect("the test binary has a path"))
        .args([
            "inherited_log_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        // A file, not a pipe: a server that outlived a failed child would
        // keep a pipe open and hang this test instead of failing it.
        .stderr(stderr)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(&stderr_path).expect("the child's stderr was written");
    assert!(
        out.status.success(),
        "the child failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    // Guards against a renamed child: a filter that matches nothing passes too.
    assert!(stdout.contains("1 passed"), "{stdout}");
    for expected in [
        // The failed start, before any logging is set up.
        "Run initdb or pg_basebackup to initialize a PostgreSQL data directory.",
        // The real start and stop, through the server's logging.
        "database system is ready to accept connections",
        "database system is shut down",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} is not in the child's stderr:\n{stderr}"
        );
    }
}

/// The child half of [`inherited_server_log_reaches_our_stderr`]; does
/// nothing unless that test runs it.
#[tokio::test]
#[ignore = "run by inherited_server_log_reaches_our_stderr in a child process"]
async fn inherited_log_child() {
    let Some(parent) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let mut server = TestServer::new_in("inherit", &parent).await;
    server.instance.layout.server_log = ServerLog::Inherit;
    let would_be_file = Layout::under(server.dir())
        .server_log
        .file()
        .expect("Layout::under logs to a file")
        .to_owned();

    // No data directory yet: the postmaster exits at once.
    let err = server.start().await.expect_err("no data directory yet");
    assert!(
        matches!(
            err,
            PgError::StartFailed {
                log: StartLog::Inherited,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("agent's stderr"), "{err}");

    server
        .instance
        .initdb(AuthMethod::ScramSha256)
        .await
        .expect("initdb succeeds");
    server.write_config();
    server.start().await.expect("the server starts");
    let client = server.client().await;
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(one, 1);
    drop(client);
    server.stop(StopMode::Fast).await;
    assert!(
        !would_be_file.exists(),
        "{} was created although the log is inherited",
        would_be_file.display()
    );
}
