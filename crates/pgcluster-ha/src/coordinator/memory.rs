//! [`MemoryCoordinator`]: the coordinator in process memory, for tests and
//! the simulator. Its synchronous methods are the store's semantics; the
//! [`Coordinator`] impl wraps them.

use std::sync::Mutex;

use super::{CasOutcome, Coordinator, CoordinatorError};
use crate::machine::{
    ClusterView, Lease, LeaseRecord, LeaseVersion, MemberState, SwitchoverRequest,
};

/// An in-memory coordinator shared by reference (wrap it in an `Arc` to
/// share it between tasks).
#[derive(Debug, Default)]
pub struct MemoryCoordinator {
    view: Mutex<ClusterView>,
}

impl MemoryCoordinator {
    /// An empty store: no lease, no members, no request.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `view` (the file coordinator applies the same
    /// semantics to the view it loaded).
    pub fn from_view(view: ClusterView) -> Self {
        Self {
            view: Mutex::new(view),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClusterView> {
        // A panic while holding the lock cannot leave the view half-written
        // (every method writes whole fields), so a poisoned lock is still usable.
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the whole view.
    pub fn view(&self) -> ClusterView {
        self.lock().clone()
    }

    /// Whether a switchover request is pending.
    pub fn switchover_pending(&self) -> bool {
        self.lock().switchover.is_some()
    }

    /// The current lease.
    pub fn lease(&self) -> Option<Lease> {
        self.lock().lease.clone()
    }

    /// Compare-and-swap of the lease (see [`Coordinator::compare_and_swap_lease`]).
    pub fn cas_lease(&self, expected: LeaseVersion, record: LeaseRecord) -> CasOutcome {
        let mut view = self.lock();
        let current = view.lease.as_ref().map_or(LeaseVersion(0), |l| l.version);
        if current != expected {
            return CasOutcome::Lost(view.lease.clone());
        }
        let lease = Lease {
            version: LeaseVersion(expected.0 + 1),
            record,
        };
        view.lease = Some(lease.clone());
        CasOutcome::Won(lease)
    }

    /// Stores a member's state.
    pub fn publish(&self, state: MemberState) {
        self.lock().members.insert(state.name.clone(), state);
    }

    /// Records a switchover request unless one is pending.
    pub fn request(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        let mut view = self.lock();
        if let Some(p) = &view.switchover {
            return Err(CoordinatorError::SwitchoverPending { pending: p.id });
        }
        view.switchover = Some(request);
        Ok(())
    }

    /// Removes request `id` if it is the pending one.
    pub fn clear(&self, id: u64) {
        let mut view = self.lock();
        if view.switchover.as_ref().is_some_and(|r| r.id == id) {
            view.switchover = None;
        }
    }
}

impl Coordinator for MemoryCoordinator {
    async fn read_view(&self) -> Result<ClusterView, CoordinatorError> {
        Ok(self.view())
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        Ok(self.cas_lease(expected, record))
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        self.publish(state);
        Ok(())
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.request(request)
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.clear(id);
        Ok(())
    }
}
