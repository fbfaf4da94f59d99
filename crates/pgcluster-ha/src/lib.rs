//! pgcluster-ha: the failover state machine and the agent driver around it.
//!
//! It owns the pure HA state machine ([`machine`]), the coordinator trait and
//! its memory implementation ([`coordinator`]), a deterministic simulator that
//! checks the machine's invariants under faults ([`sim`]), control of a real
//! PostgreSQL server (`postgres`) and the local-mode router (`local`). It must
//! never depend on a Kubernetes client: Kubernetes pieces reach it through
//! traits implemented in pgcluster-k8s.
//!
//! ```text
//! observe (postgres, coordinator, peers) --> Observation --> machine::step --> actions --> execute
//!        ^                                                                                  |
//!        +---------------------- results (CAS won/lost, failures) --------------------------+
//! ```
//!
//! # The algorithm
//!
//! One **leader lease** per cluster lives in the coordinator. Only its holder
//! may run a writable primary. The lease record ([`machine::LeaseRecord`])
//! also carries everything a safe failover needs, written atomically with the
//! leadership: the data lineage (timeline history), the holder's last WAL
//! position (for the lag limit) and, in sync mode, the standbys that hold
//! every acknowledged commit. Every loop interval each agent observes its
//! PostgreSQL, reads the coordinator and calls [`machine::step`], which is
//! pure: time is an argument, results of the previous batch arrive in the
//! next observation.
//!
//! * **Bootstrap** — no lease exists: members with an empty data directory
//!   compare-and-swap against version 0; exactly one wins and runs initdb.
//!   Members with data never bootstrap over it.
//! * **Steady state** — the holder renews (compare-and-swap on the version it
//!   last wrote) and re-arms a watchdog; replicas follow it. While nothing
//!   moves, members tick at an idle interval instead of every loop (350 ms
//!   with the defaults; [`machine::cadence`]): what the renew deadline leaves
//!   after a hanging write and a loop of failsafe probes. A replica also
//!   ticks at the instant the lease it watches would expire, and anything
//!   that is not routine (a failed renewal, a request, a role change) brings
//!   back the loop interval.
//! * **Failover** — a replica judges the lease expired when the version it
//!   reads has not changed for a full lease duration *by its own clock*
//!   (members never compare clocks). Eligible replicas (same system
//!   identifier; WAL on the lineage; async: within the lag limit of the last
//!   primary position; sync: a published synchronous standby) are ranked by
//!   one total order — healthy, received LSN, replayed LSN, name — and the
//!   first acquires the lease and promotes in one batch. The executor skips
//!   the promotion if the compare-and-swap is lost, so at most one member per
//!   term promotes. The new timeline number is assigned in the lease, so no
//!   two primaries ever write the same timeline.
//! * **Self-fencing** — a primary whose last confirmed renewal is older than
//!   `renewDeadline` stops writes at once (immediate stop, never a graceful
//!   one). The same deadline is fed to a separate fencer process, the
//!   postmaster's parent ([`fence`]), which stops the server when the
//!   deadline passes unfed (agent paused or wedged) and at once when the
//!   agent dies; a thread in the agent is the fast path while it lives.
//! * **Failsafe** — when the primary cannot reach the coordinator it asks
//!   every other member directly. A confirmation is a promise: the member
//!   will not take the lease until a full lease duration after answering. A
//!   confirmation round counts like a renewal sent when the probes were sent,
//!   so the primary keeps serving through a coordinator outage while all
//!   members answer, and fences as soon as one does not. A member that can
//!   read the coordinator refuses once the lease looks expired to it, so a
//!   primary cut off from the coordinator alone is replaced. Members that
//!   cannot reach the coordinator never promote.
//! * **Switchover** — the primary stops cleanly (its last WAL reaches the
//!   standbys), waits until the target flushed the final position, then
//!   hands the lease over; the target renews and promotes. Nothing
//!   acknowledged is lost, in either mode.
//! * **Re-join** — a member whose WAL is not on the lease's lineage rewinds
//!   from the primary (re-clones if rewind fails); one on it just follows.
//!   Data with another system identifier refuses to join.
//! * **Sync mode** — commits wait for *all* configured standbys. A standby is
//!   added to `synchronous_standby_names` first and published as promotable
//!   only once it flushed past the point where it was added; it is removed
//!   from the published set before the configuration. So every published
//!   standby holds every acknowledged commit. Without any healthy standby the
//!   primary blocks (`block`) or, with `fallbackToAsync`, first publishes an
//!   empty set (nobody may then be promoted automatically) and only then stops
//!   waiting.
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> Starting
//!     Starting --> Bootstrapping: no lease, empty data, CAS won
//!     Starting --> Replica: lease held by another
//!     Starting --> Refused: foreign system identifier
//!     Bootstrapping --> Primary: initdb done
//!     Replica --> Promoting: lease expired, ranked first, CAS won
//!     Replica --> Promoting: lease handed over to us
//!     Promoting --> Primary: promoted
//!     Primary --> Primary: renewed / all peers confirmed (failsafe)
//!     Primary --> Fenced: renew deadline passed
//!     Primary --> Fenced: lease lost
//!     Primary --> SwitchingOver: switchover request
//!     SwitchingOver --> Replica: lease handed over
//!     SwitchingOver --> Primary: target did not catch up
//!     Fenced --> Primary: lease still ours, renewed
//!     Fenced --> Replica: another holder (rewind if diverged)
//! ```
//!
//! # The safety argument
//!
//! *Two writable primaries never coexist.* A primary's lease is valid from
//! the moment it **sent** its last successful renewal, `t`. Every replica
//! first reads that version at or after the write, so by its own clock it
//! waits at least `leaseDuration` after `t` before it may take over, and its
//! take-over is a compare-and-swap on that exact version: any later renewal
//! makes it fail. The primary stops writes by `t + renewDeadline +
//! stopWritesTimeout` by its clock. Clocks may run apart by at most
//! `maxClockDrift` over a lease duration, so writes have stopped before any
//! take-over iff `renewDeadline + stopWritesTimeout + maxClockDrift <
//! leaseDuration` — the rule [`pgcluster_core::timing::FailoverTimings::check`]
//! enforces. The failsafe keeps the same shape: a round of probes sent at
//! `t` and confirmed by every member extends the deadline to `t +
//! renewDeadline`, and each confirming member waits `leaseDuration` after
//! answering (which is after `t`) before it may take the lease. A restarted
//! agent has forgotten its promises, but it has also forgotten when it first
//! saw the lease version: it waits a full lease duration from its restart,
//! which is later than any promise it made before.
//!
//! *No acknowledged write is lost in sync mode.* Commits wait for all
//! configured standbys; only published standbys may be promoted; a standby
//! is published only after it holds everything acknowledged before it was
//! configured, and unpublished before it is unconfigured. A promoted standby
//! therefore holds every acknowledged commit; the simulator checks this every
//! time any server becomes writable.
//!
//! # Timing and failover time
//!
//! | parameter | default | role |
//! |---|---|---|
//! | `leaseDuration` | 2 s | how long a silent holder keeps the role |
//! | `loopInterval` | 250 ms | observation and renewal period while anything moves (the idle interval is derived from it) |
//! | `renewDeadline` | 1200 ms | a primary fences this long after its last confirmed renewal |
//! | `stopWritesTimeout` | 500 ms | budget for fencing to take effect |
//! | `maxClockDrift` | 200 ms | clock divergence allowed over a lease |
//!
//! After a node crash, replicas saw the last renewal at most one idle
//! interval after it was written and wait `leaseDuration` from then, waking
//! at that instant: a new primary is writable within `leaseDuration` plus an
//! idle interval plus coordinator round trips and the promotion itself — under 3 s with the
//! defaults (the simulator measures 1.9–2.8 s over tens of thousands of
//! crashes). A coordinator stall of any length, with members reachable to
//! each other, demotes no one: the failsafe confirmations keep the primary's
//! deadline moving.
//!
//! # Testing
//!
//! `tests/transitions.rs` drives each transition through [`machine::step`];
//! `tests/simulation.rs` runs 10,000 random fault schedules through [`sim`]
//! (`PGCLUSTER_SIM_CASES` for more) and prints a replay command on failure:
//! `cargo run -p pgcluster-ha --example simulate -- --seed S --members 3 --faults ...`.

#![warn(missing_docs)]
pub mod agent;
pub mod coordinator;
pub mod fence;
pub mod local;
pub mod machine;
pub mod ops;
pub mod postgres;
pub mod sim;
#[cfg(feature = "testing")]
pub mod testing;
