//! Switchover and forced failover as a client asks for them: a request
//! written through the coordinator, then a wait until another member holds
//! the lease and serves as primary. One implementation over the
//! [`Coordinator`] trait for `pgcluster switchover|failover` in local mode
//! and in Kubernetes; each mode adds only how it reaches its coordinator and
//! how it explains a refusal.
//!
//! ```text
//! read view --checks--> request_switchover --poll read view--> new holder serving as primary
//!                                                          \--> request cleared, lease kept: refused
//!                                                          \--> timeout: request withdrawn
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::coordinator::{Coordinator, CoordinatorError};
use crate::machine::{ClusterView, MemberName, MemberRole, SwitchoverRequest};

/// How long a cleared request must stay without a hand-over to count as refused.
const REFUSAL_GRACE: Duration = Duration::from_millis(500);

/// How a wait polls and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    /// Between two reads of the view (local files: 10 ms; the API server: 500 ms).
    pub poll: Duration,
    /// Until the request is withdrawn.
    pub timeout: Duration,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    /// The primary before.
    pub from: Option<MemberName>,
    /// The primary after.
    pub to: MemberName,
    /// From the request until the new primary published itself as primary.
    pub took: Duration,
}

/// Why a switchover or failover was not done.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The target is not a member of the cluster.
    #[error("{target} is not an instance of the cluster; instances: {known}")]
    UnknownTarget {
        /// The name given.
        target: String,
        /// The cluster's members.
        known: String,
    },
    /// The target already holds the lease.
    #[error("{target} is already the primary")]
    AlreadyPrimary {
        /// The target.
        target: String,
    },
    /// A forced failover while the primary still renews its lease.
    #[error(
        "refusing to fail over: the primary {primary} is healthy and a failover would lose its newest writes; use switchover instead"
    )]
    PrimaryHealthy {
        /// The primary.
        primary: String,
    },
    /// The request was cleared without the expected hand-over.
    #[error("failed to {operation}: {reason}")]
    Refused {
        /// `switch over` or `fail over`.
        operation: &'static str,
        /// What happened and where to look.
        reason: String,
        /// The forced failover's target held the lease at some point, then lost it.
        target_held: bool,
    },
    /// Nothing happened in time; the request was withdrawn (or could not be).
    #[error("failed to {operation} within {waited:?}: {reason}")]
    Timeout {
        /// `switch over` or `fail over`.
        operation: &'static str,
        /// How long it waited.
        waited: Duration,
        /// The state at the end.
        reason: String,
    },
    /// The coordinator could not be read or written.
    #[error("failed to {action} through the coordinator")]
    Coordinator {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: CoordinatorError,
    },
}

impl OpsError {
    /// A bounded label for logs and tests.
    pub fn category(&self) -> &'static str {
        match self {
            OpsError::UnknownTarget { .. } => "unknown_target",
            OpsError::AlreadyPrimary { .. } => "already_primary",
            OpsError::PrimaryHealthy { .. } => "primary_healthy",
            OpsError::Refused { .. } => "refused",
            OpsError::Timeout { .. } => "timeout",
            OpsError::Coordinator { .. } => "coordinator",
        }
    }

    /// Whether the input was wrong (the user can fix the command) rather
    /// than the cluster refusing or failing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            OpsError::UnknownTarget { .. }
                | OpsError::AlreadyPrimary { .. }
                | OpsError::PrimaryHealthy { .. }
        )
    }
}

async fn read<C: Coordinator + ?Sized>(coord: &C) -> Result<ClusterView, OpsError> {
    coord
        .read_view()
        .await
        .map_err(|source| OpsError::Coordinator {
            action: "read the cluster view",
            source,
        })
}

fn holder(view: &ClusterView) -> Option<&MemberName> {
    view.lease.as_ref().and_then(|l| l.record.holder.as_ref())
}

