//! [`LocalCoordinator`]: the coordinator for `pgcluster up`, shared by several
//! agent processes on one machine through two directories: a durable one in
//! the cluster's data directory and a runtime one on tmpfs (`/dev/shm`).
//!
//! Why two: on a busy disk (a build's writeback, a checkpoint) even a rename
//! without fsync waits for the filesystem's journal, measured here at over a
//! second, and an agent whose loop stalls that long misses its renewals or
//! looks dead to its peers. tmpfs never waits for a disk.
//!
//! * The lease and the switchover request (`coordinator.json`) live in the
//!   runtime directory, the state every reader sees. Writers take an
//!   exclusive advisory lock (a lock file in the runtime directory), read,
//!   apply the same semantics as [`MemoryCoordinator`] and rename a new file
//!   into place. A process that dies holding the lock releases it with its
//!   file descriptors, so a crashed agent can never wedge the others.
//! * Every change other than a plain renewal (holder, term, timeline,
//!   history, standbys, requests) is first written to the durable directory
//!   (temporary file, fsync, rename, fsync of the directory), so that it
//!   survives a machine crash before anyone acts on it. A plain renewal
//!   (only `renewed_at` and `primary_lsn` change, a few times a second) only
//!   goes to the runtime copy: a machine crash that loses it leaves the same
//!   holder, term, timeline and standbys, and every agent restarts and waits
//!   a lease anyway. After a reboot (tmpfs empty) readers fall back to the
//!   durable copy.
//! * Member states are soft: each member republishes every loop and readers
//!   judge freshness by the heartbeat. Each member writes only its own
//!   runtime files, with a temporary file and a rename (readers never see half
//!   a file) but no lock. The state itself (`members/NAME.json`) is rewritten
//!   only when something other than the heartbeat changed; the heartbeat of
//!   every loop is overwritten in place in `beats/NAME` (one fixed-width
//!   line, one write on a file kept open), which readers lay over the state.
//!   So an idle member's loop costs one small write, no new file, and a
//!   watcher of `members/` (the router) is not woken by heartbeats.
//! * Every change other than a plain renewal is also signalled by renaming a
//!   marker into `changes/`, after both copies are written: [`ChangeWatch`]
//!   (inotify) wakes agents and the router on real changes only, instead of
//!   their polling the files.
//!
//! Readers need no lock because rename is atomic. [`LocalCoordinator::open`]
//! keeps both in one directory (tests, machines without `/dev/shm`). A
//! `coordinator.json` written by an older version (members inside it) still
//! loads; its members are dropped at the next lease write.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::memory::MemoryCoordinator;
pub use super::watch::ChangeWatch;
use super::{BoxError, CasOutcome, Coordinator, CoordinatorError};
use crate::machine::{
    ClusterView, LeaseRecord, LeaseVersion, MemberName, MemberState, Millis, SwitchoverRequest,
};

const STATE_FILE: &str = "coordinator.json";
const LOCK_FILE: &str = "coordinator.lock";
const MEMBERS_DIR: &str = "members";
const BEATS_DIR: &str = "beats";
const CHANGES_DIR: &str = "changes";
/// The marker renamed into [`CHANGES_DIR`] after every change of the lease
/// file other than a plain renewal.
const LEASE_CHANGED: &str = "lease";

/// A coordinator stored in directories shared by the agents of one local cluster.
#[derive(Clone, Debug)]
pub struct LocalCoordinator {
    /// Durable: the last non-renewal state, fsynced.
    dir: PathBuf,
    /// Runtime: the current state and member files (the same as `dir` when
    /// opened with [`LocalCoordinator::open`]).
    run: PathBuf,
    timeout: Duration,
    /// Writes of the lease file made durable (fsynced) through this handle.
    durable_writes: Arc<AtomicU64>,
    /// Writes of member state files (not heartbeats) through this handle.
    member_writes: Arc<AtomicU64>,
    /// What this handle published, so that a publication that only moves
    /// the heartbeat rewrites nothing else.
    published: Arc<Mutex<Published>>,
    /// Member files as last read, by path, with the identity they had.
    read_cache: Arc<Mutex<BTreeMap<PathBuf, (FileId, MemberState)>>>,
    /// The runtime directory is on tmpfs: reads and member publications
    /// (never fsynced) run on the caller's thread, not handed to a blocking
    /// thread and back (two thread wake-ups each, most of an idle loop's
    /// cost); lease writes, which may fsync, always are.
    inline: bool,
}

/// A file's inode, modification time (s, ns) and size.
type FileId = (u64, i64, i64, u64);

/// The member states and heartbeat files of one handle's publications.
#[derive(Debug, Default)]
struct Published {
    /// The state last written to each member file.
    states: BTreeMap<MemberName, MemberState>,
    /// Each member's heartbeat file, kept open.
    beats: BTreeMap<MemberName, File>,
}

