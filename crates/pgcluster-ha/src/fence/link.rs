//! The agent's side of the fence: [`FenceHub`] holds the current deadline
//! and the pipe to the fencer of the running server; [`FenceSpawn`] says how
//! to start a server behind a fencer.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::fcntl::OFlag;

use super::monotonic_ns;

/// How servers are started behind a fencer: the executable that provides
/// `fence` and `fence-exec`, and the hub that feeds them.
#[derive(Clone, Debug)]
pub struct FenceSpawn {
    /// The `pgcluster` binary (usually `std::env::current_exe()`).
    pub exe: PathBuf,
    /// Where the agent's deadlines go.
    pub hub: Arc<FenceHub>,
}

impl FenceSpawn {
    /// Servers started by `exe`'s fencer, fed by a new hub.
    pub fn new(exe: PathBuf) -> Self {
        Self {
            exe,
            hub: Arc::new(FenceHub::default()),
        }
    }
}

/// The current deadline and the pipe to the running server's fencer.
#[derive(Debug, Default)]
pub struct FenceHub {
    inner: Mutex<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    /// `CLOCK_MONOTONIC` nanoseconds after which the server must not run.
    deadline_ns: Option<u64>,
    /// The write end of the current fencer's stdin.
    feed: Option<File>,
    /// The current fencer has read "disarm" as the last line: another
    /// one would only wake it (a replica disarms every loop).
    fencer_disarmed: bool,
}

/// A pipe whose write end the agent keeps (close-on-exec, non-blocking) and
/// whose read end becomes the fencer's stdin.
pub(crate) fn feed_pipe() -> std::io::Result<(OwnedFd, File)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    // A stopped fencer must never block the agent: a full pipe drops the
    // newest deadline, which leaves the fencer with an earlier one (safe).
    let flags =
        nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    nix::fcntl::fcntl(
        &write,
        nix::fcntl::FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(std::io::Error::from)?;
    Ok((read, File::from(write)))
}

impl FenceHub {
    fn with<T>(&self, f: impl FnOnce(&mut HubInner) -> T) -> T {
        let mut inner = self
            .inner
            .lock()
            .expect("the fence hub lock is never poisoned because nothing panics while holding it");
        f(&mut inner)
    }

    /// The server must be stopped at `deadline` unless re-armed before.
    pub fn arm(&self, deadline: Instant) {
        // Read the monotonic clock before `Instant::now()`: a pause between
        // the two makes the deadline earlier, never later.
        let mono = monotonic_ns();
        let left = deadline.saturating_duration_since(Instant::now());
        let ns = mono.saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
        self.with(|i| {
            i.deadline_ns = Some(ns);
            i.fencer_disarmed = false;
            send(&mut i.feed, &format!("arm {ns}\n"));
        });
    }

    /// No deadline (no lease held, no writable primary).
    pub fn disarm(&self) {
        self.with(|i| {
            i.deadline_ns = None;
            if !i.fencer_disarmed {
                i.fencer_disarmed = send(&mut i.feed, "disarm\n");
            }
        });
    }

    /// The armed deadline in `CLOCK_MONOTONIC` nanoseconds, if any.
    pub fn deadline_ns(&self) -> Option<u64> {
        self.with(|i| i.deadline_ns)
    }

    /// Connects a newly started fencer and tells it the current deadline.
    /// The previous fencer's pipe closes (its server has stopped by then).
    pub(crate) fn attach(&self, feed: File) {
        self.with(|i| {
            i.feed = Some(feed);
            let line = match i.deadline_ns {
                Some(ns) => format!("arm {ns}\n"),
                None => "disarm\n".to_owned(),
            };
            let sent = send(&mut i.feed, &line);
            i.fencer_disarmed = sent && i.deadline_ns.is_none();
        });
    }
}

/// Writes `line` to the fencer; whether it was written whole.
fn send(feed: &mut Option<File>, line: &str) -> bool {
    let Some(file) = feed else {
        return false;
    };
    match file.write(line.as_bytes()) {
        Ok(n) => n == line.len(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::warn!(
                "the fencer is not reading its deadlines (stopped?); it keeps the earlier one"
            );
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // The fencer exited with its server; the next server brings a new one.
            *feed = None;
            false
        }
        Err(error) => {
            tracing::warn!(%error, "could not feed the fencer");
            false
        }
    }
}
