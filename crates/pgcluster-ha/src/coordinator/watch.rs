//! [`ChangeWatch`]: waits, without polling, until a file is renamed into one
//! of a few directories (inotify `IN_MOVED_TO`). The local coordinator
//! renames a marker into `changes/` after every change of the lease other
//! than a renewal, and member states into `members/` when they change, so
//! a watcher wakes on real changes only: never for renewals or heartbeats,
//! never while the cluster is idle.
//!
//! ```text
//! writer --rename--> changes/lease, members/NAME.json --inotify--> ChangeWatch::changed()
//! ```

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::CoordinatorError;

/// The inotify descriptor, readable by tokio.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A watch on some directories of the local coordinator.
pub struct ChangeWatch {
    fd: AsyncFd<Fd>,
    dirs: Vec<PathBuf>,
}

impl std::fmt::Debug for ChangeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeWatch")
            .field("dirs", &self.dirs)
            .finish()
    }
}

impl ChangeWatch {
    /// Watches `dirs` for files renamed into them. Needs a tokio runtime.
    pub(crate) fn new(dirs: &[PathBuf]) -> Result<Self, CoordinatorError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| failed(Path::new("inotify"), e.into()))?;
        for dir in dirs {
            // IN_MOVED_TO only: writers create their temporary files and
            // then rename them into place; the rename is the change.
            inotify
                .add_watch(dir.as_path(), AddWatchFlags::IN_MOVED_TO)
                .map_err(|e| failed(dir, e.into()))?;
        }
        // `AsyncFd::new` is deprecated because a wrapped type could close its
        // descriptor while registered; `Fd` owns its inotify descriptor for
        // the AsyncFd's whole life and never closes it early, and `register`
        // would need unsafe code, which this workspace forbids.
        #[allow(deprecated)]
        let fd = AsyncFd::new(Fd(inotify)).map_err(|e| failed(Path::new("inotify"), e))?;
        Ok(Self {
            fd,
            dirs: dirs.to_vec(),
        })
    }

    /// Resolves at the next change (at once for changes since the last call).
    pub async fn changed(&mut self) -> Result<(), CoordinatorError> {
        loop {
            let mut ready = self
                .fd
                .readable()
                .await
                .map_err(|e| failed(Path::new("inotify"), e))?;
            match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from)) {
                Ok(Ok(events)) if !events.is_empty() => return Ok(()),
                Ok(Ok(_)) | Err(_) => continue,
                Ok(Err(e)) => return Err(failed(Path::new("inotify"), e)),
            }
        }
    }

    /// Reads every change queued now, without waiting; returns how many.
    /// The kernel queues a change when the rename returns, so this tells
    /// deterministically whether anything woke the watch.
    pub fn drain(&self) -> Result<usize, CoordinatorError> {
        let mut n = 0;
        loop {
            match self.fd.get_ref().0.read_events() {
                Ok(events) if !events.is_empty() => n += events.len(),
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => return Ok(n),
                Err(e) => return Err(failed(Path::new("inotify"), e.into())),
            }
        }
    }

    /// Forwards changes into a channel (its value counts them) until every
    /// receiver is gone; if the watch fails, falls back to a tick every
    /// `poll`, so that the receivers then poll instead.
    pub fn forward(mut self, poll: Duration) -> watch::Receiver<u64> {
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut failed = false;
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    result = self.changed(), if !failed => {
                        if let Err(error) = result {
                            tracing::warn!(%error, ?poll, "watching the coordinator failed; polling it instead");
                            failed = true;
                        }
                    }
                    () = tokio::time::sleep(poll), if failed => {}
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        rx
    }
}

fn failed(path: &Path, e: std::io::Error) -> CoordinatorError {
    CoordinatorError::Unavailable {
        source: Some(format!("watching {}: {e}", path.display()).into()),
    }
}