/// A heartbeat as stored in `beats/NAME`: a line of fixed width, so that
/// each write replaces the whole previous one.
fn beat_line(heartbeat: u64, last_seen: Millis) -> String {
    format!("{heartbeat:020} {:020}\n", last_seen.0)
}

/// The heartbeat and time of a `beats/NAME` line.
fn parse_beat(text: &str) -> Option<(u64, Millis)> {
    let (hb, seen) = text.trim_end().split_once(' ')?;
    Some((hb.parse().ok()?, Millis(seen.parse().ok()?)))
}

impl LocalCoordinator {
    /// A coordinator wholly in `dir` (created when missing); each call gives
    /// up after `timeout`.
    pub fn open(dir: impl Into<PathBuf>, timeout: Duration) -> Result<Self, CoordinatorError> {
        let dir = dir.into();
        Self::open_split(dir.clone(), dir, timeout)
    }

    /// A coordinator with its durable state in `dir` and its runtime state in
    /// `run` (created when missing, private to this user: it must not be a
    /// directory someone else prepared, `/dev/shm` being world-writable).
    pub fn open_split(
        dir: impl Into<PathBuf>,
        run: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, CoordinatorError> {
        let (dir, run) = (dir.into(), run.into());
        fs::create_dir_all(&dir).map_err(|e| unavailable(&dir, e))?;
        if run != dir {
            private_dir(&run)?;
        }
        for sub in [MEMBERS_DIR, BEATS_DIR, CHANGES_DIR] {
            let path = run.join(sub);
            fs::create_dir_all(&path).map_err(|e| unavailable(&path, e))?;
        }
        let inline = nix::sys::statfs::statfs(&run)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        Ok(Self {
            dir,
            run,
            timeout,
            durable_writes: Default::default(),
            member_writes: Default::default(),
            published: Default::default(),
            read_cache: Default::default(),
            inline,
        })
    }

    /// How many lease-file writes through this handle were fsynced.
    pub fn durable_writes(&self) -> u64 {
        self.durable_writes.load(Ordering::Relaxed)
    }

    /// How many member state files (heartbeats aside) this handle wrote.
    pub fn member_writes(&self) -> u64 {
        self.member_writes.load(Ordering::Relaxed)
    }

    /// Starts watching for changes: of the lease and switchover request
    /// (other than renewals), and with `members` also of member states
    /// (other than heartbeats). Fails when inotify is unavailable (e.g. its
    /// per-user limit is reached); callers then poll.
    pub fn watch(&self, members: bool) -> Result<ChangeWatch, CoordinatorError> {
        let mut dirs = vec![self.run.join(CHANGES_DIR)];
        if members {
            dirs.push(self.run.join(MEMBERS_DIR));
        }
        ChangeWatch::new(&dirs)
    }

    /// The directory holding the durable state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory holding the runtime state.
    pub fn runtime_dir(&self) -> &Path {
        &self.run
    }

    /// Reads the current view without locking (rename makes every read whole).
    pub fn read_now(&self) -> Result<ClusterView, CoordinatorError> {
        let mut view = self.read_lease()?;
        let dir = self.run.join(MEMBERS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(view),
            Err(e) => return Err(unavailable(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| unavailable(&dir, e))?;
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            // A member file cut short by a machine crash (never fsynced) is
            // skipped: its member republishes within a loop.
            if let Some(mut state) = self.read_member(&path) {
                // The heartbeat of every loop lives apart from the state.
                if let Some(stem) = path.file_stem()
                    && let Ok(text) = fs::read_to_string(self.run.join(BEATS_DIR).join(stem))
                    && let Some((heartbeat, last_seen)) = parse_beat(&text)
                {
                    state.heartbeat = heartbeat;
                    state.last_seen = last_seen;
                }
                view.members.insert(state.name.clone(), state);
            }
        }
        Ok(view)
    }

    /// A member file's state. Member files are replaced by rename (a new
    /// inode) and only when they change: one seen before (same inode, time
    /// and size) is not read and parsed again.
    fn read_member(&self, path: &Path) -> Option<MemberState> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).ok()?;
        let id = (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.size());
        let mut cache = self
            .read_cache
            .lock()
            .expect("the read cache lock is never poisoned because nothing panics under it");
        if let Some((seen, state)) = cache.get(path)
            && *seen == id
        {
            return Some(state.clone());
        }
        let state: MemberState = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        cache.insert(path.to_owned(), (id, state.clone()));
        Some(state)
    }

    /// The lease and switchover request (and, in a file written by an older
    /// version, member states): the runtime copy, else (after a reboot) the
    /// durable one.
    fn read_lease(&self) -> Result<ClusterView, CoordinatorError> {
        match read_view_file(&self.run.join(STATE_FILE))? {
            Some(view) => Ok(view),
            None if self.run != self.dir => {
                Ok(read_view_file(&self.dir.join(STATE_FILE))?.unwrap_or_default())
            }
            None => Ok(ClusterView::default()),
        }
    }

