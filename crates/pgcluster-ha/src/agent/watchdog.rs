//! The watchdog behind [`crate::machine::Action::ArmWatchdog`]: a dedicated OS
//! thread with its own timer that fences our postmaster (SIGQUIT, an
//! immediate shutdown, to the PID we started) when the armed deadline passes,
//! even if the agent's async loop is stalled or blocked. While a background
//! operation owns the postmaster (promote, start) the agent has no PID to
//! give: the watchdog then fences the postmaster of our data directory, found
//! by its `postmaster.pid`.
//!
//! ```text
//! driver --arm(deadline)/disarm()/set_pid(pid)--> Mutex+Condvar --> thread --SIGQUIT--> postmaster
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, Default)]
struct Inner {
    deadline: Option<Instant>,
    pid: Option<u32>,
    /// Where to find the postmaster when `pid` is unknown.
    data_dir: Option<PathBuf>,
    stop: bool,
    fired: u64,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

/// The watchdog; dropping it stops the thread (without fencing).
#[derive(Debug)]
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The fencer's feed: the same deadlines reach the process that
    /// outlives this one (see [`crate::fence`]).
    hub: Option<Arc<crate::fence::FenceHub>>,
}

impl Watchdog {
    /// Starts the watchdog thread, disarmed; with no PID set it fences the
    /// postmaster of `data_dir` (if any runs).
    pub fn start(
        data_dir: Option<PathBuf>,
        hub: Option<Arc<crate::fence::FenceHub>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                data_dir,
                ..Inner::default()
            }),
            wake: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pgcluster-watchdog".to_owned())
            .spawn(move || run(&for_thread))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            hub,
        })
    }

    /// Runs `f` under the lock; wakes the thread when `f` says its wait must
    /// be cut short. A deadline moved later, a disarm or a PID set needs no
    /// wake-up: the thread looks again when its wait ends, before anything
    /// fires (so an idle loop does not wake it four times a second).
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> (T, bool)) -> T {
        let mut inner =
            self.shared.inner.lock().expect(
                "the watchdog lock is never poisoned because nothing panics while holding it",
            );
        let (out, wake) = f(&mut inner);
        if wake {
            self.shared.wake.notify_all();
        }
        out
    }

    /// Fence at `deadline` unless re-armed or disarmed before; replaces the previous deadline.
    pub fn arm(&self, deadline: Instant) {
        if let Some(hub) = &self.hub {
            hub.arm(deadline);
        }
        // The thread waits for the old deadline or a second when disarmed:
        // only an earlier deadline must cut that wait short.
        self.with(|i| {
            let earlier = i.deadline.is_none_or(|d| deadline < d);
            i.deadline = Some(deadline);
            ((), earlier)
        });
    }

    /// No deadline (this member holds no lease and runs no writable primary).
    pub fn disarm(&self) {
        if let Some(hub) = &self.hub {
            hub.disarm();
        }
        self.with(|i| {
            i.deadline = None;
            ((), false)
        });
    }

    /// The postmaster to fence (`None` while none runs).
    pub fn set_pid(&self, pid: Option<u32>) {
        self.with(|i| {
            i.pid = pid;
            ((), false)
        });
    }

    /// How many times the watchdog fenced PostgreSQL.
    pub fn fired(&self) -> u64 {
        self.with(|i| (i.fired, false))
    }

    /// The armed deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.with(|i| (i.deadline, false))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.with(|i| {
            i.stop = true;
            ((), true)
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared) {
    let mut inner = shared
        .inner
        .lock()
        .expect("the watchdog lock is never poisoned because nothing panics while holding it");
    loop {
        if inner.stop {
            return;
        }
        let now = Instant::now();
        match inner.deadline {
            Some(deadline) if now >= deadline => {
                inner.deadline = None;
                let pid = inner.pid.or_else(|| {
                    inner
                        .data_dir
                        .as_deref()
                        .and_then(super::supervise::postmaster_of)
                });
                if let Some(pid) = pid {
                    inner.fired += 1;
                    fence(pid);
                }
            }
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                inner = shared
                    .wake
                    .wait_timeout(inner, wait)
                    .expect("the watchdog lock is never poisoned because nothing panics while holding it")
                    .0;
            }
            None => {
                inner = shared
                    .wake
                    .wait_timeout(inner, Duration::from_secs(1))
                    .expect("the watchdog lock is never poisoned because nothing panics while holding it")
                    .0;
            }
        }
    }
}

/// SIGQUIT to the postmaster: an immediate shutdown; it SIGQUITs every
/// backend at once, so nothing commits after this.
fn fence(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    // eprintln, not tracing: this thread must not depend on anything that could stall.
    eprintln!("pgcluster watchdog: lease deadline passed; fencing postmaster {pid} (SIGQUIT)");
    let _ = kill(Pid::from_raw(raw), Signal::SIGQUIT);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An armed deadline fires without any help from the caller's thread, and
    /// re-arming pushes it back.
    #[test]
    fn fires_only_after_the_latest_deadline() {
        let dog = Watchdog::start(None, None).expect("thread starts");
        // A PID that is certainly not ours to signal would be unsafe; use none:
        // firing with no PID only clears the deadline.
        dog.arm(Instant::now() + Duration::from_millis(50));
        dog.arm(Instant::now() + Duration::from_millis(150));
        std::thread::sleep(Duration::from_millis(100));
        assert!(dog.deadline().is_some(), "re-armed deadline not yet passed");
        std::thread::sleep(Duration::from_millis(150));
        assert!(dog.deadline().is_none(), "deadline passed and was consumed");
        assert_eq!(dog.fired(), 0, "no pid, nothing fenced");
    }

    /// With no PID given (a background operation owns the postmaster), the
    /// deadline fences the process named by the data directory's
    /// `postmaster.pid`, and only a process of that directory.
    #[test]
    fn fences_the_postmaster_of_the_data_dir_when_no_pid_is_known() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        // A stand-in postmaster whose command line names "postgres" and the
        // directory, as `postmaster_of` requires of a real one.
        let script = format!("sleep 30; : postgres -D {}", data.display());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .spawn()
            .expect("spawn stand-in");
        let pid = child.id();
        // A pid file naming another process (the test itself) is not fenced.
        std::fs::write(
            data.join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("pid file");
        let dog = Watchdog::start(Some(data.clone()), None).expect("thread starts");
        dog.arm(Instant::now() + Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(
            dog.fired(),
            0,
            "a process of another directory is left alone"
        );

        std::fs::write(data.join("postmaster.pid"), format!("{pid}\n")).expect("pid file");
        dog.arm(Instant::now() + Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(dog.fired(), 1);
        let status = status.expect("the stand-in postmaster was fenced");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(Signal::SIGQUIT as i32)
        );
    }
}
