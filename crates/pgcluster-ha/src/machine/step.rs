//! [`step`]: the pure transition function, and the bookkeeping every tick does
//! before deciding (lease outcome, freshness, failsafe confirmations).

use std::collections::BTreeSet;

use super::action::{Action, RoleLabel, StopMode};
use super::observation::{
    DataDir, FailsafeProbe, FailsafeReply, LeaseOutcome, Observation, TickObservation,
};
use super::state::{HeldLease, MachineState, Phase};
use super::units::{Lsn, MemberName, Millis, SystemId};
use super::view::{ClusterView, Lease, LeaseRecord, MemberRole, MemberState, SyncStandbys};
use super::{primary, replica};

/// Advances one member's machine: pure, deterministic, no clock or I/O inside.
///
/// `now` is this member's monotonic clock. The returned actions are a batch
/// for the executor (see [`crate::machine::action`] for the contract).
pub fn step(
    mut state: MachineState,
    now: Millis,
    observation: Observation,
) -> (MachineState, Vec<Action>) {
    let mut out = Vec::new();
    match observation {
        Observation::FailsafeProbe(probe) => {
            let reply = answer_probe(&mut state, now, &probe);
            out.push(Action::AnswerProbe(reply));
        }
        Observation::FailsafeReplies(replies) => {
            absorb_failsafe_replies(&mut state, &replies);
            if let Some(deadline) = state.write_deadline()
                && now < deadline
            {
                out.push(Action::ArmWatchdog { deadline });
            }
        }
        Observation::Tick(tick) => on_tick(&mut state, now, &tick, &mut out),
    }
    (state, out)
}

/// The answer to a failsafe probe. Confirming is a promise: this member will
/// not take the lease before `now + lease_duration`.
fn answer_probe(s: &mut MachineState, now: Millis, probe: &FailsafeProbe) -> FailsafeReply {
    let me = s.config.me.clone();
    let lease_ok = match (&s.last_lease, s.view_ok) {
        // We can read the coordinator: confirm only the current, unexpired holder.
        (Some(l), true) => {
            l.record.holder.as_ref() == Some(&probe.from)
                && l.record.term == probe.term
                && !lease_expired(s, now, l)
        }
        (None, true) => false,
        // We cannot: confirm the last holder we knew (or any, after a restart).
        (Some(l), false) => {
            l.record.holder.as_ref() == Some(&probe.from) && l.record.term <= probe.term
        }
        (None, false) => true,
    };
    let confirmed = probe.from != me && s.held.is_none() && !s.was_primary && lease_ok;
    if confirmed {
        s.no_acquire_before = s.no_acquire_before.max(now.plus_ms(s.config.ms.lease));
    }
    FailsafeReply {
        from: me,
        to: probe.from.clone(),
        term: probe.term,
        probe_sent_at: probe.sent_at,
        confirmed,
        following: s.last_lease.as_ref().and_then(|l| l.record.holder.clone()),
    }
}

/// Whether, by our own observations, the lease's holder has stopped renewing:
/// its current version has been unchanged for a full lease duration since we
/// first saw it.
pub(crate) fn lease_expired(s: &MachineState, now: Millis, lease: &Lease) -> bool {
    if lease.record.holder.is_none() {
        return true;
    }
    match s.lease_seen {
        Some((v, seen)) if v == lease.version => now >= seen.plus_ms(s.config.ms.lease),
        _ => false,
    }
}

/// Whether this member may take an expired or released lease now (failsafe
/// promises and the automatic-failover switch).
pub(crate) fn may_acquire(s: &MachineState, now: Millis, lease: &Lease) -> bool {
    may_force(s, now, lease) && s.config.automatic_failover
}

/// Whether a forced failover may take the lease now: expired or released,
/// and no failsafe promise pending (the automatic-failover switch does not
/// apply: forcing is the manual way).
pub(crate) fn may_force(s: &MachineState, now: Millis, lease: &Lease) -> bool {
    lease_expired(s, now, lease) && now >= s.no_acquire_before
}

