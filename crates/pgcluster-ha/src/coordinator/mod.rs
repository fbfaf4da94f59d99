//! The coordinator: where members share the leader lease, their states and
//! switchover requests.
//!
//! One trait, several stores: [`memory::MemoryCoordinator`] (tests and the
//! simulator), a file-based one for `pgcluster up` (several processes on one
//! machine) and the Kubernetes `coordination.k8s.io/v1` Lease in
//! pgcluster-k8s (resourceVersion for compare-and-swap).
//!
//! The methods return futures so network-backed stores fit naturally; a
//! store with blocking I/O wraps it (e.g. `spawn_blocking`). Losing a
//! compare-and-swap race (Kubernetes: HTTP 409) is an ordinary result,
//! [`CasOutcome::Lost`], never an error or a panic.

pub mod local;
pub mod memory;
pub mod watch;

use std::future::Future;
use std::time::Duration;

use crate::machine::{
    ClusterView, Lease, LeaseRecord, LeaseVersion, MemberState, SwitchoverRequest,
};

/// A boxed error from the underlying store.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of a lease compare-and-swap that reached the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The expected version matched; this is the lease as now stored.
    Won(Lease),
    /// Someone wrote first; the current lease (`None`: none exists).
    Lost(Option<Lease>),
}

/// A coordinator call that did not complete. Whether a write took effect is
/// unknown; the machine treats it as "maybe".
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The store could not be reached.
    #[error("failed to reach the coordinator")]
    Unavailable {
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The call did not finish in time.
    #[error("failed to finish the coordinator call within {timeout:?}")]
    Timeout {
        /// The time allowed.
        timeout: Duration,
    },
    /// A stored record could not be decoded.
    #[error("failed to decode the coordinator record {what}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decoding error.
        #[source]
        source: Option<BoxError>,
    },
    /// Another switchover request is still pending.
    #[error("failed to request a switchover: request {pending} is still pending")]
    SwitchoverPending {
        /// The pending request.
        pending: u64,
    },
}

impl CoordinatorError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            CoordinatorError::Unavailable { .. } => "unavailable",
            CoordinatorError::Timeout { .. } => "timeout",
            CoordinatorError::Corrupt { .. } => "corrupt",
            CoordinatorError::SwitchoverPending { .. } => "switchover_pending",
        }
    }
}

/// The shared store of one cluster.
///
/// Contract for implementors:
/// * `compare_and_swap_lease` writes `record` with version `expected + 1`
///   iff the stored version is `expected` (`LeaseVersion(0)`: no lease
///   exists), atomically with respect to every other writer.
/// * A read returns a state that existed at some instant during the call.
/// * Nothing here judges time: lease expiry is decided by members, each by
///   its own clock.
pub trait Coordinator: Send + Sync {
    /// Reads the lease, every member's published state and the pending switchover.
    fn read_view(&self) -> impl Future<Output = Result<ClusterView, CoordinatorError>> + Send;

    /// Compare-and-swap of the lease.
    fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> impl Future<Output = Result<CasOutcome, CoordinatorError>> + Send;

    /// Stores a member's state (last writer wins per member).
    fn publish_member(
        &self,
        state: MemberState,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    /// Records a switchover request; fails with
    /// [`CoordinatorError::SwitchoverPending`] while another is pending.
    fn request_switchover(
        &self,
        request: SwitchoverRequest,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    /// Removes the switchover request `id` (a no-op if another or none is pending).
    fn clear_switchover(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    /// How often an agent may re-read this store between its loops to act
    /// at once on a switchover request or a lease hand-over; `None` (the
    /// default) when reads are too costly for that (an API server).
    fn quick_poll(&self) -> Option<std::time::Duration> {
        None
    }

    /// A signal of changes of the lease or the switchover request (other
    /// than renewals) pushed by the store, which an agent follows instead of
    /// [`Coordinator::quick_poll`]; the value counts changes. `None` (the
    /// default) when the store cannot push them.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
