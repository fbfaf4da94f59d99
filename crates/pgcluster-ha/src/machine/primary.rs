//! The lease holder's side: bootstrap, leading (renewal, failsafe, promotion,
//! synchronous standbys, switchover) and reclaiming a lease found in our name.

use std::collections::BTreeSet;

use super::action::{Action, RoleLabel, StopMode};
use super::election::{Candidate, best};
use super::observation::{DataDir, FailsafeProbe, PgObservation, TickObservation};
use super::state::{MachineState, PendingCas, Phase, SwitchoverProgress};
use super::step::{fresh, next_term_record, seeded_sync, set_label, system_id};
use super::units::{Lsn, MemberName, Millis, Timeline};
use super::view::{ClusterView, Lease, LeaseRecord, LeaseVersion, MemberRole, SyncStandbys};

/// `synchronous_standby_names` for a primary that just took over: in sync
/// mode commits block until a standby caught up (it is then added).
fn initial_sync(s: &MachineState) -> SyncStandbys {
    if s.config.sync_mode() {
        SyncStandbys::AllOf(BTreeSet::new())
    } else {
        SyncStandbys::Off
    }
}

/// No lease was ever written: a member with an empty data directory races to
/// initialise the cluster; the compare-and-swap lets exactly one win.
pub(crate) fn bootstrap(
    s: &mut MachineState,
    now: Millis,
    t: &TickObservation,
    out: &mut Vec<Action>,
) {
    let pg = &t.postgres;
    if pg.is_primary() {
        // A primary without any lease must not take writes.
        out.push(Action::FenceWrites);
        s.phase = Phase::Fenced;
        return;
    }
    if pg.data != DataDir::Empty {
        // Data but no lease: the coordinator lost its state. Never guess.
        s.phase = Phase::Waiting;
        return;
    }
    let record = LeaseRecord {
        holder: Some(s.config.me.clone()),
        term: 1,
        renewed_at: now,
        duration_ms: s.config.ms.lease,
        system_identifier: None,
        timeline: Timeline(1),
        history: Vec::new(),
        max_timeline: Timeline(1),
        primary_lsn: Lsn(0),
        sync_standbys: BTreeSet::new(),
    };
    out.push(Action::AcquireLease {
        expected: LeaseVersion(0),
        record,
    });
    s.pending_cas = PendingCas::of(out, now);
    out.push(Action::ArmWatchdog {
        deadline: now.plus_ms(s.config.ms.renew_deadline),
    });
    out.push(Action::SetSyncStandbys(initial_sync(s)));
    out.push(Action::Bootstrap);
    s.phase = Phase::Bootstrapping;
}

/// The view names us as holder but we do not know since when (agent restart,
/// a hand-over to us, a write whose answer we missed): renew first, and act
/// as primary only in the same batch after the renewal wins.
pub(crate) fn reclaim(
    s: &mut MachineState,
    now: Millis,
    t: &TickObservation,
    lease: &Lease,
    out: &mut Vec<Action>,
) {
    let pg = &t.postgres;
    let l = &lease.record;
    let end = pg.end_lsn();
    enum Then {
        Bootstrap,
        Nothing,
        StartAsPrimary,
        Promote,
        Release,
    }
    let then = match pg.data {
        DataDir::Empty if l.system_identifier.is_none() => Then::Bootstrap,
        DataDir::Empty => Then::Release,
        DataDir::Initialized(_) if pg.is_primary() => {
            if pg.timeline == l.timeline {
                Then::Nothing
            } else {
                Then::Release
            }
        }
        DataDir::Initialized(_) if !l.on_lineage(pg.timeline, end) => Then::Release,
        DataDir::Initialized(_) if !pg.in_recovery && pg.timeline == l.timeline => {
            Then::StartAsPrimary
        }
        DataDir::Initialized(_) if pg.in_recovery && pg.timeline != l.timeline => Then::Promote,
        DataDir::Initialized(_) => Then::Release,
    };
    if matches!(then, Then::Release) {
        let mut record = l.clone();
        record.holder = None;
        record.renewed_at = now;
        out.push(Action::ReleaseLease {
            expected: lease.version,
            record,
        });
        s.pending_cas = PendingCas::of(out, now);
        s.phase = Phase::Waiting;
        return;
    }
    let mut record = l.clone();
    record.renewed_at = now;
    out.push(Action::RenewLease {
        expected: lease.version,
        record,
    });
    s.pending_cas = PendingCas::of(out, now);
    out.push(Action::ArmWatchdog {
        deadline: now.plus_ms(s.config.ms.renew_deadline),
    });
    match then {
        Then::Bootstrap => {
            out.push(Action::SetSyncStandbys(initial_sync(s)));
            out.push(Action::Bootstrap);
            s.phase = Phase::Bootstrapping;
        }
        Then::StartAsPrimary => {
            // A new agent configures nothing yet: start with the term's
            // standbys, never with synchronous commit off.
            out.push(Action::SetSyncStandbys(seeded_sync(s, l)));
            out.push(Action::StartAsPrimary);
            s.phase = Phase::Primary;
        }
        Then::Promote => {
            out.push(Action::SetSyncStandbys(seeded_sync(s, l)));
            s.sync_grace_until = now.plus_ms(s.config.ms.lease);
            out.push(Action::Promote {
                timeline: l.timeline,
            });
            s.phase = Phase::Promoting;
        }
        Then::Nothing | Then::Release => s.phase = Phase::Primary,
    }
}