fn on_tick(s: &mut MachineState, now: Millis, t: &TickObservation, out: &mut Vec<Action>) {
    s.heartbeat += 1;
    absorb_lease_outcome(s, t.lease_outcome.as_ref());
    absorb_failsafe_replies(s, &t.failsafe_replies);
    if let Some(view) = &t.view {
        if absorb_view(s, now, view)
            && let Some(deadline) = s.write_deadline()
            && now < deadline
        {
            // The lost answer left the watchdog at the older deadline.
            out.push(Action::ArmWatchdog { deadline });
        }
    } else {
        s.view_ok = false;
    }
    let pg = &t.postgres;

    // A member whose data belongs to another cluster never joins.
    if let (DataDir::Initialized(mine), Some(lease)) = (pg.data, &s.last_lease)
        && lease.record.system_identifier.is_some_and(|c| c != mine)
    {
        s.phase = Phase::Refused;
        s.held = None;
        if pg.running {
            out.push(Action::Demote {
                mode: StopMode::Immediate,
            });
        }
        publish(s, now, t, out);
        s.was_primary = false;
        return;
    }

    match s.write_deadline() {
        Some(deadline) if now < deadline => primary::lead(s, now, t, out),
        Some(_) => {
            // Could not renew in time: stop writes at once, keep no claim.
            s.held = None;
            s.failsafe_confirmed.clear();
            s.switchover = None;
            s.phase = Phase::Fenced;
            if pg.running && !pg.in_recovery {
                out.push(Action::FenceWrites);
            }
            set_label(s, RoleLabel::Replica, out);
        }
        None => match t.view.as_ref() {
            None => replica::without_coordinator(s, t, out),
            Some(view) => match &view.lease {
                None => primary::bootstrap(s, now, t, out),
                Some(lease) if lease.record.holder.as_ref() == Some(&s.config.me) => {
                    primary::reclaim(s, now, t, lease, out)
                }
                Some(lease) => replica::follow_or_take_over(s, now, t, view, lease, out),
            },
        },
    }
    publish(s, now, t, out);
    s.was_primary = pg.is_primary();
}

fn absorb_lease_outcome(s: &mut MachineState, outcome: Option<&LeaseOutcome>) {
    let Some(pending) = s.pending_cas.take() else {
        return;
    };
    let Some(outcome) = outcome else {
        // The executor did not get to the write (an earlier action failed).
        return;
    };
    let me = &s.config.me;
    match outcome {
        LeaseOutcome::Won(lease) => {
            if lease.record.holder.as_ref() == Some(me) {
                hold(s, lease, pending.sent_at);
            } else {
                s.held = None;
            }
        }
        LeaseOutcome::Lost(current) => match (current, &mut s.held) {
            // Our own earlier write (whose answer we missed) moved the version.
            (Some(cur), Some(held))
                if cur.record.holder.as_ref() == Some(me)
                    && cur.record.term == held.lease.record.term =>
            {
                held.lease = cur.clone();
            }
            _ => s.held = None,
        },
        // Unknown: keep judging validity from the last confirmed write
        // until a view shows whether it was written.
        LeaseOutcome::Failed => s.unconfirmed = Some(pending),
    }
}

/// We hold `lease`, valid from `sent_at` (when the write that produced it was sent).
fn hold(s: &mut MachineState, lease: &Lease, sent_at: Millis) {
    let term_changed = s
        .held
        .as_ref()
        .is_none_or(|h| h.lease.record.term != lease.record.term);
    if term_changed {
        s.failsafe_confirmed.clear();
    }
    s.held = Some(HeldLease {
        lease: lease.clone(),
        valid_from: sent_at,
    });
}

fn absorb_failsafe_replies(s: &mut MachineState, replies: &[FailsafeReply]) {
    let Some(held) = &s.held else {
        return;
    };
    let term = held.lease.record.term;
    for r in replies {
        if r.to == s.config.me && r.term == term && r.confirmed {
            let e = s
                .failsafe_confirmed
                .entry(r.from.clone())
                .or_insert(r.probe_sent_at);
            *e = (*e).max(r.probe_sent_at);
        }
    }
}

/// Takes in a read of the coordinator; true when it confirmed a lease write
/// whose answer was lost.
fn absorb_view(s: &mut MachineState, now: Millis, view: &ClusterView) -> bool {
    s.view_ok = true;
    match (&view.lease, s.lease_seen) {
        (Some(l), Some((v, _))) if v == l.version => {}
        (Some(l), _) => s.lease_seen = Some((l.version, now)),
        (None, _) => s.lease_seen = None,
    }
    // A member is stale when its heartbeat stood still while we watched.
    // Time we could not watch (our loop stalled, the coordinator did not
    // answer) is no evidence against it: the same cause (a busy machine)
    // may have held it up, and judging it dead would, for example, take a
    // forced failover away from its live target.
    if let Some(prev) = s.last_view_at {
        let blind = now
            .since(prev)
            .saturating_sub(2 * s.config.ms.loop_interval);
        if blind > 0 {
            for (_, at) in s.members_seen.values_mut() {
                *at = at.plus_ms(blind).min(now);
            }
        }
    }
    s.last_view_at = Some(now);
    for (name, m) in &view.members {
        match s.members_seen.get_mut(name) {
            Some((hb, _)) if *hb == m.heartbeat => {}
            Some(entry) => *entry = (m.heartbeat, now),
            None => {
                s.members_seen.insert(name.clone(), (m.heartbeat, now));
            }
        }
    }
    s.last_lease = view.lease.clone();
    // Someone else wrote the lease: whatever we held is gone.
    if let Some(held) = &mut s.held {
        match &view.lease {
            Some(l)
                if l.record.holder.as_ref() == Some(&s.config.me)
                    && l.record.term == held.lease.record.term =>
            {
                if l.version > held.lease.version {
                    held.lease = l.clone();
                }
            }
            _ => {
                s.held = None;
                s.failsafe_confirmed.clear();
            }
        }
    }
    // A write whose answer was lost, seen exactly as written: it happened
    // after it was sent, which is all a won answer tells (a coordinator
    // timing out a request that did land must not fence a healthy primary).
    if let Some(unconfirmed) = s.unconfirmed.take()
        && let Some(l) = &view.lease
        && l.record == unconfirmed.record
        && l.record.holder.as_ref() == Some(&s.config.me)
    {
        hold(s, l, unconfirmed.sent_at);
        return true;
    }
    false
}

