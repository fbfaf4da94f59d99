//! [`LocalCoordinator`]: the coordinator for `pgcluster up`, shared by several
//! agent processes on one machine through a directory.
//!
//! The whole [`ClusterView`] lives in one JSON file. Writers take an exclusive
//! advisory lock on a separate lock file, read, apply the same semantics as
//! [`MemoryCoordinator`], write a temporary file, fsync it and rename it over
//! the old one; readers need no lock because rename is atomic. A process that
//! dies holding the lock releases it with its file descriptors, so a crashed
//! agent can never wedge the others.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::memory::MemoryCoordinator;
use super::{BoxError, CasOutcome, Coordinator, CoordinatorError};
use crate::machine::{ClusterView, LeaseRecord, LeaseVersion, MemberState, SwitchoverRequest};

const STATE_FILE: &str = "coordinator.json";
const LOCK_FILE: &str = "coordinator.lock";

/// A coordinator stored in a directory shared by the agents of one local cluster.
#[derive(Clone, Debug)]
pub struct LocalCoordinator {
    dir: PathBuf,
    timeout: Duration,
}

impl LocalCoordinator {
    /// A coordinator in `dir` (created when missing); each call gives up after `timeout`.
    pub fn open(dir: impl Into<PathBuf>, timeout: Duration) -> Result<Self, CoordinatorError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| unavailable(&dir, e))?;
        Ok(Self { dir, timeout })
    }

    /// The directory holding the state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the current view without locking (rename makes every read whole).
    pub fn read_now(&self) -> Result<ClusterView, CoordinatorError> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CoordinatorError::Corrupt {
                what: path.display().to_string(),
                source: Some(Box::new(e)),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClusterView::default()),
            Err(e) => Err(unavailable(&path, e)),
        }
    }

    /// Runs `op` on the view under the exclusive lock and stores the result.
    fn update<T>(&self, op: impl FnOnce(&MemoryCoordinator) -> T) -> Result<T, CoordinatorError> {
        let lock = self.lock()?;
        let store = MemoryCoordinator::from_view(self.read_now()?);
        let out = op(&store);
        self.write(&store.view())?;
        drop(lock);
        Ok(out)
    }

    /// Takes the exclusive lock, polling so that a stalled holder turns into a
    /// timeout instead of a blocked agent loop.
    fn lock(&self) -> Result<File, CoordinatorError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable(&path, e))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) if started.elapsed() < self.timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(CoordinatorError::Timeout {
                        timeout: self.timeout,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(unavailable(&path, e)),
            }
        }
    }

    fn write(&self, view: &ClusterView) -> Result<(), CoordinatorError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self
            .dir
            .join(format!("{STATE_FILE}.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(view).map_err(|e| CoordinatorError::Corrupt {
            what: "the cluster view to write".to_owned(),
            source: Some(Box::new(e)),
        })?;
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            unavailable(&path, e)
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(LocalCoordinator) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| CoordinatorError::Unavailable {
                source: Some(Box::new(e)),
            })?
    }
}

fn unavailable(path: &Path, e: std::io::Error) -> CoordinatorError {
    let source: BoxError = format!("{}: {e}", path.display()).into();
    CoordinatorError::Unavailable {
        source: Some(source),
    }
}

impl Coordinator for LocalCoordinator {
    async fn read_view(&self) -> Result<ClusterView, CoordinatorError> {
        self.blocking(|c| c.read_now()).await
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        self.blocking(move |c| c.update(|s| s.cas_lease(expected, record)))
            .await
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        self.blocking(move |c| c.update(|s| s.publish(state))).await
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.blocking(move |c| c.update(|s| s.request(request)))
            .await?
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.blocking(move |c| c.update(|s| s.clear(id))).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::machine::{MemberName, Millis, Timeline};

    fn record(holder: &str, term: u64) -> LeaseRecord {
        LeaseRecord {
            holder: Some(MemberName::new(holder)),
            term,
            renewed_at: Millis(0),
            duration_ms: 2000,
            system_identifier: None,
            timeline: Timeline(1),
            history: Vec::new(),
            max_timeline: Timeline(1),
            primary_lsn: Default::default(),
            sync_standbys: Default::default(),
        }
    }

    /// Of many concurrent acquirers with the same expected version, exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exactly_one_concurrent_cas_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tasks = Vec::new();
        for i in 0..16 {
            // Separate handles, as separate processes would have.
            let c =
                Arc::new(LocalCoordinator::open(dir.path(), Duration::from_secs(5)).expect("open"));
            tasks.push(tokio::spawn(async move {
                c.compare_and_swap_lease(LeaseVersion(0), record(&format!("m{i}"), 1))
                    .await
                    .expect("cas")
            }));
        }
        let mut won = 0;
        for t in tasks {
            if matches!(t.await.expect("join"), CasOutcome::Won(_)) {
                won += 1;
            }
        }
        assert_eq!(won, 1);
        let c = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
        let lease = c.read_view().await.expect("read").lease.expect("lease");
        assert_eq!(lease.version, LeaseVersion(1));
    }

    /// A lost race reports the lease that won; a stale version never overwrites it.
    #[tokio::test]
    async fn stale_version_loses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
        assert!(matches!(
            c.compare_and_swap_lease(LeaseVersion(0), record("a", 1))
                .await
                .expect("cas"),
            CasOutcome::Won(_)
        ));
        match c
            .compare_and_swap_lease(LeaseVersion(0), record("b", 1))
            .await
            .expect("cas")
        {
            CasOutcome::Lost(Some(l)) => assert_eq!(l.record.holder, Some(MemberName::new("a"))),
            other => panic!("expected Lost(a), got {other:?}"),
        }
    }

    /// Switchover requests are exclusive and cleared by id; state survives reopening.
    #[tokio::test]
    async fn switchover_requests_persist_and_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
        c.request_switchover(SwitchoverRequest {
            id: 7,
            target: None,
        })
        .await
        .expect("request");
        let again = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
        assert!(matches!(
            again
                .request_switchover(SwitchoverRequest {
                    id: 8,
                    target: None
                })
                .await,
            Err(CoordinatorError::SwitchoverPending { pending: 7 })
        ));
        again.clear_switchover(7).await.expect("clear");
        assert_eq!(c.read_view().await.expect("read").switchover, None);
    }

    /// A lock held by someone else turns into a timeout, not a hang.
    #[tokio::test]
    async fn held_lock_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = LocalCoordinator::open(dir.path(), Duration::from_millis(50)).expect("open");
        let held = File::create(dir.path().join(LOCK_FILE)).expect("lock file");
        held.lock().expect("lock");
        let err = c
            .compare_and_swap_lease(LeaseVersion(0), record("a", 1))
            .await
            .expect_err("must time out");
        assert_eq!(err.category(), "timeout");
    }

    /// A corrupt state file is reported as such, naming the file.
    #[tokio::test]
    async fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(STATE_FILE), b"{not json").expect("write");
        let c = LocalCoordinator::open(dir.path(), Duration::from_millis(50)).expect("open");
        let err = c.read_view().await.expect_err("corrupt");
        assert_eq!(err.category(), "corrupt");
        assert!(format!("{err:?}").contains(STATE_FILE));
    }
}
