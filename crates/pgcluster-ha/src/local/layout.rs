//! The on-disk layout of a local cluster (`pgcluster up`) below its data
//! directory, and `cluster.json`, the record every local command reads.
//!
//! ```text
//! <data-dir>/
//!   cluster.json              spec, members, ports, PIDs, OS user, binaries
//!   secrets/superuser.password, secrets/role-<name>.password   (0600)
//!   pgpass                    every login for the clients (0600, the user who ran `up`; see `connect`)
//!   coordinator/              the LocalCoordinator's files
//!   members/<name>/           data/, run/, log/postgresql.log, pgpass, agent.log
//!   router.log
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::postgres;

/// The record file's name.
pub const CLUSTER_FILE: &str = "cluster.json";

/// Default base port: rw = base, ro = base + 1, PostgreSQL = base + 8 + i,
/// agent APIs = base + 18 + i (15432, 15433, 15440.., 15450..). Chosen not to
/// collide with a system PostgreSQL on 5432.
pub const DEFAULT_BASE_PORT: u16 = 15432;

/// One member in `cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Member name (`<cluster>-<i>`).
    pub name: String,
    /// PostgreSQL's port.
    pub pg_port: u16,
    /// The agent API's port.
    pub api_port: u16,
    /// The agent's PID while it runs.
    pub agent_pid: Option<u32>,
    /// How often the supervisor restarted this member's agent since `up`.
    #[serde(default)]
    pub restarts: u32,
}

/// `cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Cluster name.
    pub name: String,
    /// The spec as given (YAML).
    pub spec: String,
    /// Members in ordinal order.
    pub members: Vec<MemberRecord>,
    /// The router's rw port.
    pub rw_port: u16,
    /// The router's ro port.
    pub ro_port: u16,
    /// The detached router's PID (`up --detach`).
    pub router_pid: Option<u32>,
    /// The foreground `pgcluster up` process's PID.
    pub up_pid: Option<u32>,
    /// The OS user PostgreSQL runs as.
    pub os_user: String,
    /// The PostgreSQL binaries directory.
    pub pg_bin: PathBuf,
    /// The superuser role.
    pub superuser: String,
    /// `down` is stopping the cluster: nothing restarts an agent.
    #[serde(default)]
    pub stopping: bool,
}

impl ClusterRecord {
    /// Every PID recorded (agents, router, up).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.agent_pid)
            .chain(self.router_pid)
            .chain(self.up_pid)
            .collect()
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&MemberRecord> {
        self.members.iter().find(|m| m.name == name)
    }

    /// A record of cluster `demo` with `members` members (`demo-0`...,
    /// pg ports from 20000, api ports from 21000), nothing running: a test fixture.
    #[cfg(test)]
    pub(crate) fn demo(members: u16) -> Self {
        Self {
            name: "demo".into(),
            spec: String::new(),
            members: (0..members)
                .map(|i| MemberRecord {
                    name: format!("demo-{i}"),
                    pg_port: 20000 + i,
                    api_port: 21000 + i,
                    agent_pid: None,
                    restarts: 0,
                })
                .collect(),
            rw_port: 1,
            ro_port: 2,
            router_pid: None,
            up_pid: None,
            os_user: "x".into(),
            pg_bin: PathBuf::new(),
            superuser: "postgres".into(),
            stopping: false,
        }
    }
}

/// Ports of a local cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    /// rw endpoint.
    pub rw: u16,
    /// ro endpoint.
    pub ro: u16,
    /// (PostgreSQL, agent API) per member.
    pub members: Vec<(u16, u16)>,
}

impl Ports {
    /// The ports derived from `base` for `instances` members.
    pub fn from_base(base: u16, instances: u32) -> Self {
        let members = (0..instances as u16)
            .map(|i| (base + 8 + i, base + 18 + i))
            .collect();
        Self {
            rw: base,
            ro: base + 1,
            members,
        }
    }

    /// Every port, for the "port in use" check.
    pub fn all(&self) -> Vec<u16> {
        let mut v = vec![self.rw, self.ro];
        for (pg, api) in &self.members {
            v.push(*pg);
            v.push(*api);
        }
        v
    }
}

/// Errors reading or writing the layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file could not be read or written.
    #[error("failed to {action} {}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `cluster.json` is not valid.
    #[error("failed to parse {}; it was not written by this pgcluster, or is damaged", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No local cluster lives there.
    #[error("failed to find a local cluster in {}: no {CLUSTER_FILE}; start one with `pgcluster up` or pass --data-dir", .dir.display())]
    NoCluster {
        /// The data directory.
        dir: PathBuf,
    },
}

