//! The pure HA state machine: `step(state, now, observation) -> (state, actions)`.
//!
//! No clock, no I/O, no async: the driver observes, calls [`step`], executes
//! the returned [`Action`]s and feeds their results into the next
//! [`Observation`]. See the crate documentation for the algorithm and its
//! safety argument.

pub mod action;
pub mod cadence;
pub mod config;
pub mod election;
mod lsn;
pub mod observation;
mod primary;
mod replica;
pub mod state;
mod step;
pub mod units;
pub mod view;

pub use action::{Action, ActionKind, RoleLabel, StopMode};
pub use cadence::{Cadence, next_tick};
pub use config::{ConfigError, HaConfig};
pub use election::{Candidate, Ineligible};
pub use observation::{
    DataDir, FailsafeProbe, FailsafeReply, LeaseOutcome, Observation, PgObservation,
    ReplicaProgress, TickObservation,
};
pub use state::{MachineState, Phase};
pub use step::step;
pub use units::{Lsn, MemberName, Millis, ParseLsnError, SystemId, Timeline};
pub use view::{
    ClusterView, Lease, LeaseRecord, LeaseVersion, MemberRole, MemberState, SwitchoverRequest,
    SyncStandbys, TimelineEnd,
};
