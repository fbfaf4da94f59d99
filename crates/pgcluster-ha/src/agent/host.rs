//! [`Host`]: everything the [`super::execute::Executor`] acts on besides the
//! coordinator — the local server, its fence, pod labels and peers. The agent
//! runs it on the real thing ([`AgentHost`]); the simulator
//! ([`crate::sim`]) on in-memory fakes of PostgreSQL and the clock, so both
//! run the same executor, with the same rules, on every action.
//!
//! ```text
//! step --> actions --> Executor (rules, order, timeouts) --> Host: AgentHost (postgres, fencer, pods, peers)
//!                                                              or SimHost (simulated server, clock, network)
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use super::AgentConfig;
use super::background::{Background, Op};
use super::execute::ExecError;
use super::supervise::LocalPg;
use super::watchdog::Watchdog;
use crate::machine::{
    FailsafeProbe, FailsafeReply, MemberName, Millis, PgObservation, RoleLabel, SyncStandbys,
};
use crate::postgres::{self, PgError, StopMode};

/// Why the configuration is reloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// A running standby follows another primary (`primary_conninfo`).
    Follow,
    /// `synchronous_standby_names` changed; `nudge` asks the standbys to
    /// report at once (commits may be waiting on them).
    Sync {
        /// Nudge the standbys after the reload.
        nudge: bool,
    },
}

/// The local server and its surroundings, as the executor sees them.
pub trait Host {
    /// The machine's clock now (the clock lease deadlines are in).
    fn now(&self) -> Millis;
    /// The deadline the fence is armed with, if any.
    fn armed_until(&self) -> Option<Millis>;
    /// A postmaster started by this agent is running.
    fn has_postmaster(&self) -> bool;
    /// The slow operation running in the background, if any.
    fn running_op(&self) -> Option<&Op>;
    /// Starts `op` in the background on the current configuration (the
    /// caller checked that none runs).
    fn start_op(&mut self, op: Op) -> Result<(), ExecError>;
    /// Aborts the running operation and stops any server it left.
    fn abort_op(&mut self) -> impl Future<Output = ()> + Send;
    /// Stops the server (if running) with `mode`.
    fn stop(&mut self, mode: StopMode) -> impl Future<Output = Result<(), PgError>> + Send;
    /// The member `primary_conninfo` points at.
    fn standby_of(&self) -> Option<&MemberName>;
    /// Sets whom the next configuration follows (`None`: primary settings).
    fn set_standby_of(&mut self, of: Option<MemberName>);
    /// The data directory is about to be replaced: forget what was cached about it.
    fn forget_data(&mut self);
    /// Until the running clean stop ends, report the server as last `seen`.
    fn hold_last_seen(&mut self, seen: &PgObservation);
    /// The `synchronous_standby_names` last configured.
    fn sync(&self) -> &SyncStandbys;
    /// Configures `synchronous_standby_names` for the next write of the configuration.
    fn set_sync(&mut self, sync: SyncStandbys);
    /// The data directory holds a cluster.
    fn has_data(&self) -> bool;
    /// Writes the configuration and, if a server runs, reloads it.
    fn reload(&mut self, why: Reload) -> impl Future<Output = Result<(), ExecError>> + Send;
    /// Arms the fence: stop the server at `deadline` unless re-armed.
    fn arm(&mut self, deadline: Millis);
    /// Points the fence at the current postmaster (after every action).
    fn track_postmaster(&mut self);
    /// Labels `member`'s pod with `role` (a no-op where there are no pods).
    fn set_role_label(&mut self, member: &MemberName, role: RoleLabel);
    /// Asks every peer a failsafe probe; the replies that come in time.
    fn probe_peers(
        &mut self,
        probe: &FailsafeProbe,
    ) -> impl Future<Output = Vec<FailsafeReply>> + Send;
}

/// The agent's host: the real server, its fencer, pod labels and peers.
pub struct AgentHost<'a> {
    /// The agent's configuration.
    pub cfg: &'a AgentConfig,
    /// The local server.
    pub local: &'a mut LocalPg,
    /// The watchdog (and, through it, the fencer).
    pub watchdog: &'a Watchdog,
    /// The instant the machine's clock counts from.
    pub epoch: Instant,
}

impl AgentHost<'_> {
    fn stop_timeout(&self) -> Duration {
        self.cfg
            .ha
            .timings
            .stop_writes_timeout
            .max(Duration::from_secs(2))
    }
}