impl LayoutError {
    /// A bounded label.
    pub fn category(&self) -> &'static str {
        match self {
            LayoutError::Io { .. } => "io",
            LayoutError::Corrupt { .. } => "corrupt",
            LayoutError::NoCluster { .. } => "no_cluster",
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let path = path.to_owned();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// The tmpfs the coordinator's runtime state lives on.
const RUNTIME_PARENT: &str = "/dev/shm";

/// The paths of one local cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default data directory of cluster `name`: `$XDG_DATA_HOME/pgcluster/<name>`,
    /// else `~/.local/share/pgcluster/<name>`; as root (PostgreSQL's
    /// unprivileged user cannot enter `/root`) `/var/lib/pgcluster/<name>`.
    pub fn default_root(name: &str) -> PathBuf {
        Self::default_parent().join(name)
    }

    /// Where the default data directories live, one per cluster name
    /// (see [`Layout::default_root`]); the commands that find "the" running
    /// cluster look here.
    pub fn default_parent() -> PathBuf {
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(xdg).join("pgcluster");
        }
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/pgcluster");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/share/pgcluster")
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `cluster.json`.
    pub fn cluster_file(&self) -> PathBuf {
        self.root.join(CLUSTER_FILE)
    }

    /// The coordinator's directory.
    pub fn coordinator_dir(&self) -> PathBuf {
        self.root.join("coordinator")
    }

