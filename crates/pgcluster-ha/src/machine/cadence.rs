//! When the next tick is due: every loop interval while anything is moving,
//! less often while the member is steady.
//!
//! A steady primary (holds the lease, its last renewal answered, nothing to
//! do but renew) ticks every idle interval: what is left of the renew
//! deadline after a renewal that hangs for the whole write timeout and one
//! more loop for the failsafe probes, between one and two loops (350 ms with
//! the default timings). So a coordinator that stops answering still leaves
//! the primary a loop to probe its peers before its fence's deadline. A
//! renewal not answered with a win is retried a loop later,
//! as before. A steady replica (follows a live lease holder) ticks at the
//! idle interval too, and at the exact moment the lease would expire by its
//! own observation, so a crashed primary is noticed no later than before
//! (at expiry instead of up to a loop interval after it).
//!
//! Heartbeats then change every idle interval instead of every loop, which
//! is why a member's staleness is counted from the idle interval. Everything else (a switchover request, a lease hand-over, a
//! finished operation) wakes the driver at once, as before.

use super::action::Action;
use super::observation::LeaseOutcome;
use super::state::{MachineState, Phase};
use super::step::lease_expired;
use super::units::Millis;

/// When the next tick is due, decided at a [`step`](super::step) and
/// settled once its actions ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// Milliseconds from the step to the next tick if the batch goes well.
    steady_in: u64,
    /// The loop interval, for a batch that did not go well.
    loop_interval: u64,
    /// Whether the batch renews the lease.
    renews: bool,
}

impl Cadence {
    /// Milliseconds from the step until the next tick, given the answer to
    /// the batch's lease write: a renewal not answered with a win is retried
    /// a loop interval later.
    pub fn after(&self, lease_outcome: Option<&LeaseOutcome>) -> u64 {
        if self.renews && !matches!(lease_outcome, Some(LeaseOutcome::Won(_))) {
            return self.loop_interval;
        }
        self.steady_in
    }
}

/// The cadence after a step at `now` (local time) that returned `actions`.
pub fn next_tick(s: &MachineState, now: Millis, actions: &[Action]) -> Cadence {
    let ms = &s.config.ms;
    let steady_in = if !actions.iter().all(routine) || !s.view_ok {
        ms.loop_interval
    } else {
        steady_in(s, now)
    };
    Cadence {
        steady_in,
        loop_interval: ms.loop_interval,
        renews: actions
            .iter()
            .any(|a| matches!(a, Action::RenewLease { .. })),
    }
}

fn steady_in(s: &MachineState, now: Millis) -> u64 {
    let ms = &s.config.ms;
    match s.phase {
        Phase::Primary
            if s.unconfirmed.is_none()
                && s.switchover.is_none()
                && s.held
                    .as_ref()
                    .is_some_and(|h| now.since(h.valid_from) <= ms.idle + ms.loop_interval) =>
        {
            ms.idle
        }
        Phase::Replica => match &s.last_lease {
            Some(lease)
                if lease
                    .record
                    .holder
                    .as_ref()
                    .is_some_and(|h| *h != s.config.me)
                    && !lease_expired(s, now, lease) =>
            {
                let until_expiry = s
                    .lease_seen
                    .map_or(ms.idle, |(_, seen)| seen.plus_ms(ms.lease).since(now));
                until_expiry.clamp(1, ms.idle)
            }
            _ => ms.loop_interval,
        },
        _ => ms.loop_interval,
    }
}

/// Actions a steady member takes every tick.
pub fn routine(a: &Action) -> bool {
    matches!(
        a,
        Action::RenewLease { .. }
            | Action::ArmWatchdog { .. }
            | Action::PublishState(_)
            | Action::SetRoleLabel { .. }
    )
}
