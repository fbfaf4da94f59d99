//! The non-holder's side: follow the holder (rewinding or re-cloning when the
//! data diverged), take over an expired lease when this member ranks first
//! (or a forced failover names it), and never promote without the coordinator.

use super::action::{Action, ActionKind, RoleLabel, StopMode};
use super::election::{Candidate, Ineligible, best, candidate_of, eligibility, forced_eligibility};
use super::observation::{DataDir, TickObservation};
use super::state::{MachineState, PendingCas, Phase};
use super::step::{
    fresh, may_acquire, may_force, next_term_record, own_state, seeded_sync, set_label,
};
use super::units::{MemberName, Millis};
use super::view::{ClusterView, Lease, MemberRole};

/// The coordinator is unreachable and we hold no lease: never promote; stop
/// writes if PostgreSQL somehow is a primary; keep following the last holder.
pub(crate) fn without_coordinator(
    s: &mut MachineState,
    t: &TickObservation,
    out: &mut Vec<Action>,
) {
    let pg = &t.postgres;
    s.switchover = None;
    if pg.is_primary() {
        out.push(Action::FenceWrites);
        s.phase = Phase::Fenced;
        set_label(s, RoleLabel::Replica, out);
        return;
    }
    s.phase = if pg.running && pg.in_recovery {
        Phase::Replica
    } else {
        Phase::Waiting
    };
}

/// Someone else holds (or held) the lease.
pub(crate) fn follow_or_take_over(
    s: &mut MachineState,
    now: Millis,
    t: &TickObservation,
    view: &ClusterView,
    lease: &Lease,
    out: &mut Vec<Action>,
) {
    let pg = &t.postgres;
    s.switchover = None;
    if pg.is_primary() {
        // Someone else's lease: stop writes now, then come back as a replica.
        out.push(Action::FenceWrites);
        out.push(Action::Demote {
            mode: StopMode::Immediate,
        });
        s.phase = Phase::Fenced;
        set_label(s, RoleLabel::Replica, out);
        return;
    }
    if may_force(s, now, lease)
        && let Some(req) = view
            .switchover
            .as_ref()
            .filter(|r| r.forced_target() == Some(&s.config.me))
    {
        match forced_ready(s, now, t, lease) {
            Ok(()) => {
                s.note = None;
                take_over(s, now, t, lease, out);
                return;
            }
            Err(why) => {
                let verdict = if why.transient() {
                    "waiting"
                } else {
                    // Nothing will change that: clear the request so the
                    // requester learns at once, and fail over normally.
                    out.push(Action::ClearSwitchover { id: req.id });
                    "refused"
                };
                s.note = Some(format!(
                    "forced failover {} to {} {verdict}: {}",
                    req.id,
                    s.config.me,
                    why.reason()
                ));
            }
        }
    }
    if may_acquire(s, now, lease) && i_rank_first(s, now, t, view, lease) {
        take_over(s, now, t, lease, out);
        return;
    }
    let Some(holder) = lease.record.holder.clone() else {
        s.phase = Phase::Waiting;
        return;
    };
    follow(s, now, t, view, lease, &holder, out);
}

/// Whether this member is eligible and ranks first among the eligible
/// members it sees.
fn i_rank_first(
    s: &MachineState,
    now: Millis,
    t: &TickObservation,
    view: &ClusterView,
    lease: &Lease,
) -> bool {
    let me = own_state(s, now, t);
    if eligibility(&s.config, &lease.record, &me, true).is_err() || !t.postgres.in_recovery {
        return false;
    }
    // A forced failover names someone else who can carry it out: leave the
    // lease to them (a stale or ineligible target does not block failover).
    if let Some(target) = view.switchover.as_ref().and_then(|r| r.forced_target())
        && *target != s.config.me
        && view.members.get(target).is_some_and(|m| {
            m.role == MemberRole::Replica
                && forced_eligibility(&s.config, &lease.record, m, fresh(s, now, target)).is_ok()
        })
    {
        return false;
    }
    let mut candidates: Vec<Candidate> = vec![candidate_of(&me)];
    for m in view.members.values() {
        if m.name == s.config.me || Some(&m.name) == lease.record.holder.as_ref() {
            continue;
        }
        if eligibility(&s.config, &lease.record, m, fresh(s, now, &m.name)).is_ok() {
            candidates.push(candidate_of(m));
        }
    }
    best(&candidates).is_some_and(|c| c.name == s.config.me)
}

