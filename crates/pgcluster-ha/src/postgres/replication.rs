//! Building and repairing replicas: base backup with a slot, demotion,
//! pg_rewind and re-clone. Data is never deleted before its replacement
//! exists.

use std::path::PathBuf;
use std::time::Duration;

use super::command::run_checked;
use super::config::{HbaRule, ManagedConfig};
use super::error::PgError;
use super::instance::{Instance, Upstream};
use super::process::{Postmaster, StopMode};

/// Which replication slot a base backup uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotMode {
    /// No slot (WAL may be recycled before the replica catches up).
    None,
    /// Create this slot on the source as part of the backup (`-C -S`).
    Create(String),
    /// Use this existing slot (`-S`).
    Existing(String),
}

impl Instance {
    /// Clones `source` into our (empty or missing) data directory with
    /// `pg_basebackup`, streaming WAL and through `slot`. Configuration is
    /// not written: call [`Instance::write_config`] with standby settings next.
    pub async fn basebackup(&self, source: &Upstream, slot: &SlotMode) -> Result<(), PgError> {
        let data = &self.layout.data_dir;
        // pg_basebackup creates the data directory; its parent is created
        // only when missing. An existing parent is left as it is: in a pod
        // it is the volume's mount point, owned by root (a local-path or
        // hostPath volume, mode 0777) or by the fsGroup (mode 2775), and
        // chmod by a non-owner fails with EPERM.
        if let Some(parent) = data.parent() {
            let exists = parent
                .try_exists()
                .map_err(|e| PgError::io("inspect", parent, e))?;
            if !exists {
                self.os_user.create_dir(parent, 0o700)?;
            }
        }
        let mut cmd = self.tool("pg_basebackup");
        cmd.arg("--pgdata")
            .arg(data)
            .arg("--dbname")
            .arg(self.conninfo(source))
            .args(["--wal-method=stream", "--checkpoint=fast", "--no-password"]);
        match slot {
            SlotMode::None => {}
            SlotMode::Create(name) => {
                cmd.args(["--create-slot", "--slot", name]);
            }
            SlotMode::Existing(name) => {
                cmd.args(["--slot", name]);
            }
        }
        run_checked(
            cmd,
            "check that the source is reachable, allows replication from here and has a free WAL sender",
        )
        .await
        .map(|_| ())
    }

    /// Rewinds our (stopped) data directory to follow `source` after a
    /// timeline fork. A `CHECKPOINT` on the source comes first: right after
    /// a promotion its control file still names the old timeline and
    /// pg_rewind would wrongly find "no rewind required". Configuration is
    /// rewritten afterwards because pg_rewind copies the source's files.
    pub async fn rewind(
        &self,
        source: &Upstream,
        config: &ManagedConfig,
        hba: &[HbaRule],
    ) -> Result<(), PgError> {
        let client = self.connect_upstream(source).await?;
        super::control::checkpoint(&client).await?;
        drop(client);
        let mut cmd = self.tool("pg_rewind");
        cmd.arg("--target-pgdata")
            .arg(&self.layout.data_dir)
            .arg("--source-server")
            .arg(self.conninfo(source));
        run_checked(
            cmd,
            "rewind is impossible here (missing WAL or hints); re-clone this member instead",
        )
        .await?;
        self.write_config(config, hba)
    }

    /// Replaces our data directory with a fresh base backup of `source`: the
    /// old directory is moved aside first, restored if the backup fails, and
    /// removed only after the new copy is complete and configured.
    pub async fn reclone(
        &self,
        source: &Upstream,
        slot: &SlotMode,
        config: &ManagedConfig,
        hba: &[HbaRule],
    ) -> Result<(), PgError> {
        let data = &self.layout.data_dir;
        let aside = aside_path(data);
        std::fs::rename(data, &aside).map_err(|e| PgError::io("move aside", data, e))?;
        let fresh = async {
            self.basebackup(source, slot).await?;
            self.write_config(config, hba)
        }
        .await;
        match fresh {
            Ok(()) => {
                std::fs::remove_dir_all(&aside)
                    .map_err(|e| PgError::io("remove the old copy", &aside, e))?;
                Ok(())
            }
            Err(err) => {
                if data.exists() {
                    let _ = std::fs::remove_dir_all(data);
                }
                std::fs::rename(&aside, data)
                    .map_err(|e| PgError::io("restore the old copy", &aside, e))?;
                Err(err)
            }
        }
    }

    /// Demotes a running primary: fast stop, rewrite config with standby
    /// settings (standby.signal, primary_conninfo, slot), start again.
    pub async fn demote(
        &self,
        postmaster: Postmaster,
        config: &ManagedConfig,
        hba: &[HbaRule],
        timeout: Duration,
    ) -> Result<Postmaster, PgError> {
        debug_assert!(config.standby.is_some(), "demote needs standby settings");
        postmaster.stop(StopMode::Fast, timeout).await?;
        self.write_config(config, hba)?;
        self.start(timeout).await
    }
}

/// `<data>.old` (or `.old.N` if taken): where a data directory is parked
/// during a re-clone.
fn aside_path(data: &std::path::Path) -> PathBuf {
    let base = data.with_extension("old");
    (1..100)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                data.with_extension(format!("old.{n}"))
            }
        })
        .find(|p| !p.exists())
        .unwrap_or(base)
}
