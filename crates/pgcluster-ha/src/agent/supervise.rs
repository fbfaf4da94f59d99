//! [`LocalPg`]: the supervised postmaster and what the agent configured it
//! with (standby of whom, `synchronous_standby_names`). It notices when the
//! postmaster dies, adopts nothing it did not start (a postmaster left by a
//! previous agent is stopped by the PID in its own `postmaster.pid`), and
//! renders the managed configuration from the agent's decisions.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::AgentConfig;
use crate::machine::{MemberName, SyncStandbys};
use crate::postgres::{
    AuthMethod, HbaRule, ManagedConfig, PgError, Postmaster, StandbySettings, StopMode, Upstream,
    local_mode_hba, slot_name_for,
};

/// The local server as the agent controls it.
#[derive(Debug)]
pub struct LocalPg {
    /// The running postmaster we started, if any.
    pub postmaster: Option<Postmaster>,
    /// The observation connection (dropped whenever the server stops).
    pub client: Option<Session>,
    /// The member `primary_conninfo` points at (`None`: primary settings).
    pub standby_of: Option<MemberName>,
    /// The `synchronous_standby_names` the agent last wrote.
    pub sync: SyncStandbys,
    /// The data directory's system identifier once known (cache; reset when
    /// the data directory is replaced).
    pub system_id: Option<u64>,
    /// The last observation of the running server (reused when it is slow to answer).
    pub last_running: Option<crate::machine::PgObservation>,
    /// The end of WAL found for a stopped server, keyed by (checkpoint,
    /// timeline); a guess after a timed-out read carries when to read again.
    pub wal_end_cache: Option<WalEndCache>,
    /// The slow operation running in the background, if any.
    pub background: Option<super::background::Background>,
    /// Wakes the agent loop when a background operation reaches a point the
    /// next tick should see at once (promoted, finished), instead of at the
    /// next interval.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

/// What a cached end of WAL was read for: a new checkpoint, timeline or
/// segment file reads it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalEndKey {
    /// The last checkpoint's location.
    pub checkpoint_lsn: u64,
    /// The timeline local WAL ends on.
    pub timeline: u32,
    /// The end of that timeline's last segment file.
    pub bound: Option<u64>,
}

/// The end of a stopped server's WAL as last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalEndCache {
    /// What it was read for.
    pub key: WalEndKey,
    /// The end found (or pg_controldata's lower bound).
    pub end: u64,
    /// Read again after this (set when pg_waldump timed out).
    pub retry_at: Option<std::time::Instant>,
}

impl LocalPg {
    /// Nothing running, nothing known yet.
    pub fn new() -> Self {
        Self {
            postmaster: None,
            client: None,
            standby_of: None,
            sync: SyncStandbys::Off,
            system_id: None,
            background: None,
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            last_running: None,
            wal_end_cache: None,
        }
    }

    /// The postmaster's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Postmaster::pid)
    }

    /// Checks whether our postmaster is still alive; forgets it (and the
    /// connection) when it exited. Returns the exit status it had.
    pub fn reap(&mut self) -> Option<String> {
        let pm = self.postmaster.as_mut()?;
        match pm.try_exit_status() {
            Ok(Some(status)) => {
                let pid = pm.pid();
                tracing::warn!(pid, %status, "postmaster exited");
                self.postmaster = None;
                self.client = None;
                self.last_running = None;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "could not check the postmaster");
                None
            }
        }
    }

    /// The managed configuration for the current decisions.
    pub fn managed_config(&self, cfg: &AgentConfig) -> Result<ManagedConfig, PgError> {
        let inst = &cfg.instance;
        let mut config = ManagedConfig::new(
            cfg.server_settings.clone(),
            &format!("{}/{}", cfg.cluster_name, cfg.me()),
        );
        config.synchronous_standby_names = self.sync.to_setting();
        config.standby = match &self.standby_of {
            None => None,
            Some(of) => Some(StandbySettings {
                primary_conninfo: inst.conninfo(&upstream(cfg, of)),
                primary_slot_name: Some(slot_name_for(cfg.me().as_str())?),
            }),
        };
        Ok(config)
    }

    /// Writes the managed configuration into the data directory.
    pub fn write_config(&self, cfg: &AgentConfig) -> Result<(), PgError> {
        cfg.instance
            .write_config(&self.managed_config(cfg)?, &hba())
    }

    /// Starts the postmaster on the current configuration.
    pub async fn start(&mut self, cfg: &AgentConfig) -> Result<(), PgError> {
        if self.postmaster.is_some() {
            return Ok(());
        }
        self.write_config(cfg)?;
        let pm = cfg.instance.start(cfg.start_timeout).await?;
        self.postmaster = Some(pm);
        self.client = None;
        Ok(())
    }

    /// Stops the postmaster (if running) with `mode`.
    pub async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<(), PgError> {
        self.client = None;
        self.last_running = None;
        let Some(pm) = self.postmaster.take() else {
            return Ok(());
        };
        stop_postmaster(pm, mode, timeout).await
    }

    /// The observation connection, opened on demand.
    pub async fn client(&mut self, cfg: &AgentConfig) -> Result<&tokio_postgres::Client, PgError> {
        Ok(&self.session(cfg).await?.client)
    }

    /// The observation connection and its prepared observation statement,
    /// both made on demand and kept while the server runs: an observation
    /// is then one round trip.
    pub async fn observer(
        &mut self,
        cfg: &AgentConfig,
    ) -> Result<(&tokio_postgres::Client, &tokio_postgres::Statement), PgError> {
        let session = self.session(cfg).await?;
        if session.observe.is_none() {
            session.observe = Some(crate::postgres::prepare_observation(&session.client).await?);
        }
        let statement = session
            .observe
            .as_ref()
            .expect("the statement was set just above because prepare succeeded");
        Ok((&session.client, statement))
    }

    async fn session(&mut self, cfg: &AgentConfig) -> Result<&mut Session, PgError> {
        if self.client.as_ref().is_some_and(|s| s.client.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(Session {
                client: cfg.instance.connect().await?,
                observe: None,
            });
        }
        Ok(self
            .client
            .as_mut()
            .expect("the client was set just above because connect succeeded"))
    }
}

