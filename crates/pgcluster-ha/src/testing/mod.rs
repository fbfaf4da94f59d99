//! Test harness (feature `testing`): real PostgreSQL servers in temporary
//! directories, run as the unprivileged OS user, listening on free
//! 127.0.0.1 ports, stopped by their PID and removed when dropped, even
//! when a test fails.
//!
//! ```text
//! TestServer::primary("a") --replica("b")--> TestServer (basebackup + slot) ...
//! drop --> SIGQUIT to our postmaster PID --> wait --> temp dir removed
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::postgres::{
    AuthMethod, HbaRule, Instance, Layout, ManagedConfig, OsUser, PgBinaries, PgError, Postmaster,
    SlotMode, StandbySettings, StopMode, Superuser, local_mode_hba, slot_name_for,
};

/// The superuser password of every test server.
pub const TEST_PASSWORD: &str = "pgcluster-test-password";
/// How long a test server may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports handed out in this process, so parallel tests never share one.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free 127.0.0.1 TCP port not handed out before by this process.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("binding an ephemeral port works on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        let mut ports = PORTS
            .lock()
            .expect("the port set is never poisoned because no code panics under the lock");
        if ports.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no fresh ephemeral port after 100 tries");
}

/// The PostgreSQL binaries for tests: `PGCLUSTER_PG_BIN` if set, else the usual search.
pub async fn binaries() -> PgBinaries {
    let explicit = std::env::var_os("PGCLUSTER_PG_BIN").map(PathBuf::from);
    PgBinaries::locate(explicit.as_deref())
        .await
        .expect("PostgreSQL binaries are installed because the integration tests need them")
}

/// A PostgreSQL server for a test. Dropping it stops the server (SIGQUIT to
/// its PID) and removes its directory.
pub struct TestServer {
    /// The instance (paths, port, credentials).
    pub instance: Instance,
    /// The configuration it was last started with.
    pub config: ManagedConfig,
    /// Its pg_hba rules.
    pub hba: Vec<HbaRule>,
    postmaster: Option<Postmaster>,
    // Declared last: removed after the server is stopped.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// A new (not yet initialised) instance in a fresh temp dir.
    pub async fn new(member: &str) -> Self {
        Self::new_in(member, &std::env::temp_dir()).await
    }

    /// A new (not yet initialised) instance in a fresh directory below `parent`.
    pub async fn new_in(member: &str, parent: &Path) -> Self {
        let os_user = OsUser::resolve(None)
            .await
            .expect("an unprivileged OS user exists or can be created");
        let dir = tempfile::Builder::new()
            .prefix("pgcluster-test-")
            .tempdir_in(parent)
            .expect("the temp dir is writable");
        os_user.chown(dir.path()).expect("we created the temp dir");
        let port = free_port();
        let instance = Instance {
            bin: binaries().await,
            os_user,
            layout: Layout::under(dir.path()),
            port,
            superuser: Superuser {
                name: "postgres".to_owned(),
                password: TEST_PASSWORD.to_owned(),
            },
            member: member.to_owned(),
            fence: None,
        };
        instance.prepare_dirs().expect("the temp dir is writable");
        let mut config =
            ManagedConfig::local(port, instance.layout.socket_dir.clone(), "pgcluster-test");
        // Speed on a busy CI box; crash tests only kill processes, not the OS.
        config.extra.insert("fsync".into(), "off".into());
        config.extra.insert("shared_buffers".into(), "32MB".into());
        config.extra.insert("wal_keep_size".into(), "128MB".into());
        Self {
            instance,
            config,
            hba: local_mode_hba(AuthMethod::ScramSha256),
            postmaster: None,
            dir,
        }
    }

    /// initdb + config + start: a primary.
    pub async fn primary(member: &str) -> Self {
        Self::primary_with(member, |_| {}).await
    }

    /// Like [`TestServer::primary`], with `adjust` applied to the config first.
    pub async fn primary_with(member: &str, adjust: impl FnOnce(&mut ManagedConfig)) -> Self {
        let mut server = Self::new(member).await;
        adjust(&mut server.config);
        server.init_and_start().await;
        server
    }

    /// initdb, config, start (panics when one fails).
    pub async fn init_and_start(&mut self) {
        self.instance
            .initdb(AuthMethod::ScramSha256)
            .await
            .expect("initdb succeeds");
        self.write_config();
        self.start().await.expect("the server starts");
    }

    /// A streaming replica of `primary`: slot created on the primary,
    /// pg_basebackup, standby config, start.
    pub async fn replica_of(primary: &TestServer, member: &str) -> Self {
        let mut server = Self::new(member).await;
        let slot = slot_name_for(member).expect("test member names are valid slot names");
        let client = primary.client().await;
        crate::postgres::create_physical_slot(&client, &slot)
            .await
            .expect("slot created");
        server
            .instance
            .basebackup(&primary.instance.as_upstream(), &SlotMode::Existing(slot))
            .await
            .expect("pg_basebackup succeeds");
        server.follow(primary);
        server.write_config();
        server.start().await.expect("the replica starts");
        server
    }

    /// Sets the standby settings in `config` to stream from `primary`
    /// through the slot named after this member (not written yet).
    pub fn follow(&mut self, primary: &TestServer) {
        self.config.standby = Some(StandbySettings {
            primary_conninfo: self.instance.conninfo(&primary.instance.as_upstream()),
            primary_slot_name: Some(slot_name_for(&self.instance.member).expect("valid slot name")),
        });
    }

    /// Writes `config` and `hba` into the data directory.
    pub fn write_config(&self) {
        self.instance
            .write_config(&self.config, &self.hba)
            .expect("config written");
    }

    /// Starts the server (it must be stopped).
    pub async fn start(&mut self) -> Result<(), PgError> {
        assert!(self.postmaster.is_none(), "server already running");
        self.postmaster = Some(self.instance.start(START_TIMEOUT).await?);
        Ok(())
    }

    /// Stops the server with `mode`.
    pub async fn stop(&mut self, mode: StopMode) {
        if let Some(pm) = self.postmaster.take() {
            pm.stop(mode, STOP_TIMEOUT).await.expect("the server stops");
        }
    }

    /// The running postmaster.
    pub fn postmaster(&mut self) -> &mut Postmaster {
        self.postmaster.as_mut().expect("the server is running")
    }

    /// Takes the postmaster out (the caller now stops it).
    pub fn take_postmaster(&mut self) -> Postmaster {
        self.postmaster.take().expect("the server is running")
    }

    /// Puts a postmaster back (after the caller restarted it).
    pub fn set_postmaster(&mut self, postmaster: Postmaster) {
        assert!(self.postmaster.is_none(), "server already running");
        self.postmaster = Some(postmaster);
    }

    /// A superuser connection over the Unix socket.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.instance
            .connect()
            .await
            .expect("connects to the test server")
    }

    /// Its TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.instance.port))
    }

    /// The base directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(log_file) = self.instance.layout.server_log.file()
        {
            // The temp dir goes away with us: show the server log while we can
            // (an inherited log is already on the test's stderr).
            let log = std::fs::read_to_string(log_file).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- server log of {} (last 30 lines) ---\n{}",
                self.instance.member,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        let Some(mut pm) = self.postmaster.take() else {
            return;
        };
        // Only our own child's PID is signalled; then bounded wait.
        let _ = pm.signal(StopMode::Immediate);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(pm.try_exit_status(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "test server (pid {}) did not exit after SIGQUIT within 15 s",
            pm.pid()
        );
    }
}

/// Polls `check` every 50 ms until it returns `Some`, at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
