//! The fakes the real executor ([`crate::agent::execute::Executor`]) runs on
//! in the simulator: [`SimHost`] (a simulated server, its fence and the
//! member's clock) and [`SimCoord`] (the shared in-memory coordinator with
//! this member's coordinator faults). Neither ever waits: what takes time is
//! returned as latency ([`SimHost::latency`], [`SimCoord::latency`]) or
//! happens later as an event the world schedules from [`Effect`]s.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pg::SimPg;
use crate::agent::background::Op;
use crate::agent::execute::ExecError;
use crate::agent::host::{Host, Reload};
use crate::coordinator::memory::MemoryCoordinator;
use crate::coordinator::{CasOutcome, Coordinator, CoordinatorError};
use crate::machine::{
    ClusterView, FailsafeProbe, FailsafeReply, Lease, LeaseRecord, LeaseVersion, MemberName,
    MemberState, Millis, PgObservation, RoleLabel, SwitchoverRequest, SyncStandbys,
};
use crate::postgres::{PgError, StopMode};

/// What the agent configured its server with, and the operation it runs.
#[derive(Clone, Debug, Default)]
pub struct SimLocal {
    /// Whom `primary_conninfo` names.
    pub standby_of: Option<MemberName>,
    /// The `synchronous_standby_names` configured.
    pub sync: SyncStandbys,
    /// The background operation, with the configuration it started on.
    pub op: Option<RunningOp>,
    /// Numbers operations, so an aborted one's completion is ignored.
    pub op_seq: u64,
    /// The deadline the fencer is armed with.
    pub armed: Option<Millis>,
}

/// A background operation in flight.
#[derive(Clone, Debug)]
pub struct RunningOp {
    /// Which.
    pub op: Op,
    /// Its number ([`SimLocal::op_seq`] when it started).
    pub seq: u64,
    /// `primary_conninfo` in the configuration it started on.
    pub standby_of: Option<MemberName>,
}

/// What an action did that the world must carry out.
#[derive(Clone, Debug)]
pub enum Effect {
    /// An operation started; it completes after `after` ms.
    Started {
        /// Its number.
        seq: u64,
        /// Simulated duration.
        after: u64,
    },
    /// The server was stopped; it was writable before.
    Stopped {
        /// It was writable.
        was_writable: bool,
        /// Why (for the timeline).
        why: &'static str,
    },
    /// The fence was armed.
    Armed(Millis),
    /// Probes go out to every peer.
    Probe(FailsafeProbe),
    /// `synchronous_standby_names` took effect: waiting commits may be acknowledged.
    SyncChanged,
}

/// The executor's view of one simulated member.
pub struct SimHost<'a> {
    /// The member's clock now.
    pub now: Millis,
    /// The agent's configuration state.
    pub local: &'a mut SimLocal,
    /// The server.
    pub pg: &'a mut SimPg,
    /// Every member's name, by index.
    pub names: &'a [MemberName],
    /// What the world must do afterwards.
    pub effects: Vec<Effect>,
    /// How long the action took (simulated ms).
    pub latency: u64,
}

/// How long each background operation takes (simulated ms).
pub fn op_duration(op: &Op) -> u64 {
    match op {
        Op::Bootstrap => 100,
        Op::Start => 50,
        Op::Promote { .. } => 30,
        Op::Rewind { .. } | Op::Reclone { .. } => 150,
        Op::CleanStop { .. } => 50,
    }
}

impl SimHost<'_> {
    fn index(&self, name: &MemberName) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .expect("the machine only names configured members")
    }

    fn stop_server(&mut self, why: &'static str) {
        if self.pg.running {
            let was_writable = self.pg.writable();
            self.pg.stop();
            self.effects.push(Effect::Stopped { was_writable, why });
        }
    }
}

