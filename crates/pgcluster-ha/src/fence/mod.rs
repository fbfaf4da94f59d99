//! The fence that outlives the agent: a tiny separate process per server
//! (the *fencer*, `pgcluster fence`) that is the postmaster's parent, is fed
//! the lease deadline by the agent, and kills the server when the deadline
//! passes unfed or the agent dies.
//!
//! ```text
//! agent --pipe: "arm <CLOCK_MONOTONIC ns>" / "disarm"--> fencer --fork+exec--> pgcluster fence-exec --exec--> postgres
//!   |                                                      |                    (PR_SET_PDEATHSIG=SIGQUIT)
//!   +-- agent dies: the pipe reads EOF -------------------> fence now           fencer dies: postmaster SIGQUIT
//!   +-- agent paused/wedged: no new deadline -------------> fence at the last deadline
//! ```
//!
//! Why this shape (the Patroni analogue is its watchdog device):
//!
//! - **Killed agent**: the agent holds the only write end of the fencer's
//!   stdin (opened close-on-exec, so no other child inherits it); when the
//!   agent process dies for any reason the fencer reads end-of-file and
//!   fences at once. A replica's server is stopped too: without its agent
//!   the member is down anyway, and a new agent starts it again.
//! - **Paused or wedged agent**: the fencer keeps its own clock. Deadlines
//!   travel as absolute `CLOCK_MONOTONIC` times, which both processes share,
//!   so a pause between computing and sending a deadline can only move it
//!   earlier. A deadline that passes unfed fences.
//! - **Paused member** (agent, fencer and server stopped together): on resume
//!   the fencer finds its deadline past and fences at once. In sync mode the
//!   resumed server cannot acknowledge a commit meanwhile: its standby has
//!   become the primary and no longer confirms.
//! - **Killed fencer**: the postmaster gets SIGQUIT (an immediate shutdown)
//!   through `PR_SET_PDEATHSIG`, set by a small exec wrapper
//!   (`pgcluster fence-exec`) because `unsafe_code = "forbid"` rules out
//!   `pre_exec`. The parent-death signal fires when the *thread* that forked
//!   the child exits, so the fencer forks from its main thread only.
//! - **How it kills**: every backend calls `setsid()`, so a process-group
//!   kill reaches only the postmaster. The fencer sends the postmaster
//!   SIGQUIT (it stops forking and quits its children) and SIGKILLs every
//!   child of the postmaster itself, so no backend finishes a commit after
//!   the fence even if the postmaster does not run. It is a child subreaper,
//!   so a backend orphaned by the postmaster's death is re-parented to it
//!   and killed too.
//! - **Footprint**: one small process per server that sleeps in a blocking
//!   read; measured by `pgcluster bench idle`-style `ps` figures in the
//!   tests' notes (a few MiB of RSS, no CPU at rest).
//!
//! The agent's own watchdog thread ([`crate::agent::watchdog`]) stays as
//! the fast path inside a live agent and for library users that start
//! servers without a fencer.

pub mod fencer;
pub mod link;

pub use fencer::{FencerArgs, exec_with_parent_death_signal, run_fencer};
pub use link::{FenceHub, FenceSpawn};

/// The fencer's answer once the postmaster runs: `pid <N>`.
pub(crate) const PID_LINE: &str = "pid ";

/// Nanoseconds of `CLOCK_MONOTONIC` now (shared by every process on the machine).
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec()).unwrap_or(0)
}