/// Whether we saw `name`'s heartbeat change recently.
pub(crate) fn fresh(s: &MachineState, now: Millis, name: &MemberName) -> bool {
    if *name == s.config.me {
        return true;
    }
    s.members_seen
        .get(name)
        .is_some_and(|(_, at)| now.since(*at) <= s.config.ms.stale_after)
}

/// This member's state as published.
pub(crate) fn own_state(s: &MachineState, now: Millis, t: &TickObservation) -> MemberState {
    let pg = &t.postgres;
    let role = if s.phase == Phase::Refused {
        MemberRole::Refused
    } else if !pg.running {
        MemberRole::Stopped
    } else if pg.in_recovery {
        MemberRole::Replica
    } else {
        MemberRole::Primary
    };
    let holder = s.last_lease.as_ref().and_then(|l| l.record.holder.clone());
    let streaming_from_holder = pg.in_recovery && pg.streaming && pg.upstream == holder;
    let healthy = pg.running && (!pg.in_recovery || pg.streaming);
    let end = pg.end_lsn();
    MemberState {
        name: s.config.me.clone(),
        role,
        healthy: healthy && role != MemberRole::Refused,
        timeline: pg.timeline,
        received_lsn: if pg.in_recovery { pg.received_lsn } else { end },
        replayed_lsn: if pg.in_recovery { pg.replayed_lsn } else { end },
        flushed_lsn: end,
        system_identifier: system_id(pg.data),
        following: if pg.in_recovery {
            pg.upstream.clone()
        } else {
            None
        },
        sync_eligible: streaming_from_holder,
        last_seen: now,
        heartbeat: s.heartbeat,
    }
}

/// The system identifier of a data directory.
pub(crate) fn system_id(data: DataDir) -> Option<SystemId> {
    match data {
        DataDir::Empty => None,
        DataDir::Initialized(id) => Some(id),
    }
}

fn publish(s: &MachineState, now: Millis, t: &TickObservation, out: &mut Vec<Action>) {
    if t.view.is_some() {
        out.push(Action::PublishState(own_state(s, now, t)));
    }
}

/// Emits a label change when the label differs from the last one set.
pub(crate) fn set_label(s: &mut MachineState, role: RoleLabel, out: &mut Vec<Action>) {
    if s.label != Some(role) {
        s.label = Some(role);
        out.push(Action::SetRoleLabel {
            member: s.config.me.clone(),
            role,
        });
    }
}

/// A record for a new term held by `holder`, forked from `(timeline, lsn)`.
pub(crate) fn next_term_record(
    s: &MachineState,
    now: Millis,
    current: &LeaseRecord,
    holder: MemberName,
    fork_timeline: super::units::Timeline,
    fork_lsn: Lsn,
) -> LeaseRecord {
    let timeline = super::units::Timeline(current.max_timeline.0 + 1);
    let sync_standbys = carried_sync_standbys(current, &holder);
    LeaseRecord {
        holder: Some(holder),
        term: current.term + 1,
        renewed_at: now,
        duration_ms: s.config.ms.lease,
        system_identifier: current.system_identifier,
        timeline,
        history: current.fork(fork_timeline, fork_lsn),
        max_timeline: timeline,
        primary_lsn: fork_lsn,
        sync_standbys,
    }
}

/// Sync mode: the standbys a new term starts with: the previous term's
/// (they hold every commit acknowledged so far) minus the new holder. The
/// new primary lists them in `synchronous_standby_names` before it accepts
/// a write, so they keep holding every acknowledged commit.
fn carried_sync_standbys(current: &LeaseRecord, holder: &MemberName) -> BTreeSet<MemberName> {
    let mut set = current.sync_standbys.clone();
    set.remove(holder);
    set
}

/// Sync mode: `synchronous_standby_names` for a member that is about to
/// promote under `record`: the term's standbys minus itself (as Patroni
/// does), so commits are protected as soon as one of them is back instead
/// of blocking on an empty set or running unprotected.
pub(crate) fn seeded_sync(s: &MachineState, record: &LeaseRecord) -> SyncStandbys {
    if s.config.sync_mode() {
        SyncStandbys::AllOf(carried_sync_standbys(record, &s.config.me))
    } else {
        SyncStandbys::Off
    }
}