/// We hold a valid lease: renew (or probe peers when the coordinator is
/// unreachable), keep PostgreSQL a writable primary, manage synchronous
/// standbys and carry out switchovers.
pub(crate) fn lead(s: &mut MachineState, now: Millis, t: &TickObservation, out: &mut Vec<Action>) {
    let pg = &t.postgres;
    let held = s
        .held
        .clone()
        .expect("lead() runs only with a held lease because write_deadline() was Some");
    let deadline = s
        .write_deadline()
        .expect("lead() runs only with a held lease because write_deadline() was Some");
    let record = &held.lease.record;

    let Some(view) = t.view.as_ref() else {
        // Coordinator unreachable: failsafe. Keep serving only while every
        // peer confirms directly; the confirmations extend write_deadline().
        out.push(Action::ProbePeers(FailsafeProbe {
            from: s.config.me.clone(),
            term: record.term,
            timeline: record.timeline,
            sent_at: now,
        }));
        s.last_probe_sent = Some(now);
        out.push(Action::ArmWatchdog { deadline });
        ensure_primary(s, pg, record, out);
        return;
    };

    // Switchover: may replace the renewal with a hand-over.
    if switchover(s, now, t, view, &held.lease, out) {
        return;
    }

    let (new_sync, sync_standbys) = plan_sync(s, now, pg, &record.sync_standbys);
    let mut next = record.clone();
    next.renewed_at = now;
    next.sync_standbys = sync_standbys;
    if pg.is_primary() && pg.timeline == record.timeline {
        next.primary_lsn = pg.flushed_lsn;
    }
    if next.system_identifier.is_none() {
        next.system_identifier = system_id(pg.data);
    }
    out.push(Action::RenewLease {
        expected: held.lease.version,
        record: next,
    });
    s.pending_cas = PendingCas::of(out, now);
    out.push(Action::ArmWatchdog {
        deadline: now.plus_ms(s.config.ms.renew_deadline),
    });
    if let Some(sync) = new_sync {
        out.push(Action::SetSyncStandbys(sync));
    }
    if s.switchover.is_none() {
        ensure_primary(s, pg, record, out);
    }
    // A request naming us that we already fulfil is done.
    if let Some(req) = &view.switchover
        && req.target.as_ref() == Some(&s.config.me)
        && pg.is_primary()
        && s.switchover.is_none()
    {
        out.push(Action::ClearSwitchover { id: req.id });
    }
}

/// Keeps PostgreSQL a writable primary on the lease's timeline.
fn ensure_primary(
    s: &mut MachineState,
    pg: &PgObservation,
    record: &LeaseRecord,
    out: &mut Vec<Action>,
) {
    if pg.is_primary() {
        s.phase = Phase::Primary;
        set_label(s, RoleLabel::Primary, out);
        if let Some(old) = s.relabel_old.take()
            && old != s.config.me
        {
            out.push(Action::SetRoleLabel {
                member: old,
                role: RoleLabel::Replica,
            });
        }
        return;
    }
    match pg.data {
        DataDir::Empty => {
            out.push(Action::SetSyncStandbys(initial_sync(s)));
            out.push(Action::Bootstrap);
            s.phase = Phase::Bootstrapping;
        }
        DataDir::Initialized(_) if pg.in_recovery => {
            if pg.timeline != record.timeline {
                out.push(Action::SetSyncStandbys(seeded_sync(s, record)));
                out.push(Action::Promote {
                    timeline: record.timeline,
                });
                s.phase = Phase::Promoting;
            }
        }
        DataDir::Initialized(_) => {
            if pg.timeline == record.timeline {
                // The configuration the server starts on protects commits
                // from the first one (the published standbys hold them all).
                out.push(Action::SetSyncStandbys(seeded_sync(s, record)));
                out.push(Action::StartAsPrimary);
                s.phase = Phase::Primary;
            }
        }
    }
}