/// A connection to the local server and the statements prepared on it.
#[derive(Debug)]
pub struct Session {
    client: tokio_postgres::Client,
    observe: Option<tokio_postgres::Statement>,
}

impl Default for LocalPg {
    fn default() -> Self {
        Self::new()
    }
}

/// pg_hba for local mode: scram-sha-256 everywhere (the agent authenticates
/// with the superuser's password on the Unix socket too).
pub fn hba() -> Vec<HbaRule> {
    local_mode_hba(AuthMethod::ScramSha256)
}

/// `member` as a replication/rewind/clone source.
pub fn upstream(cfg: &AgentConfig, member: &MemberName) -> Upstream {
    let peer = cfg.peers.get(member);
    Upstream {
        host: peer.map_or_else(|| "127.0.0.1".to_owned(), |p| p.host.clone()),
        port: peer.map_or(0, |p| p.pg_port),
        user: cfg.instance.superuser.name.clone(),
    }
}

/// A postmaster left running by a previous agent of this member (killed
/// without stopping it): the PID in `postmaster.pid`, if that process is a
/// live `postgres`.
pub fn orphan_postmaster(cfg: &AgentConfig) -> Option<u32> {
    postmaster_of(&cfg.instance.layout.data_dir)
}

/// The postmaster serving `data_dir`: the PID in its `postmaster.pid`, if
/// that process is a live `postgres` of this directory (a stale file may name
/// a PID reused by anything).
pub fn postmaster_of(data_dir: &std::path::Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let data = data_dir.display().to_string();
    (cmdline.contains("postgres") && cmdline.contains(&data)).then_some(pid)
}

/// Stops `pm` with `mode`, waiting up to `timeout`; a fast stop that times
/// out becomes an immediate one (for the agent's own stops and the
/// background clean stop alike).
pub async fn stop_postmaster(
    pm: Postmaster,
    mode: StopMode,
    timeout: Duration,
) -> Result<(), PgError> {
    let pid = pm.pid();
    match pm.stop(mode, timeout).await {
        Ok(_) => Ok(()),
        Err(PgError::StopTimeout { .. }) if mode == StopMode::Fast => {
            tracing::warn!(pid, "fast stop timed out; stopping immediately");
            quit_and_wait(pid).await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Stops an orphan postmaster of our data directory (immediate), waiting for it to exit.
pub async fn stop_orphan(pid: u32) {
    tracing::warn!(
        pid,
        "stopping a postmaster left by a previous agent of this member"
    );
    quit_and_wait(pid).await;
}

/// SIGQUIT (immediate shutdown), SIGKILL if it is still there after 10 s.
async fn quit_and_wait(pid: u32) {
    signal_pid(pid, Signal::SIGQUIT);
    if !wait_gone(pid, Duration::from_secs(10)).await {
        signal_pid(pid, Signal::SIGKILL);
        wait_gone(pid, Duration::from_secs(5)).await;
    }
}

fn signal_pid(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Waits until `pid` no longer exists; false on timeout.
async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
