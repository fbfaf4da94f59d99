//! Where a real PostgreSQL 15 server's log goes with [`ServerLog::Inherit`]
//! (Kubernetes mode): to the stderr of the process that started it, and into
//! no file.
//!
//! The server inherits this process's file descriptor 2, which libtest does
//! not capture: the test points it at a file while the server runs and reads
//! that file back. This binary holds this one test, so nothing else writes to
//! descriptor 2 meanwhile.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use pgcluster_ha::postgres::{Layout, PgError, ServerLog, StartLog, StopMode};
use pgcluster_ha::testing::TestServer;

/// Descriptor 2 pointed at a file until dropped; on a panic the file's text
/// is printed once descriptor 2 is back.
struct Redirected {
    saved: OwnedFd,
    path: PathBuf,
}

impl Redirected {
    fn to(path: &Path) -> Self {
        let file = std::fs::File::create(path).expect("the temp dir is writable");
        let saved = nix::unistd::dup(std::io::stderr()).expect("stderr can be duplicated");
        nix::unistd::dup2_stderr(&file).expect("stderr can be redirected");
        Self {
            saved,
            path: path.to_owned(),
        }
    }
}

impl Drop for Redirected {
    fn drop(&mut self) {
        let _ = nix::unistd::dup2_stderr(&self.saved);
        if std::thread::panicking()
            && let Ok(text) = std::fs::read_to_string(&self.path)
        {
            eprintln!("--- what reached stderr ---\n{text}");
        }
    }
}

/// A server started with an inherited log writes its startup and shutdown
/// messages to the starter's stderr, a failed start's complaint too, and no
/// log file appears.
#[tokio::test]
async fn inherited_server_log_reaches_our_stderr() {
    let dir = tempfile::tempdir().expect("the temp dir is writable");
    let stderr_path = dir.path().join("stderr");
    let redirected = Redirected::to(&stderr_path);

    let mut server = TestServer::new_in("inherit", dir.path()).await;
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

    server.init_and_start().await;
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

    drop(redirected);
    let stderr = std::fs::read_to_string(&stderr_path).expect("the redirected stderr was written");
    for expected in [
        // The failed start, before any logging is set up.
        "Run initdb or pg_basebackup to initialize a PostgreSQL data directory.",
        // The real start and stop, through the server's logging.
        "database system is ready to accept connections",
        "database system is shut down",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} is not in what reached stderr:\n{stderr}"
        );
    }
}
