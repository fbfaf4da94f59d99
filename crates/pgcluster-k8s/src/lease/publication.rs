//! When a member's state is written to its pod's annotation: for the
//! controller's status and `pgcluster status`, not for the agents (they read
//! each other directly, see [`super::peers`]). A pure decision.
//!
//! - a change of anything but the heartbeat and the WAL positions (role,
//!   health, timeline, upstream, system identifier, sync eligibility) is
//!   written at once;
//! - changed positions at most every [`POSITIONS_EVERY`];
//! - nothing else: a steady member does not write at all.

use std::time::{Duration, Instant};

use pgcluster_ha::machine::{Lsn, MemberState, Millis};

/// How often moving WAL positions are written at most.
pub const POSITIONS_EVERY: Duration = Duration::from_secs(30);

/// The state without what changes every tick (heartbeat, clock) or with
/// every write to the database (positions): what readers act on.
pub fn material(s: &MemberState) -> MemberState {
    MemberState {
        heartbeat: 0,
        last_seen: Millis(0),
        received_lsn: Lsn(0),
        replayed_lsn: Lsn(0),
        flushed_lsn: Lsn(0),
        ..s.clone()
    }
}

fn positions(s: &MemberState) -> (Lsn, Lsn, Lsn) {
    (s.received_lsn, s.replayed_lsn, s.flushed_lsn)
}

/// Whether `state` must be written now, given the last write (`None`:
/// nothing written by this agent yet).
pub fn due(last: Option<&(MemberState, Instant)>, state: &MemberState, now: Instant) -> bool {
    let Some((written, at)) = last else {
        return true;
    };
    if material(written) != material(state) {
        return true;
    }
    positions(written) != positions(state) && now.duration_since(*at) >= POSITIONS_EVERY
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::testing::objects::member_state;
    use pgcluster_ha::machine::MemberRole;

    fn state(role: MemberRole, lsn: u64, heartbeat: u64) -> MemberState {
        MemberState {
            heartbeat,
            last_seen: Millis(heartbeat * 350),
            ..member_state("pg-1", role, lsn)
        }
    }

    /// The first state is written; heartbeats alone never; a role change at
    /// once; moved positions only 30 s after the last write.
    #[test]
    fn steady_members_do_not_write() {
        let t0 = Instant::now();
        let first = state(MemberRole::Replica, 100, 1);
        assert!(due(None, &first, t0));
        let last = (first, t0);
        let later = |secs| t0 + Duration::from_secs(secs);
        assert!(!due(
            Some(&last),
            &state(MemberRole::Replica, 100, 500),
            later(600)
        ));
        assert!(due(Some(&last), &state(MemberRole::Primary, 100, 2), t0));
        assert!(!due(
            Some(&last),
            &state(MemberRole::Replica, 200, 2),
            later(29)
        ));
        assert!(due(
            Some(&last),
            &state(MemberRole::Replica, 200, 90),
            t0 + POSITIONS_EVERY
        ));
        let mut unhealthy = state(MemberRole::Replica, 100, 3);
        unhealthy.healthy = false;
        assert!(due(Some(&last), &unhealthy, t0));
    }
}
