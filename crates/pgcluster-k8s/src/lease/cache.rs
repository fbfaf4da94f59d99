//! [`LeaseCache`]: the cluster's Lease object as a watch keeps it, so an
//! agent reads it without asking the API server every tick.
//!
//! A watch that says nothing is either quiet or dead: a TCP connection to
//! a paused API server stays open and silent. The cache is trusted only
//! while something confirmed it recently ([`LeaseCache::fresh`]): a watch
//! event, or an answer to one of our own requests. A live primary renews
//! the Lease at least once per renew deadline, and each renewal is a watch
//! event, so at rest a replica's reads cost no request; when renewals stop
//! (the primary died, or the API server is away) the reader falls back to a
//! GET per read, which tells a dead primary from an unreachable API server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease as KubeLease;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use super::{stored_lease, stored_switchover};

/// The watched Lease and when it was last confirmed.
#[derive(Debug, Default)]
struct Cached {
    /// The object (`None`: it does not exist), once known.
    object: Option<KubeLease>,
    /// Whether the watch has listed the object since it (re)started.
    synced: bool,
    /// The last watch event or answer about the object.
    confirmed_at: Option<Instant>,
    /// What the agent acts on at once (see [`watched`]).
    watched: Watched,
}

/// The parts of the Lease whose change wakes an agent between ticks: the
/// switchover request and the holder and term (not renewals).
type Watched = (Option<u64>, Option<(Option<String>, u64)>);

fn watched(object: Option<&KubeLease>) -> Watched {
    let Some(object) = object else {
        return (None, None);
    };
    let switchover = stored_switchover(object).ok().flatten().map(|r| r.id);
    let lease = stored_lease(object).ok().flatten().map(|l| {
        (
            l.record.holder.map(|h| h.as_str().to_owned()),
            l.record.term,
        )
    });
    (switchover, lease)
}

/// The resourceVersion as a number, where it is one (etcd revisions are):
/// used only to keep the newer of two copies of the same object.
fn revision(object: &KubeLease) -> Option<u64> {
    object.metadata.resource_version.as_deref()?.parse().ok()
}

/// The Lease of one cluster, kept by a background watch.
#[derive(Clone, Debug)]
pub struct LeaseCache {
    cached: Arc<Mutex<Cached>>,
    changes: watch::Sender<u64>,
}

impl LeaseCache {
    /// Starts watching the Lease `name` (needs a tokio runtime); the task
    /// ends when every handle is dropped.
    pub fn watch(api: Api<KubeLease>, name: &str) -> Self {
        let cache = Self::default();
        let weak = Arc::downgrade(&cache.cached);
        let changes = cache.changes.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let Some(cached) = weak.upgrade() else { return };
                let cache = LeaseCache {
                    cached,
                    changes: changes.clone(),
                };
                match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        cache.store(Some(o), false);
                    }
                    Ok(watcher::Event::Delete(_)) => cache.store(None, true),
                    Ok(watcher::Event::Init) => cache.lock().synced = false,
                    Ok(watcher::Event::InitDone) => {
                        let mut c = cache.lock();
                        c.synced = true;
                        c.confirmed_at = Some(Instant::now());
                    }
                    Err(error) => {
                        tracing::debug!(%error, "the Lease watch failed; it restarts with back-off");
                    }
                }
            }
        });
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        // A panic while holding the lock leaves at worst an older copy.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `object` (`None`: it is gone) as confirmed now. An older
    /// copy than the one held is ignored unless `replace` (a deletion).
    pub fn store(&self, object: Option<KubeLease>, replace: bool) {
        let mut c = self.lock();
        let older = match (&object, &c.object) {
            (Some(new), Some(held)) => {
                matches!((revision(new), revision(held)), (Some(n), Some(h)) if n < h)
            }
            _ => false,
        };
        c.confirmed_at = Some(Instant::now());
        if older && !replace {
            return;
        }
        let now = watched(object.as_ref());
        let moved = now != c.watched;
        c.watched = now;
        c.object = object;
        drop(c);
        if moved {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The object if the watch has listed it and something confirmed it
    /// within `fresh_for`; `None` when it must be read from the API server.
    pub fn fresh(&self, fresh_for: Duration) -> Option<Option<KubeLease>> {
        let c = self.lock();
        let confirmed = c.confirmed_at.is_some_and(|at| at.elapsed() <= fresh_for);
        (c.synced && confirmed).then(|| c.object.clone())
    }

    /// The object as last seen, however old (a compare-and-swap's first try).
    pub fn last(&self) -> Option<KubeLease> {
        self.lock().object.clone()
    }

    /// A signal of changes of the holder, the term or the switchover request.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Default for LeaseCache {
    fn default() -> Self {
        Self {
            cached: Arc::new(Mutex::new(Cached::default())),
            changes: watch::channel(0).0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(revision: &str, switchover: Option<&str>) -> KubeLease {
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(json) = switchover {
            annotations.insert(
                super::super::ANNOTATION_SWITCHOVER.to_owned(),
                json.to_owned(),
            );
        }
        KubeLease {
            metadata: ObjectMeta {
                name: Some("pg-leader".to_owned()),
                resource_version: Some(revision.to_owned()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: None,
        }
    }

    /// Not fresh before the watch listed the object, nor once nothing
    /// confirmed it for longer than asked; an older copy never replaces a
    /// newer one; a switchover request signals, a plain update does not.
    #[test]
    fn fresh_only_while_confirmed_and_never_older() {
        let cache = LeaseCache::default();
        let mut changes = cache.changes();
        cache.store(Some(at("10", None)), false);
        assert_eq!(cache.fresh(Duration::from_secs(60)), None, "not listed yet");
        cache.lock().synced = true;
        let fresh = cache.fresh(Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(fresh.metadata.resource_version.as_deref(), Some("10"));
        assert!(
            !changes.has_changed().unwrap(),
            "no request, no holder: no signal"
        );

        cache.store(Some(at("12", None)), false);
        cache.store(Some(at("11", None)), false);
        assert_eq!(
            cache.last().unwrap().metadata.resource_version.as_deref(),
            Some("12")
        );

        cache.store(Some(at("13", Some(r#"{"id":7,"target":null}"#))), false);
        assert!(
            changes.has_changed().unwrap(),
            "a switchover request signals"
        );
        changes.borrow_and_update();

        cache.lock().confirmed_at = Some(Instant::now() - Duration::from_secs(5));
        assert_eq!(
            cache.fresh(Duration::from_secs(1)),
            None,
            "unconfirmed for 5 s"
        );
        cache.store(None, true);
        assert_eq!(cache.fresh(Duration::from_secs(1)), Some(None), "deleted");
        assert!(changes.has_changed().unwrap(), "the request went with it");
    }
}
