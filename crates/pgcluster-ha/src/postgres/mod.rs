//! Control of a real PostgreSQL server on this machine: finding the
//! binaries, the unprivileged OS user, initdb, the configuration pgcluster
//! manages, the supervised postmaster, observation, promotion, demotion,
//! fencing, base backups, pg_rewind, re-clone and replication slots.
//!
//! Each function does one thing and returns a [`PgError`] naming what failed
//! and what to do; deciding *when* to call them is the state machine's job.
//!
//! ```text
//! PgBinaries + OsUser + Layout --> Instance --initdb/basebackup--> data dir
//!     --write_config--> pgcluster.conf, pg_hba.conf, standby.signal
//!     --start--> Postmaster (pid, log) --stop/fence/demote-->
//! Instance::connect --> observe() --> ServerState (plain data for the machine)
//! ```

pub mod admin;
mod binaries;
mod command;
mod config;
mod control;
mod datadir;
mod error;
mod instance;
mod observe;
mod os_user;
mod process;
mod replication;
pub mod scram;

pub use crate::machine::{Lsn, ParseLsnError};
pub use binaries::PgBinaries;
pub use config::{
    AuthMethod, HbaRule, MANAGED_FILE, ManagedConfig, StandbySettings, local_mode_hba, render_hba,
};
pub use control::{
    SlotState, checkpoint, create_physical_slot, drop_physical_slot, list_physical_slots,
    nudge_sync_standbys, promote, reload, slot_name_for,
};
pub use datadir::{DataDirState, parse_system_identifier};
pub use error::{PgError, StartLog};
pub(crate) use instance::escape_pgpass;
pub use instance::{Instance, Layout, ServerLog, Superuser, Upstream};
pub use observe::{
    ConnectionUsage, OBSERVE_SQL, ServerState, StandbyState, observe, observe_prepared,
    prepare_observation, timeline_of_walfile,
};
pub use os_user::{DEFAULT_CREATED_USER, OsUser};
pub use process::{Postmaster, StopMode, ensure_port_free};
pub use replication::SlotMode;