    /// Runs `op` on the lease and switchover request under the exclusive
    /// lock and stores the result durably.
    fn update<T>(&self, op: impl FnOnce(&MemoryCoordinator) -> T) -> Result<T, CoordinatorError> {
        let lock = self
            .lock(true)?
            .expect("a waiting lock() returns the lock or an error");
        let out = self.apply(op, true)?;
        drop(lock);
        Ok(out.expect("apply() with durable writes allowed always applies"))
    }

    /// [`Self::update`] on the caller's thread when that is quick: the lock
    /// is free and the change is a plain renewal (no fsync) or none.
    /// `None`: not done, call [`Self::update`] (on a blocking thread).
    fn update_quick<T>(
        &self,
        op: impl FnOnce(&MemoryCoordinator) -> T,
    ) -> Result<Option<T>, CoordinatorError> {
        let Some(lock) = self.lock(false)? else {
            return Ok(None);
        };
        let out = self.apply(op, false)?;
        drop(lock);
        Ok(out)
    }

    /// Under the lock: applies `op` to the stored lease and request and
    /// writes the result. Without `durable`, a change that needs the
    /// durable copy is not applied (`None`).
    fn apply<T>(
        &self,
        op: impl FnOnce(&MemoryCoordinator) -> T,
        durable: bool,
    ) -> Result<Option<T>, CoordinatorError> {
        let mut before = self.read_lease()?;
        let store = MemoryCoordinator::from_view(before.clone());
        let out = op(&store);
        let mut view = store.view();
        view.members.clear();
        before.members.clear();
        // A lost CAS or a no-op clear changes nothing: skip the fsyncs, which
        // cost most under I/O load and hold the lock the longest.
        if view != before {
            if !renewal_only(&before, &view) {
                if !durable {
                    return Ok(None);
                }
                // Durable before anyone can see it, so nobody acts on a
                // state a machine crash could take back.
                write_file(&self.dir, &view, true)?;
                self.durable_writes.fetch_add(1, Ordering::Relaxed);
                if self.run != self.dir {
                    write_file(&self.run, &view, false)?;
                }
                // Both copies are written: wake the watchers.
                self.signal(LEASE_CHANGED)?;
            } else {
                write_file(&self.run, &view, false)?;
            }
        }
        Ok(Some(out))
    }

    /// Publishes `state`: its heartbeat to `beats/NAME` (overwritten in
    /// place), and the rest to `members/NAME.json` only when it changed
    /// (atomic by rename; neither durable). The heartbeat goes first: a
    /// reader that sees the new state also sees a heartbeat at least as new.
    pub fn publish_now(&self, state: &MemberState) -> Result<(), CoordinatorError> {
        use std::os::unix::fs::FileExt;
        let stem = file_stem(&state.name);
        let path = self.run.join(MEMBERS_DIR).join(format!("{stem}.json"));
        let mut published = self
            .published
            .lock()
            .expect("the published-states lock is never poisoned because nothing panics under it");
        // Removed behind our back (a cleared runtime directory): write both
        // files anew.
        let there = path.exists();
        if !there {
            published.beats.remove(&state.name);
        }
        let beat_path = self.run.join(BEATS_DIR).join(&stem);
        if !published.beats.contains_key(&state.name) {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&beat_path)
                .map_err(|e| unavailable(&beat_path, e))?;
            published.beats.insert(state.name.clone(), file);
        }
        let line = beat_line(state.heartbeat, state.last_seen);
        let written = published
            .beats
            .get(&state.name)
            .map(|f| f.write_all_at(line.as_bytes(), 0));
        if let Some(Err(e)) = written {
            published.beats.remove(&state.name);
            return Err(unavailable(&beat_path, e));
        }
        let unchanged = there
            && published
                .states
                .get(&state.name)
                .is_some_and(|prev| same_but_heartbeat(prev, state));
        if !unchanged {
            replace_file(&path, &to_json(state)?)?;
            self.member_writes.fetch_add(1, Ordering::Relaxed);
            published.states.insert(state.name.clone(), state.clone());
        }
        Ok(())
    }

    /// Renames a fresh marker `name` into `changes/`, waking every [`ChangeWatch`].
    fn signal(&self, name: &str) -> Result<(), CoordinatorError> {
        // Written outside the watched directory: only the rename wakes anyone.
        let tmp = self
            .run
            .join(format!("{CHANGES_DIR}-{name}.{}.tmp", std::process::id()));
        let path = self.run.join(CHANGES_DIR).join(name);
        let result = File::create(&tmp).and_then(|_| fs::rename(&tmp, &path));
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            unavailable(&path, e)
        })
    }

    /// Takes the exclusive lock, polling so that a stalled holder turns into a
    /// timeout instead of a blocked agent loop; without `wait`, `None` when
    /// someone else holds it.
    fn lock(&self, wait: bool) -> Result<Option<File>, CoordinatorError> {
        let path = self.run.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable(&path, e))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(TryLockError::WouldBlock) if !wait => return Ok(None),
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