fn check_member(view: &ClusterView, target: &str) -> Result<(), OpsError> {
    if view.members.contains_key(&MemberName::from(target)) {
        return Ok(());
    }
    Err(OpsError::UnknownTarget {
        target: target.to_owned(),
        known: view
            .members
            .keys()
            .map(MemberName::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Requests a switchover (to `to`, or the best replica) and waits until
/// another member holds the lease and serves as primary. `id` identifies
/// the request (e.g. the current time in ms).
pub async fn switchover<C: Coordinator + ?Sized>(
    coord: &C,
    to: Option<&str>,
    id: u64,
    wait: Wait,
) -> Result<Handover, OpsError> {
    let view = read(coord).await?;
    if let Some(t) = to {
        check_member(&view, t)?;
    }
    let from = holder(&view).cloned();
    if let Some(t) = to
        && from.as_ref().is_some_and(|f| f.as_str() == t)
    {
        return Err(OpsError::AlreadyPrimary {
            target: t.to_owned(),
        });
    }
    let request = SwitchoverRequest::switchover(id, to.map(MemberName::from));
    send_and_wait(coord, from, request, wait).await
}

/// A forced failover to `to`: refused while the primary is healthy (its
/// member state says a healthy primary and it still renews the lease or
/// publishes within one lease duration: a dead or paused primary's last
/// state says healthy forever); otherwise a forced request, which `to`
/// executes once the old lease has expired.
pub async fn failover<C: Coordinator + ?Sized>(
    coord: &C,
    to: &str,
    id: u64,
    wait: Wait,
) -> Result<Handover, OpsError> {
    let view = read(coord).await?;
    check_member(&view, to)?;
    let from = holder(&view).cloned();
    if let Some(primary) = &from
        && view
            .members
            .get(primary)
            .is_some_and(|m| m.role == MemberRole::Primary && m.healthy)
        && alive(coord, primary, &view, wait.poll).await?
    {
        return Err(OpsError::PrimaryHealthy {
            primary: primary.to_string(),
        });
    }
    let request = SwitchoverRequest::forced_failover(id, MemberName::from(to));
    send_and_wait(coord, from, request, wait).await
}

/// Whether `primary`, whose last published state says it is a healthy
/// primary, is still alive: it renews the lease (or publishes a new
/// heartbeat) within one lease duration. The agents' own test of freshness.
async fn alive<C: Coordinator + ?Sized>(
    coord: &C,
    primary: &MemberName,
    view: &ClusterView,
    poll: Duration,
) -> Result<bool, OpsError> {
    let Some(lease) = &view.lease else {
        return Ok(false);
    };
    let heartbeat = view.members.get(primary).map(|m| m.heartbeat);
    let watch = Duration::from_millis(lease.record.duration_ms) + poll;
    let start = Instant::now();
    while start.elapsed() < watch {
        tokio::time::sleep(poll).await;
        let now = read(coord).await?;
        let Some(current) = &now.lease else {
            return Ok(false);
        };
        if current.record.holder.as_ref() != Some(primary) {
            return Ok(false);
        }
        if current.version != lease.version
            || now.members.get(primary).map(|m| m.heartbeat) != heartbeat
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes `request` and waits until a member other than `from` (the
/// request's target, when it names one) holds the lease and publishes
/// itself as a healthy primary. A request that disappears while the lease
/// stays put (still so one poll later) was refused; on timeout the request
/// is withdrawn.
async fn send_and_wait<C: Coordinator + ?Sized>(
    coord: &C,
    from: Option<MemberName>,
    request: SwitchoverRequest,
    wait: Wait,
) -> Result<Handover, OpsError> {
    let operation = if request.forced {
        "fail over"
    } else {
        "switch over"
    };
    let started = Instant::now();
    coord
        .request_switchover(request.clone())
        .await
        .map_err(|source| OpsError::Coordinator {
            action: "write the switchover request",
            source,
        })?;
    let target = request.target.as_ref();
    // A cleared request counts as refused only once it stayed cleared with
    // nobody new taking over for a while (a forced failover's target clears
    // it just before it acquires the expired lease).
    let grace = (2 * wait.poll).max(REFUSAL_GRACE);
    let mut cleared_since: Option<Instant> = None;
    let mut target_held = false;
    loop {
        let view = read(coord).await?;
        let now = holder(&view);
        if let Some(h) = now
            && Some(h) != from.as_ref()
            && target.is_none_or(|t| h == t)
            && view
                .members
                .get(h)
                .is_some_and(|m| m.role == MemberRole::Primary && m.healthy)
        {
            return Ok(Handover {
                from,
                to: h.clone(),
                took: started.elapsed(),
            });
        }
        target_held |= target.is_some() && now == target;
        let pending = view.switchover.as_ref().is_some_and(|r| r.id == request.id);
        // Cleared and nobody new took over (a forced failover's target
        // clears it when it refuses, and the lease may go to someone else).
        let handed_over =
            now.is_some_and(|h| Some(h) != from.as_ref() && target.is_none_or(|t| h == t));
        if pending || handed_over {
            cleared_since = None;
        } else if cleared_since.get_or_insert_with(Instant::now).elapsed() >= grace {
            return Err(refused(&request, from.as_ref(), now, target_held));
        }
        if started.elapsed() >= wait.timeout {
            // Best effort: a request left behind would fire later.
            let withdrawn = coord.clear_switchover(request.id).await.is_ok();
            return Err(OpsError::Timeout {
                operation,
                waited: wait.timeout,
                reason: format!(
                    "the leader is still {}; the request {}",
                    now.map_or_else(|| "none".to_owned(), MemberName::to_string),
                    if withdrawn {
                        "was withdrawn"
                    } else {
                        "could not be withdrawn (clear it from the coordinator by hand)"
                    }
                ),
            });
        }
        tokio::time::sleep(wait.poll).await;
    }
}

fn refused(
    request: &SwitchoverRequest,
    from: Option<&MemberName>,
    now: Option<&MemberName>,
    target_held: bool,
) -> OpsError {
    let name =
        |m: Option<&MemberName>| m.map_or_else(|| "nobody".to_owned(), MemberName::to_string);
    if request.forced {
        let target = name(request.target.as_ref());
        let what = if target_held {
            format!("{target} took the lease but lost it before serving as primary")
        } else {
            format!(
                "{target} cleared the forced request or another member took the expired lease \
                 first ({target} must be a replica of the cluster's data and lineage, and in \
                 sync mode a synchronous standby)"
            )
        };
        OpsError::Refused {
            operation: "fail over",
            reason: format!("{what}; the lease is now held by {}", name(now)),
            target_held,
        }
    } else {
        OpsError::Refused {
            operation: "switch over",
            reason: format!(
                "the primary {} cleared the request without handing over (the target must be a \
                 healthy replica streaming from it); see the status and the primary's log",
                name(from)
            ),
            target_held,
        }
    }
}

#[cfg(test)]
mod tests;