/// Sync mode: the next `synchronous_standby_names` (if it must change) and the
/// set of standbys to publish in the lease.
///
/// Invariant kept: every member of the published set holds every
/// acknowledged commit. Commits wait for *all* configured standbys, a standby
/// is published only once it flushed past the position where it was added,
/// and one is removed from the configuration only after it was removed from
/// the published set. One change per tick, each confirmed before the next.
fn plan_sync(
    s: &mut MachineState,
    now: Millis,
    pg: &PgObservation,
    published: &BTreeSet<MemberName>,
) -> (Option<SyncStandbys>, BTreeSet<MemberName>) {
    let configured = pg.sync_standbys.names();
    s.sync_added_at.retain(|m, _| configured.contains(m));
    if !s.config.sync_mode() {
        let change = (pg.sync_standbys != SyncStandbys::Off).then_some(SyncStandbys::Off);
        return (change, BTreeSet::new());
    }
    if !pg.is_primary() {
        return (None, published.clone());
    }
    for m in &configured {
        s.sync_added_at.entry(m.clone()).or_insert(pg.flushed_lsn);
    }
    let healthy: Vec<(&MemberName, Lsn)> = pg
        .replicas
        .iter()
        .filter(|r| s.config.members.contains(&r.name) && r.name != s.config.me)
        .map(|r| (&r.name, r.flushed_lsn))
        .collect();
    let is_healthy = |m: &MemberName| healthy.iter().any(|(n, _)| *n == m);
    let flushed = |m: &MemberName| healthy.iter().find(|(n, _)| *n == m).map(|(_, l)| *l);

    // 1. A configured standby that caught up joins the published set.
    for m in configured.difference(published) {
        let added = s.sync_added_at.get(m).copied().unwrap_or(Lsn(u64::MAX));
        if flushed(m).is_some_and(|f| f >= added) {
            let mut next = published.clone();
            next.insert(m.clone());
            return (None, next);
        }
    }
    let live: BTreeSet<MemberName> = published
        .iter()
        .filter(|m| is_healthy(m))
        .cloned()
        .collect();
    if !live.is_empty() {
        // 2. Drop dead standbys from the published set, then from the config.
        if live.len() < published.len() {
            return (None, live);
        }
        if configured != *published {
            return (
                Some(SyncStandbys::AllOf(published.clone())),
                published.clone(),
            );
        }
        return (None, published.clone());
    }
    // 3. No live published standby.
    if configured
        .iter()
        .any(|m| !published.contains(m) && is_healthy(m))
    {
        return (None, published.clone()); // one is catching up
    }
    let candidates: Vec<Candidate> = healthy
        .iter()
        .map(|(n, l)| Candidate {
            name: (*n).clone(),
            healthy: true,
            received_lsn: *l,
            replayed_lsn: *l,
        })
        .collect();
    if let Some(b) = best(&candidates) {
        // Commits keep waiting for every published member too: a published
        // standby never misses an acknowledged commit, even a dead one.
        let mut next: BTreeSet<MemberName> = configured.union(published).cloned().collect();
        next.insert(b.name.clone());
        if published.is_empty() && !s.config.falls_back_to_async() {
            // Nobody published (a new primary whose only standby re-joins).
            // Configuring first and publishing after the catch-up would let
            // it acknowledge commits while the lease names nobody, and a
            // crash then leaves no member eligible for good. So wait (commits
            // block meanwhile) until it has flushed everything this primary
            // has, then publish and configure it in the same step.
            if b.received_lsn >= pg.flushed_lsn {
                return (Some(SyncStandbys::AllOf(next)), [b.name.clone()].into());
            }
            return (None, published.clone());
        }
        return (Some(SyncStandbys::AllOf(next)), published.clone());
    }
    if s.config.falls_back_to_async() {
        // A new primary gives the standbys it was seeded with (their agents
        // alive) a lease duration to come back before going unprotected.
        if now < s.sync_grace_until
            && configured
                .iter()
                .any(|m| *m != s.config.me && fresh(s, now, m))
        {
            return (None, published.clone());
        }
        if !published.is_empty() {
            return (None, BTreeSet::new());
        }
        if pg.sync_standbys != SyncStandbys::Off {
            return (Some(SyncStandbys::Off), BTreeSet::new());
        }
        return (None, BTreeSet::new());
    }
    if pg.sync_standbys == SyncStandbys::Off {
        return (
            Some(SyncStandbys::AllOf(published.clone())),
            published.clone(),
        );
    }
    (None, published.clone())
}