/// The file name of a member's files: its name with anything but ASCII
/// letters, digits, `-` and `_` replaced.
fn file_stem(name: &MemberName) -> String {
    name.as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether two publications of a member differ at most by the heartbeat.
fn same_but_heartbeat(a: &MemberState, b: &MemberState) -> bool {
    let strip = |s: &MemberState| MemberState {
        heartbeat: 0,
        last_seen: Millis(0),
        ..s.clone()
    };
    strip(a) == strip(b)
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, CoordinatorError> {
    serde_json::to_vec(value).map_err(|e| CoordinatorError::Corrupt {
        what: "the member state to write".to_owned(),
        source: Some(Box::new(e)),
    })
}

/// Replaces `path` with `bytes` through a temporary file in the same
/// directory and a rename (readers never see half a file); not durable.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), CoordinatorError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        unavailable(path, e)
    })
}

/// Whether `after` differs from `before` only by a renewal of the same
/// lease: its time and the primary's WAL position.
fn renewal_only(before: &ClusterView, after: &ClusterView) -> bool {
    match (&before.lease, &after.lease) {
        (Some(b), Some(a)) if before.switchover == after.switchover => {
            let mut renewed = a.record.clone();
            renewed.renewed_at = b.record.renewed_at;
            renewed.primary_lsn = b.record.primary_lsn;
            renewed == b.record
        }
        _ => false,
    }
}

/// Reads a state file; `None` when there is none.
fn read_view_file(path: &Path) -> Result<Option<ClusterView>, CoordinatorError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CoordinatorError::Corrupt {
                    what: path.display().to_string(),
                    source: Some(Box::new(e)),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable(path, e)),
    }
}

/// Writes `dir`'s state file: temporary file, rename; when `durable`, the
/// file is fsynced before the rename and the directory after it.
fn write_file(dir: &Path, view: &ClusterView, durable: bool) -> Result<(), CoordinatorError> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(view).map_err(|e| CoordinatorError::Corrupt {
        what: "the cluster view to write".to_owned(),
        source: Some(Box::new(e)),
    })?;
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        unavailable(&path, e)
    })
}

/// Creates `dir` (mode 0700) or checks that the existing one is a real
/// directory owned by this user that nobody else can write.
fn private_dir(dir: &Path) -> Result<(), CoordinatorError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unavailable(dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| unavailable(dir, e))?;
    let euid = nix::unistd::geteuid().as_raw();
    let problem = if !meta.is_dir() {
        Some(format!(
            "{} is not a directory (a symlink or a file); remove it and try again",
            dir.display()
        ))
    } else if meta.uid() != euid {
        Some(format!(
            "{} belongs to user {}, not to this user ({euid}): run pgcluster as the user \
             that started the cluster",
            dir.display(),
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "{} is writable by other users; remove it and try again",
            dir.display()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(CoordinatorError::Unavailable {
            source: Some(problem.into()),
        }),
        None => Ok(()),
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
        if self.inline {
            return self.read_now();
        }
        self.blocking(|c| c.read_now()).await
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        // A renewal (every loop of a primary) is a small write to tmpfs: done
        // here, not handed to a blocking thread and back.
        if self.inline
            && let Some(out) = self.update_quick(|s| s.cas_lease(expected, record.clone()))?
        {
            return Ok(out);
        }
        self.blocking(move |c| c.update(|s| s.cas_lease(expected, record)))
            .await
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        if self.inline {
            return self.publish_now(&state);
        }
        self.blocking(move |c| c.publish_now(&state)).await
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.blocking(move |c| c.update(|s| s.request(request)))
            .await?
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.blocking(move |c| c.update(|s| s.clear(id))).await
    }

    /// Reads are a few small local files: cheap enough every 20 ms (the
    /// fallback when [`Coordinator::changes`] has no inotify).
    fn quick_poll(&self) -> Option<Duration> {
        Some(QUICK_POLL)
    }

    /// Renames into `changes/`, through inotify; `None` when inotify is
    /// unavailable (the agent then polls).
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self.watch(false) {
            Ok(watch) => Some(watch.forward(QUICK_POLL)),
            Err(error) => {
                tracing::warn!(%error, "cannot watch the coordinator; polling it every {QUICK_POLL:?}");
                None
            }
        }
    }
}

/// How often the coordinator is polled when it cannot be watched.
const QUICK_POLL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests;
