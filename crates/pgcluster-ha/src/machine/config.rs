//! [`HaConfig`]: what one member's state machine needs from the cluster spec.

use std::time::Duration;

use pgcluster_core::ValidatedCluster;
use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_core::timing::{FailoverTimings, TimingError};
use pgcluster_core::validated::ResolvedReplication;

use super::units::{MemberName, duration_ms};

/// The HA configuration of one member.
#[derive(Clone, Debug, PartialEq)]
pub struct HaConfig {
    /// This member.
    pub me: MemberName,
    /// Every member of the cluster, this one included, sorted.
    pub members: Vec<MemberName>,
    /// Loop, lease and fencing timings (checked by [`FailoverTimings::check`]).
    pub timings: FailoverTimings,
    /// Replication mode, no-standby policy and lag limit.
    pub replication: ResolvedReplication,
    /// Whether replicas take over automatically when the lease expires.
    pub automatic_failover: bool,
    /// Cached milliseconds of the timings (the machine works in whole ms).
    pub(crate) ms: TimingsMs,
}

/// The timings in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimingsMs {
    pub lease: u64,
    pub loop_interval: u64,
    pub renew_deadline: u64,
    /// How often a steady member ticks (see [`super::cadence`]): what is
    /// left of the renew deadline after a write timeout and a loop, between
    /// one and two loops.
    pub idle: u64,
    /// A member whose heartbeat did not change for this long is stale: two
    /// idle intervals (a steady member beats once per idle interval, and an
    /// observer may read just before a beat) plus two loops of slack, and
    /// never less than four loops.
    pub stale_after: u64,
    /// How long a switchover waits for its target before giving up.
    pub switchover_timeout: u64,
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// This member is not one of the cluster's members.
    #[error("failed to configure HA: member {me} is not one of the cluster's instances")]
    UnknownMember {
        /// the member name given
        me: String,
    },
    /// The timings break the fencing rule or another timing rule.
    #[error("failed to configure HA: the failover timings are unsafe")]
    UnsafeTimings {
        /// the first broken rule
        #[source]
        source: TimingError,
    },
    /// Two members share a name.
    #[error("failed to configure HA: member {name} is listed twice")]
    DuplicateMember {
        /// the duplicate
        name: String,
    },
}

impl ConfigError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::UnknownMember { .. } => "unknown_member",
            ConfigError::UnsafeTimings { .. } => "unsafe_timings",
            ConfigError::DuplicateMember { .. } => "duplicate_member",
        }
    }
}

impl HaConfig {
    /// Builds a config from plain values, checking the timing rules.
    pub fn new(
        me: MemberName,
        members: impl IntoIterator<Item = MemberName>,
        timings: FailoverTimings,
        replication: ResolvedReplication,
        automatic_failover: bool,
    ) -> Result<Self, ConfigError> {
        let mut list: Vec<MemberName> = members.into_iter().collect();
        list.sort();
        if let Some(w) = list.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateMember {
                name: w[0].to_string(),
            });
        }
        if !list.contains(&me) {
            return Err(ConfigError::UnknownMember { me: me.to_string() });
        }
        if let Some(source) = timings.check().into_iter().next() {
            return Err(ConfigError::UnsafeTimings { source });
        }
        let lease = duration_ms(timings.lease_duration);
        let loop_interval = duration_ms(timings.loop_interval).max(1);
        let renew_deadline = duration_ms(timings.renew_deadline);
        // A steady primary renews every `idle`. A renewal that hangs for the
        // whole write timeout must still leave a loop for the failsafe
        // probes before the renew deadline, as at the loop cadence.
        let write_timeout = duration_ms(write_timeout(&timings));
        let idle = renew_deadline
            .saturating_sub(write_timeout + loop_interval)
            .clamp(loop_interval, 2 * loop_interval);
        Ok(Self {
            me,
            members: list,
            timings,
            replication,
            automatic_failover,
            ms: TimingsMs {
                lease,
                loop_interval,
                renew_deadline,
                idle,
                stale_after: (2 * idle + 2 * loop_interval).max(4 * loop_interval),
                switchover_timeout: lease * 2,
            },
        })
    }

    /// The config of instance `me` (e.g. `pg-1`) of a validated cluster.
    pub fn from_validated(cluster: &ValidatedCluster, me: &str) -> Result<Self, ConfigError> {
        let members = (0..cluster.instances()).map(|i| MemberName::new(cluster.name().instance(i)));
        Self::new(
            MemberName::new(me),
            members,
            cluster.timings(),
            cluster.replication(),
            cluster.automatic_failover(),
        )
    }

    /// How long a coordinator write may take before it counts as unanswered.
    pub fn write_timeout(&self) -> Duration {
        write_timeout(&self.timings)
    }

    /// Whether commits wait for a synchronous standby.
    pub fn sync_mode(&self) -> bool {
        self.replication.mode == ReplicationMode::Sync
    }

    /// Whether a sync-mode primary without healthy standbys keeps accepting writes.
    pub fn falls_back_to_async(&self) -> bool {
        self.replication.when_no_standby == NoStandbyPolicy::FallbackToAsync
    }

    /// The other members.
    pub fn peers(&self) -> impl Iterator<Item = &MemberName> {
        self.members.iter().filter(move |m| **m != self.me)
    }
}

/// The timeout of coordinator writes: half the renew deadline, at least
/// three quarters of a loop.
fn write_timeout(t: &FailoverTimings) -> Duration {
    (t.renew_deadline / 2).max(t.loop_interval * 3 / 4)
}
