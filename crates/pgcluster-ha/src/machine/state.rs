//! [`MachineState`]: what one member remembers between two steps.
//!
//! Everything here may be lost (agent restart): the machine then starts from
//! [`MachineState::new`], which is always safe because every timer it keeps
//! restarts from the restart time (a restarted member cannot take the lease
//! before a full lease duration after it first reads it).

use std::collections::BTreeMap;

use super::action::RoleLabel;
use super::config::HaConfig;
use super::units::{Lsn, MemberName, Millis};
use super::view::{Lease, LeaseRecord, LeaseVersion};

/// Coarse phase of a member, for status output and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Just started; has not decided anything yet.
    Starting,
    /// Won the first lease; initialising the cluster.
    Bootstrapping,
    /// Holds the lease and runs (or is becoming) the writable primary.
    Primary,
    /// Acquired the lease; promoting.
    Promoting,
    /// Following the primary.
    Replica,
    /// Stopped writes because it could not renew the lease.
    Fenced,
    /// Primary, stopped cleanly, waiting for the switchover target.
    SwitchingOver,
    /// Its data belongs to another cluster: refuses to join.
    Refused,
    /// Waiting (no lease holder to follow, coordinator unreachable, ...).
    Waiting,
}

/// The lease this member holds, confirmed by a won compare-and-swap.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HeldLease {
    /// The stored lease.
    pub lease: Lease,
    /// When the write that made it ours was *sent*, by our clock: the lease
    /// cannot have been renewed earlier than this.
    pub valid_from: Millis,
}

/// A lease write whose outcome the next tick reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingCas {
    /// When the batch containing it was produced (a lower bound of its send time).
    pub sent_at: Millis,
    /// What it writes.
    pub record: LeaseRecord,
}

impl PendingCas {
    /// The lease write last pushed to `out`, sent at `now`.
    pub(crate) fn of(out: &[super::action::Action], now: Millis) -> Option<Self> {
        out.iter().rev().find_map(|a| {
            a.lease_cas().map(|(_, record)| PendingCas {
                sent_at: now,
                record: record.clone(),
            })
        })
    }
}

/// A switchover this primary is carrying out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SwitchoverProgress {
    /// The request.
    pub id: u64,
    /// The chosen target.
    pub target: MemberName,
    /// When it started.
    pub started_at: Millis,
}

/// What one member's machine remembers between steps.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineState {
    pub(crate) config: HaConfig,
    pub(crate) phase: Phase,
    pub(crate) started_at: Millis,
    pub(crate) heartbeat: u64,
    /// The lease version last read and when we first saw it (our clock).
    pub(crate) lease_seen: Option<(LeaseVersion, Millis)>,
    /// The lease of the last successful read (for answering probes).
    pub(crate) last_lease: Option<Lease>,
    /// Whether the last tick read the coordinator.
    pub(crate) view_ok: bool,
    pub(crate) held: Option<HeldLease>,
    pub(crate) pending_cas: Option<PendingCas>,
    /// A lease write whose answer was lost: the next view that shows exactly
    /// this record proves it was written (after it was sent).
    pub(crate) unconfirmed: Option<PendingCas>,
    /// Failsafe promise: no lease acquisition before this.
    pub(crate) no_acquire_before: Millis,
    /// Failsafe: per peer, the send time of the latest probe it confirmed.
    pub(crate) failsafe_confirmed: BTreeMap<MemberName, Millis>,
    /// Per member: last heartbeat seen and when it changed (our clock,
    /// moved forward by the time we could not watch).
    pub(crate) members_seen: BTreeMap<MemberName, (u64, Millis)>,
    /// When we last read the coordinator.
    pub(crate) last_view_at: Option<Millis>,
    /// Sync mode: the WAL position when each listed standby was first seen in
    /// `synchronous_standby_names`.
    pub(crate) sync_added_at: BTreeMap<MemberName, Lsn>,
    pub(crate) switchover: Option<SwitchoverProgress>,
    pub(crate) label: Option<RoleLabel>,
    /// The previous holder, to relabel once we are primary.
    pub(crate) relabel_old: Option<MemberName>,
    /// Whether PostgreSQL ran as a writable primary at the last tick.
    pub(crate) was_primary: bool,
    /// When this member last sent failsafe probes (a member without peers
    /// confirms itself).
    pub(crate) last_probe_sent: Option<Millis>,
    /// Sync mode: until when a new primary keeps waiting for the standbys it
    /// was seeded with before falling back to async (`fallbackToAsync`).
    pub(crate) sync_grace_until: Millis,
    /// Why the last forced failover naming this member was not carried out.
    pub(crate) note: Option<String>,
}

impl MachineState {
    /// The state of a member whose agent starts at local time `now`.
    pub fn new(config: HaConfig, now: Millis) -> Self {
        Self {
            config,
            phase: Phase::Starting,
            started_at: now,
            heartbeat: 0,
            lease_seen: None,
            last_lease: None,
            view_ok: false,
            held: None,
            pending_cas: None,
            unconfirmed: None,
            no_acquire_before: now,
            failsafe_confirmed: BTreeMap::new(),
            members_seen: BTreeMap::new(),
            last_view_at: None,
            sync_added_at: BTreeMap::new(),
            switchover: None,
            label: None,
            relabel_old: None,
            was_primary: false,
            last_probe_sent: None,
            sync_grace_until: now,
            note: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HaConfig {
        &self.config
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the last forced failover naming this member was refused or is
    /// waiting (for status output); `None` when there is nothing to say.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The lease this member holds (confirmed by a won write), if any.
    pub fn held_lease(&self) -> Option<&Lease> {
        self.held.as_ref().map(|h| &h.lease)
    }

    /// The local time until which this member may run a writable primary:
    /// its last confirmed renewal (or full failsafe confirmation) plus the
    /// renew deadline. `None` when it holds no lease.
    pub fn write_deadline(&self) -> Option<Millis> {
        let held = self.held.as_ref()?;
        let from = held
            .valid_from
            .max(self.failsafe_from().unwrap_or(Millis(0)));
        Some(from.plus_ms(self.config.ms.renew_deadline))
    }

    /// The earliest local time at which this member may take the lease
    /// because of failsafe promises it gave.
    pub fn no_acquire_before(&self) -> Millis {
        self.no_acquire_before
    }

    /// Failsafe: the send time of the oldest probe round every peer confirmed.
    pub(crate) fn failsafe_from(&self) -> Option<Millis> {
        if self.config.members.len() == 1 {
            return self.last_probe_sent;
        }
        let mut min: Option<Millis> = None;
        for peer in self.config.peers() {
            let t = *self.failsafe_confirmed.get(peer)?;
            min = Some(min.map_or(t, |m: Millis| m.min(t)));
        }
        min
    }
}