fn pg(action: &'static str) -> impl FnOnce(PgError) -> ExecError {
    move |source| ExecError::Pg {
        action,
        source: Box::new(source),
    }
}

impl Host for AgentHost<'_> {
    fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    fn armed_until(&self) -> Option<Millis> {
        let deadline = self.watchdog.deadline()?;
        Some(Millis(
            deadline.saturating_duration_since(self.epoch).as_millis() as u64,
        ))
    }

    fn has_postmaster(&self) -> bool {
        self.local.postmaster.is_some()
    }

    fn running_op(&self) -> Option<&Op> {
        self.local.background.as_ref().map(|b| &b.op)
    }

    fn start_op(&mut self, op: Op) -> Result<(), ExecError> {
        let config = self
            .local
            .managed_config(self.cfg)
            .map_err(pg("render the configuration"))?;
        let postmaster = self.local.postmaster.take();
        self.local.client = None;
        self.local.last_running = None;
        self.local.background = Some(Background::spawn(
            op,
            self.cfg,
            config,
            postmaster,
            self.local.wake.clone(),
        ));
        Ok(())
    }

    async fn abort_op(&mut self) {
        let Some(bg) = self.local.background.take() else {
            return;
        };
        tracing::warn!(op = ?bg.op.kind(), "aborting a running operation");
        bg.abort();
        if let Some(pid) = super::supervise::orphan_postmaster(self.cfg) {
            super::supervise::stop_orphan(pid).await;
        }
    }

    async fn stop(&mut self, mode: StopMode) -> Result<(), PgError> {
        let timeout = self.stop_timeout();
        self.local.stop(mode, timeout).await
    }

    fn standby_of(&self) -> Option<&MemberName> {
        self.local.standby_of.as_ref()
    }

    fn set_standby_of(&mut self, of: Option<MemberName>) {
        self.local.standby_of = of;
    }

    fn forget_data(&mut self) {
        self.local.system_id = None;
    }

    fn hold_last_seen(&mut self, seen: &PgObservation) {
        self.local.last_running = seen.running.then(|| seen.clone());
    }

    fn sync(&self) -> &SyncStandbys {
        &self.local.sync
    }

    fn set_sync(&mut self, sync: SyncStandbys) {
        self.local.sync = sync;
    }

    fn has_data(&self) -> bool {
        self.cfg
            .instance
            .layout
            .data_dir
            .join("PG_VERSION")
            .exists()
    }

    async fn reload(&mut self, why: Reload) -> Result<(), ExecError> {
        let cfg = self.cfg;
        let (write, connect, reload) = match why {
            Reload::Follow => (
                "write the standby configuration",
                "connect to reload the configuration",
                "reload the configuration",
            ),
            Reload::Sync { .. } => (
                "write synchronous_standby_names",
                "connect to reload synchronous_standby_names",
                "reload synchronous_standby_names",
            ),
        };
        self.local.write_config(cfg).map_err(pg(write))?;
        if self.local.postmaster.is_none() {
            return Ok(());
        }
        let client = self.local.client(cfg).await.map_err(pg(connect))?;
        postgres::reload(client).await.map_err(pg(reload))?;
        if why == (Reload::Sync { nudge: true }) {
            // Commits already waiting are released by the next standby
            // reply; make it come now rather than at the standby's next
            // status interval.
            let nudged = postgres::nudge_sync_standbys(client, Duration::from_millis(100))
                .await
                .map_err(pg("nudge the synchronous standbys"))?;
            tracing::debug!(nudged, "nudged the synchronous standbys");
        }
        Ok(())
    }

    fn arm(&mut self, deadline: Millis) {
        self.watchdog.set_pid(self.local.pid());
        self.watchdog
            .arm(self.epoch + Duration::from_millis(deadline.0));
    }

    fn track_postmaster(&mut self) {
        self.watchdog.set_pid(self.local.pid());
    }

    fn set_role_label(&mut self, member: &MemberName, role: RoleLabel) {
        match &self.cfg.role_labels {
            Some(labels) => labels.set(member, role),
            // Local mode has no pod labels: the router follows the lease.
            None => tracing::debug!(%member, ?role, "role label (no-op in local mode)"),
        }
    }

    async fn probe_peers(&mut self, probe: &FailsafeProbe) -> Vec<FailsafeReply> {
        super::client::probe_peers(self.cfg, probe).await
    }
}