/// Whether this member may carry out a forced failover naming it: running
/// as a standby of the cluster's data and lineage (and in sync mode a
/// synchronous standby); the lag limit does not apply.
fn forced_ready(
    s: &MachineState,
    now: Millis,
    t: &TickObservation,
    lease: &Lease,
) -> Result<(), Ineligible> {
    let me = own_state(s, now, t);
    forced_eligibility(&s.config, &lease.record, &me, true)?;
    if !t.postgres.running || !t.postgres.in_recovery {
        return Err(Ineligible::NotReplica);
    }
    Ok(())
}

/// Acquire the lease for a new term and promote in the same batch (the
/// executor skips the promotion if the compare-and-swap is lost).
fn take_over(
    s: &mut MachineState,
    now: Millis,
    t: &TickObservation,
    lease: &Lease,
    out: &mut Vec<Action>,
) {
    let pg = &t.postgres;
    let record = next_term_record(
        s,
        now,
        &lease.record,
        s.config.me.clone(),
        pg.timeline,
        pg.end_lsn(),
    );
    let timeline = record.timeline;
    let sync = s.config.sync_mode().then(|| seeded_sync(s, &record));
    s.relabel_old = lease.record.holder.clone();
    out.push(Action::AcquireLease {
        expected: lease.version,
        record,
    });
    s.pending_cas = PendingCas::of(out, now);
    out.push(Action::ArmWatchdog {
        deadline: now.plus_ms(s.config.ms.renew_deadline),
    });
    if let Some(sync) = sync {
        out.push(Action::SetSyncStandbys(sync));
        s.sync_grace_until = now.plus_ms(s.config.ms.lease);
    }
    out.push(Action::Promote { timeline });
    s.phase = Phase::Promoting;
}

/// Follow `holder`: clone, rewind or (re)start as its standby as needed.
fn follow(
    s: &mut MachineState,
    now: Millis,
    t: &TickObservation,
    view: &ClusterView,
    lease: &Lease,
    holder: &MemberName,
    out: &mut Vec<Action>,
) {
    let pg = &t.postgres;
    let holder_serving = view
        .members
        .get(holder)
        .is_some_and(|m| fresh(s, now, holder) && m.role == MemberRole::Primary && m.healthy)
        && lease.record.system_identifier.is_some();
    set_label(s, RoleLabel::Replica, out);
    match pg.data {
        DataDir::Empty => {
            if holder_serving {
                out.push(Action::Reclone {
                    from: holder.clone(),
                });
                s.phase = Phase::Starting;
            } else {
                s.phase = Phase::Waiting;
            }
        }
        DataDir::Initialized(_) => {
            if !lease.record.on_lineage(pg.timeline, pg.end_lsn()) {
                if holder_serving {
                    if t.failed_action == Some(ActionKind::Rewind) {
                        out.push(Action::Reclone {
                            from: holder.clone(),
                        });
                    } else {
                        out.push(Action::Rewind {
                            from: holder.clone(),
                        });
                    }
                }
                s.phase = Phase::Starting;
                return;
            }
            if !pg.running || !pg.in_recovery || pg.upstream.as_ref() != Some(holder) {
                out.push(Action::StartAsReplica { of: holder.clone() });
                s.phase = Phase::Starting;
            } else {
                s.phase = Phase::Replica;
            }
        }
    }
}