/// Carries out a pending switchover. Returns true when it wrote the lease
/// itself (hand-over) so no renewal is due this tick.
fn switchover(
    s: &mut MachineState,
    now: Millis,
    t: &TickObservation,
    view: &ClusterView,
    lease: &Lease,
    out: &mut Vec<Action>,
) -> bool {
    let pg = &t.postgres;
    let me = s.config.me.clone();
    if s.switchover.is_none() {
        let Some(req) = &view.switchover else {
            return false;
        };
        if req.target.as_ref() == Some(&me) {
            return false;
        }
        if !pg.is_primary() {
            return false;
        }
        // Only a standby streaming from us on our timeline can take over.
        let streaming: Vec<Candidate> = view
            .members
            .values()
            .filter(|m| {
                m.name != me
                    && fresh(s, now, &m.name)
                    && m.role == MemberRole::Replica
                    && m.healthy
                    && m.following.as_ref() == Some(&me)
                    && m.timeline == pg.timeline
                    && pg.replicas.iter().any(|r| r.name == m.name)
            })
            .map(super::election::candidate_of)
            .collect();
        let target = match &req.target {
            Some(t) => streaming
                .iter()
                .find(|c| c.name == *t)
                .map(|c| c.name.clone()),
            None => best(&streaming).map(|c| c.name.clone()),
        };
        let Some(target) = target else {
            out.push(Action::ClearSwitchover { id: req.id });
            return false;
        };
        s.switchover = Some(SwitchoverProgress {
            id: req.id,
            target,
            started_at: now,
        });
    }
    let progress = s
        .switchover
        .clone()
        .expect("switchover progress was set above because a request was accepted");
    s.phase = Phase::SwitchingOver;
    if now.since(progress.started_at) > s.config.ms.switchover_timeout
        || view.switchover.as_ref().is_none_or(|r| r.id != progress.id)
    {
        // Give up: the target did not catch up (or the request was withdrawn).
        s.switchover = None;
        out.push(Action::ClearSwitchover { id: progress.id });
        return false;
    }
    if pg.running {
        // Stop cleanly: sessions end, the last WAL reaches the standbys.
        out.push(Action::Demote {
            mode: StopMode::Fast,
        });
        set_label(s, RoleLabel::Replica, out);
        return false;
    }
    let final_lsn = pg.end_lsn();
    let caught_up = view.members.get(&progress.target).is_some_and(|m| {
        // Not `healthy`: it stopped streaming when we shut down.
        fresh(s, now, &m.name)
            && m.role == MemberRole::Replica
            && m.following.as_ref() == Some(&me)
            && m.timeline == pg.timeline
            && m.flushed_lsn >= final_lsn
    });
    if !caught_up {
        return false;
    }
    let mut record = next_term_record(
        s,
        now,
        &lease.record,
        progress.target.clone(),
        pg.timeline,
        final_lsn,
    );
    if s.config.sync_mode() && record.sync_standbys.is_empty() {
        // Stopped cleanly, we hold exactly what the target has: name us its
        // synchronous standby. The target then waits for us from its first
        // commit (no wait for a re-join to be observed, published and
        // configured, ~2 s with two instances), and if it dies before we are
        // back, we may be promoted instead of leaving no eligible member.
        record.sync_standbys.insert(me.clone());
    }
    out.push(Action::HandOverLease {
        to: progress.target.clone(),
        expected: lease.version,
        record,
    });
    s.pending_cas = PendingCas::of(out, now);
    // Giving the lease away is irrevocable from our side: even if we never
    // learn whether the write happened, we must not act on the old lease
    // again (found by the simulator: a lost answer to the hand-over let the
    // old primary restart as primary next to the new one). If the write did
    // not happen, the view still names us and `reclaim` renews first.
    s.held = None;
    s.failsafe_confirmed.clear();
    out.push(Action::ClearSwitchover { id: progress.id });
    true
}