    /// Where the coordinator keeps its runtime state: a directory on tmpfs
    /// named for the coordinator directory's identity (device and inode, so
    /// a data directory re-created at the same path never sees an old
    /// cluster's state). `None` without `/dev/shm` or before the coordinator
    /// directory exists: everything then stays in the coordinator directory.
    pub fn runtime_dir(&self) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let shm = Path::new(RUNTIME_PARENT);
        if !shm.is_dir() {
            return None;
        }
        let meta = std::fs::metadata(self.coordinator_dir()).ok()?;
        Some(shm.join(format!("pgcluster-{:x}-{:x}", meta.dev(), meta.ino())))
    }

    /// Removes the coordinator's runtime state (when no agent runs: `up`
    /// before starting them, `down` after stopping them); the durable copy
    /// in the coordinator directory stays.
    pub fn clear_runtime(&self) -> Result<(), LayoutError> {
        let Some(dir) = self.runtime_dir() else {
            return Ok(());
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LayoutError::Io {
                action: "remove",
                path: dir,
                source,
            }),
        }
    }

    /// The secrets directory.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// The superuser's password file.
    pub fn superuser_password_file(&self) -> PathBuf {
        self.secrets_dir().join("superuser.password")
    }

    /// An application role's password file.
    pub fn role_password_file(&self, role: &str) -> PathBuf {
        self.secrets_dir().join(format!("role-{role}.password"))
    }

    /// The base directory of member `name`.
    pub fn member_dir(&self, name: &str) -> PathBuf {
        self.root.join("members").join(name)
    }

    /// The PostgreSQL layout of member `name`.
    pub fn member_layout(&self, name: &str) -> postgres::Layout {
        postgres::Layout::under(&self.member_dir(name))
    }

    /// The agent's log of member `name`.
    pub fn agent_log(&self, name: &str) -> PathBuf {
        self.member_dir(name).join("agent.log")
    }

    /// The detached router's log.
    pub fn router_log(&self) -> PathBuf {
        self.root.join("router.log")
    }

    /// Reads `cluster.json`.
    pub fn read_record(&self) -> Result<ClusterRecord, LayoutError> {
        let path = self.cluster_file();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LayoutError::NoCluster {
                    dir: self.root.clone(),
                });
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&text).map_err(|source| LayoutError::Corrupt { path, source })
    }

    /// Writes `cluster.json` atomically.
    pub fn write_record(&self, record: &ClusterRecord) -> Result<(), LayoutError> {
        let path = self.cluster_file();
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .root
            .join(format!("{CLUSTER_FILE}.{}.{seq}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(record)
            .expect("the cluster record serializes because it is plain data");
        std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("replace", &path))
    }

    /// Reads `cluster.json`, applies `f` and writes it back, holding an
    /// exclusive lock on `cluster.json.lock` throughout: `up` and the agents
    /// it starts update the record at the same time, and without the lock
    /// one's update (say the router's PID) could be lost to another's.
    pub fn update_record(&self, f: impl FnOnce(&mut ClusterRecord)) -> Result<(), LayoutError> {
        let lock_path = self.root.join(format!("{CLUSTER_FILE}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        lock.lock().map_err(io("lock", &lock_path))?;
        let mut record = self.read_record()?;
        f(&mut record);
        self.write_record(&record)
    }

    /// The password in `file`, creating it (0600, random) when missing.
    pub fn ensure_password(&self, file: &Path) -> Result<String, LayoutError> {
        if let Ok(text) = std::fs::read_to_string(file) {
            return Ok(text.trim().to_owned());
        }
        let dir = file.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        set_mode(dir, 0o700).map_err(io("set permissions of", dir))?;
        let password = random_password().map_err(io("read", Path::new("/dev/urandom")))?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(file)
            .map_err(io("create", file))?;
        f.write_all(format!("{password}\n").as_bytes())
            .map_err(io("write", file))?;
        Ok(password)
    }

    /// Reads the password in `file`.
    pub fn read_password(&self, file: &Path) -> Result<String, LayoutError> {
        std::fs::read_to_string(file)
            .map(|t| t.trim().to_owned())
            .map_err(io("read", file))
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// 32 random alphanumeric characters from /dev/urandom.
fn random_password() -> std::io::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default ports stay clear of a system PostgreSQL on 5432 and of each other.
    #[test]
    fn default_ports_are_distinct() {
        let p = Ports::from_base(DEFAULT_BASE_PORT, 9);
        let mut all = p.all();
        assert_eq!((p.rw, p.ro), (15432, 15433));
        assert_eq!(p.members[0], (15440, 15450));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2 + 18);
        assert!(!all.contains(&5432));
    }

    /// The runtime directory is named for the coordinator directory's
    /// identity (none before it exists) and `clear_runtime` removes it.
    #[test]
    fn runtime_dir_follows_the_coordinator_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        assert_eq!(layout.runtime_dir(), None);
        std::fs::create_dir_all(layout.coordinator_dir()).expect("mkdir");
        let Some(run) = layout.runtime_dir() else {
            return; // no /dev/shm here: everything stays in the data dir
        };
        assert!(run.starts_with(RUNTIME_PARENT));
        std::fs::create_dir_all(run.join("members")).expect("mkdir");
        layout.clear_runtime().expect("clear");
        assert!(!run.exists());
        layout.clear_runtime().expect("clearing nothing is fine");
        let other = tempfile::tempdir().expect("tempdir");
        let second = Layout::new(other.path());
        std::fs::create_dir_all(second.coordinator_dir()).expect("mkdir");
        assert_ne!(
            second.runtime_dir(),
            Some(run),
            "another cluster, another dir"
        );
    }

    /// Local mode keeps each member's server log in its own file, where
    /// users and the tests read it (only pods send it to stderr).
    #[test]
    fn member_server_log_is_a_file_in_the_member_dir() {
        let layout = Layout::new("/data/c");
        assert_eq!(
            layout.member_layout("a").server_log,
            postgres::ServerLog::File("/data/c/members/a/log/postgresql.log".into())
        );
    }

    /// Passwords are generated once with mode 0600 and then reused.
    #[test]
    fn password_files_are_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        let file = layout.superuser_password_file();
        let first = layout.ensure_password(&file).expect("created");
        assert_eq!(first.len(), 32);
        let mode = std::fs::metadata(&file)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(layout.ensure_password(&file).expect("read back"), first);
    }

    /// Concurrent updates of different fields all land (no lost update):
    /// eight writers each set their own member's PID twenty times.
    #[test]
    fn concurrent_updates_are_not_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        let record = ClusterRecord::demo(8);
        layout.write_record(&record).expect("write");
        std::thread::scope(|s| {
            for i in 0..8usize {
                let layout = &layout;
                s.spawn(move || {
                    for round in 1..=20u32 {
                        layout
                            .update_record(|r| {
                                r.members[i].agent_pid = Some(round * 100 + i as u32)
                            })
                            .expect("update");
                    }
                });
            }
        });
        let back = layout.read_record().expect("read");
        for (i, m) in back.members.iter().enumerate() {
            assert_eq!(m.agent_pid, Some(2000 + i as u32), "{}", m.name);
        }
    }
}