impl Host for SimHost<'_> {
    fn now(&self) -> Millis {
        self.now
    }

    fn armed_until(&self) -> Option<Millis> {
        self.local.armed
    }

    fn has_postmaster(&self) -> bool {
        // A running operation owns the postmaster (as in the agent).
        self.pg.running && self.local.op.is_none()
    }

    fn running_op(&self) -> Option<&Op> {
        self.local.op.as_ref().map(|r| &r.op)
    }

    fn start_op(&mut self, op: Op) -> Result<(), ExecError> {
        // A restart, rewind or re-clone stops the server first.
        if matches!(op, Op::Start | Op::Rewind { .. } | Op::Reclone { .. }) {
            self.stop_server("restarting");
        }
        self.local.op_seq += 1;
        let seq = self.local.op_seq;
        let after = op_duration(&op);
        self.local.op = Some(RunningOp {
            op,
            seq,
            standby_of: self.local.standby_of.clone(),
        });
        self.effects.push(Effect::Started { seq, after });
        Ok(())
    }

    async fn abort_op(&mut self) {
        if let Some(running) = self.local.op.take() {
            // The agent stops whatever postmaster the operation left.
            if !matches!(running.op, Op::Rewind { .. } | Op::Reclone { .. }) {
                self.stop_server("aborted operation");
            }
        }
    }

    async fn stop(&mut self, _mode: StopMode) -> Result<(), PgError> {
        self.latency += 5;
        self.stop_server("immediate stop");
        Ok(())
    }

    fn standby_of(&self) -> Option<&MemberName> {
        self.local.standby_of.as_ref()
    }

    fn set_standby_of(&mut self, of: Option<MemberName>) {
        self.local.standby_of = of;
    }

    fn forget_data(&mut self) {}

    fn hold_last_seen(&mut self, _seen: &PgObservation) {
        // The simulated server runs until the clean stop completes, so it
        // is observed as it is.
    }

    fn sync(&self) -> &SyncStandbys {
        &self.local.sync
    }

    fn set_sync(&mut self, sync: SyncStandbys) {
        self.local.sync = sync;
    }

    fn has_data(&self) -> bool {
        self.pg.data.is_some()
    }

    async fn reload(&mut self, why: Reload) -> Result<(), ExecError> {
        if !self.pg.running {
            return Ok(());
        }
        match why {
            Reload::Follow => {
                let of = self.local.standby_of.clone();
                self.pg.upstream = of.map(|o| self.index(&o));
                self.pg.streaming = false;
            }
            Reload::Sync { .. } => {
                self.pg.sync = self.local.sync.clone();
                self.effects.push(Effect::SyncChanged);
            }
        }
        Ok(())
    }

    fn arm(&mut self, deadline: Millis) {
        self.local.armed = Some(deadline);
        self.effects.push(Effect::Armed(deadline));
    }

    fn track_postmaster(&mut self) {}

    fn set_role_label(&mut self, _member: &MemberName, _role: RoleLabel) {}

    async fn probe_peers(&mut self, probe: &FailsafeProbe) -> Vec<FailsafeReply> {
        // Replies arrive later as events, into the next tick.
        self.effects.push(Effect::Probe(probe.clone()));
        Vec::new()
    }
}

/// How this member's coordinator behaves for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordFault {
    /// Answers after `delay` ms.
    None,
    /// Unreachable: fails after the timeout.
    Down,
    /// The write takes effect but its answer is lost (a timeout).
    AnswerLost,
}

/// A lease the coordinator stored during a call: before and after.
#[derive(Clone, Debug)]
pub struct LeaseWrite {
    /// The lease before.
    pub before: Option<Lease>,
    /// The lease stored.
    pub after: Lease,
}

/// The shared coordinator as one member reaches it.
pub struct SimCoord<'a> {
    /// The store.
    pub store: &'a MemoryCoordinator,
    /// This call's fault.
    pub fault: CoordFault,
    /// The answer's delay when it arrives.
    pub delay: u64,
    /// The timeout a call that gets no answer takes.
    pub timeout: u64,
    latency: AtomicU64,
    /// Leases written.
    pub writes: Mutex<Vec<LeaseWrite>>,
}

impl<'a> SimCoord<'a> {
    /// One call's view of `store`.
    pub fn new(store: &'a MemoryCoordinator, fault: CoordFault, delay: u64, timeout: u64) -> Self {
        Self {
            store,
            fault,
            delay,
            timeout,
            latency: AtomicU64::new(0),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// How long the calls took.
    pub fn latency(&self) -> u64 {
        self.latency.load(Ordering::Relaxed)
    }

    /// Runs a write unless the store is unreachable; the answer unless lost.
    fn write<T>(&self, f: impl FnOnce() -> T) -> Result<T, CoordinatorError> {
        match self.fault {
            CoordFault::Down => {
                self.latency.fetch_add(self.timeout, Ordering::Relaxed);
                Err(CoordinatorError::Unavailable { source: None })
            }
            CoordFault::AnswerLost => {
                f();
                self.latency.fetch_add(self.timeout, Ordering::Relaxed);
                Err(CoordinatorError::Timeout {
                    timeout: std::time::Duration::from_millis(self.timeout),
                })
            }
            CoordFault::None => {
                self.latency.fetch_add(self.delay, Ordering::Relaxed);
                Ok(f())
            }
        }
    }
}

impl Coordinator for SimCoord<'_> {
    async fn read_view(&self) -> Result<ClusterView, CoordinatorError> {
        self.write(|| self.store.view())
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        self.write(|| {
            let before = self.store.lease();
            let outcome = self.store.cas_lease(expected, record);
            if let CasOutcome::Won(after) = &outcome {
                self.writes
                    .lock()
                    .expect("never poisoned: nothing panics while holding it")
                    .push(LeaseWrite {
                        before,
                        after: after.clone(),
                    });
            }
            outcome
        })
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        self.write(|| self.store.publish(state))
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.write(|| self.store.request(request))?
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.write(|| self.store.clear(id))
    }
}
