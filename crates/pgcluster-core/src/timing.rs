//! Failover timings and the one safety rule that relates them.
//!
//! A primary that last renewed its lease at `t` fences itself by
//! `t + renew_deadline + stop_writes_timeout`; a replica may take the lease at
//! `t + lease_duration` by its own clock, which may run `max_clock_drift` ahead.
//! So writes have stopped before anyone else can be promoted iff
//! `renew_deadline + stop_writes_timeout + max_clock_drift < lease_duration`.

use std::time::Duration;

/// The resolved timing parameters of the HA loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverTimings {
    /// Validity of the lease after its last renewal.
    pub lease_duration: Duration,
    /// Period of the agent loop.
    pub loop_interval: Duration,
    /// How long a primary may fail to renew before it fences.
    pub renew_deadline: Duration,
    /// Budget for stopping writes once fencing starts.
    pub stop_writes_timeout: Duration,
    /// Largest clock drift between members.
    pub max_clock_drift: Duration,
}

impl Default for FailoverTimings {
    /// Defaults chosen so a node crash fails over in under 3 s:
    /// lease 2 s + at most one loop (250 ms) + promotion.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_millis(2000),
            loop_interval: Duration::from_millis(250),
            renew_deadline: Duration::from_millis(1200),
            stop_writes_timeout: Duration::from_millis(500),
            max_clock_drift: Duration::from_millis(200),
        }
    }
}

/// Where a cluster runs: the failover timings' defaults depend on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Platform {
    /// `pgcluster up`: members share one machine's files.
    #[default]
    Local,
    /// Pods coordinating through a Kubernetes API server.
    Kubernetes,
}

impl FailoverTimings {
    /// The defaults for Kubernetes: lease 4 s, loop 400 ms, renew deadline
    /// 2.4 s, stop-writes 800 ms, drift 500 ms. An API server answers a
    /// Lease write in 100-500 ms on a loaded 2-core node (measured on the
    /// test node, docs/testenv.md): the local defaults left a primary too
    /// little of its 1.2 s renew deadline. A steady primary then renews
    /// every 800 ms (75 writes a minute, the only ones an idle cluster
    /// makes), and a crashed primary is replaced after about 4.5 s.
    pub fn kubernetes() -> Self {
        Self {
            lease_duration: Duration::from_millis(4000),
            loop_interval: Duration::from_millis(400),
            renew_deadline: Duration::from_millis(2400),
            stop_writes_timeout: Duration::from_millis(800),
            max_clock_drift: Duration::from_millis(500),
        }
    }

    /// The defaults on `platform`.
    pub fn defaults(platform: Platform) -> Self {
        match platform {
            Platform::Local => Self::default(),
            Platform::Kubernetes => Self::kubernetes(),
        }
    }
}

/// A violated timing rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// Fencing could finish after another member may already promote.
    #[error(
        "renewDeadline ({renew:?}) + stopWritesTimeout ({stop:?}) + maxClockDrift ({drift:?}) must be less than leaseDuration ({lease:?}); lower the first three or raise leaseDuration"
    )]
    FencingAfterExpiry {
        /// renew deadline
        renew: Duration,
        /// stop-writes budget
        stop: Duration,
        /// clock drift
        drift: Duration,
        /// lease duration
        lease: Duration,
    },
    /// The loop would not run often enough to renew before the deadline.
    #[error(
        "loopInterval ({interval:?}) must be at most a third of renewDeadline ({renew:?}) so a primary gets several renewal attempts; lower loopInterval"
    )]
    LoopTooSlow {
        /// loop interval
        interval: Duration,
        /// renew deadline
        renew: Duration,
    },
    /// A zero duration makes the protocol meaningless.
    #[error("{field} must be greater than zero")]
    Zero {
        /// the field
        field: &'static str,
    },
}

impl FailoverTimings {
    /// Every rule this set of timings breaks (empty when safe).
    pub fn check(&self) -> Vec<TimingError> {
        let mut errors = Vec::new();
        for (field, value) in [
            ("leaseDuration", self.lease_duration),
            ("loopInterval", self.loop_interval),
            ("renewDeadline", self.renew_deadline),
        ] {
            if value.is_zero() {
                errors.push(TimingError::Zero { field });
            }
        }
        if self.renew_deadline + self.stop_writes_timeout + self.max_clock_drift
            >= self.lease_duration
        {
            errors.push(TimingError::FencingAfterExpiry {
                renew: self.renew_deadline,
                stop: self.stop_writes_timeout,
                drift: self.max_clock_drift,
                lease: self.lease_duration,
            });
        }
        if self.loop_interval * 3 > self.renew_deadline {
            errors.push(TimingError::LoopTooSlow {
                interval: self.loop_interval,
                renew: self.renew_deadline,
            });
        }
        errors
    }

    /// Worst-case time from a primary's crash until a replica may take the lease:
    /// the lease runs out, then the next loop of a replica notices.
    pub fn worst_case_takeover(&self) -> Duration {
        self.lease_duration + self.max_clock_drift + self.loop_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults satisfy the fencing rule.
    #[test]
    fn defaults_are_safe() {
        assert_eq!(FailoverTimings::default().check(), vec![]);
        assert_eq!(FailoverTimings::kubernetes().check(), vec![]);
    }

    /// Fencing that can end after lease expiry is refused.
    #[test]
    fn late_fencing_is_refused() {
        let t = FailoverTimings {
            renew_deadline: Duration::from_millis(1500),
            ..FailoverTimings::default()
        };
        assert!(matches!(
            t.check()[0],
            TimingError::FencingAfterExpiry { .. }
        ));
    }

    /// A loop slower than a third of the renew deadline is refused.
    #[test]
    fn slow_loop_is_refused() {
        let t = FailoverTimings {
            loop_interval: Duration::from_millis(500),
            ..FailoverTimings::default()
        };
        assert!(matches!(t.check()[0], TimingError::LoopTooSlow { .. }));
    }
}
