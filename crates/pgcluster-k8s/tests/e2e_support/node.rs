//! The node's side of the end-to-end tests: the processes of a pod's
//! container found through its cgroup on the node (`scripts/test-k8s`
//! runs the kubelet with cgroup root `/<netns>`, cgroupfs driver), signals
//! to them by PID (a pause is always resumed, by a drop guard), the API
//! server's PID from the control plane's state directory, and threads that
//! run in the node's network namespace (pod IPs and Service ClusterIPs are
//! routed there, not on the host).
//!
//! ```text
//! Pod status containerID --find--> /sys/fs/cgroup/pids/<netns>/kubepods/.../<id>/cgroup.procs --> PIDs
//! Paused::stop(pids) --SIGSTOP--> ... drop --SIGCONT-->
//! in_node_net(f) --thread: setns(/run/netns/<netns>) + current-thread runtime--> f()
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The node's network namespace (also the kubelet's cgroup root).
pub const NETNS_ENV: &str = "PGCLUSTER_E2E_NETNS";
/// The control plane's state directory (PID files, logs).
pub const STATE_ENV: &str = "PGCLUSTER_E2E_STATE";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is unset: scripts/test-k8s sets it"))
}

/// A process of a container, as seen on the node.
#[derive(Clone, Debug)]
pub struct Proc {
    /// Its PID on the node.
    pub pid: i32,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
}

/// The ID containerd gave container `container` of `pod` (from the pod's
/// status), or `None` while it has none (not started yet).
pub fn container_id(pod: &Pod, container: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)?
        .container_id
        .as_ref()?
        .rsplit_once("://")
        .map(|(_, id)| id.to_owned())
}

/// The directory named `id` below `dir`, at most `depth` levels down.
fn find_dir(dir: &Path, id: &str, depth: u32) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if entry.file_name().to_str() == Some(id) {
                return Some(entry.path());
            }
            subdirs.push(entry.path());
        }
    }
    if depth == 0 {
        return None;
    }
    subdirs.iter().find_map(|d| find_dir(d, id, depth - 1))
}

/// The processes of container `container` of `pod`, read from its cgroup
/// in the `pids` hierarchy below the kubelet's cgroup root. Empty when the
/// container has no cgroup (not started, or gone).
pub fn container_processes(pod: &Pod, container: &str) -> Vec<Proc> {
    let Some(id) = container_id(pod, container) else {
        return Vec::new();
    };
    let root = Path::new("/sys/fs/cgroup/pids").join(env(NETNS_ENV));
    let Some(dir) = find_dir(&root, &id, 4) else {
        return Vec::new();
    };
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    procs
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Some(Proc { pid, cmdline })
        })
        .collect()
}

/// Sends `signal` to `pid`; a process already gone is no error.
pub fn signal(pid: i32, signal: Signal) {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => panic!("kill -{signal} {pid}: {e}"),
    }
}

/// Processes paused with SIGSTOP; dropping (or [`Paused::resume`]) sends
/// SIGCONT, so a failing test never leaves them stopped.
pub struct Paused {
    what: String,
    pids: Vec<i32>,
    /// When they were stopped.
    pub since: Instant,
}

impl Paused {
    /// SIGSTOP to every PID in `pids`.
    pub fn stop(what: &str, pids: Vec<i32>) -> Self {
        assert!(!pids.is_empty(), "nothing to pause for {what}");
        // The guard exists before the first signal: a panic in between resumes.
        let guard = Self {
            what: what.to_owned(),
            pids,
            since: Instant::now(),
        };
        for &pid in &guard.pids {
            signal(pid, Signal::SIGSTOP);
        }
        eprintln!("paused {} (pids {:?})", guard.what, guard.pids);
        guard
    }

    /// SIGCONT; returns how long they were stopped.
    pub fn resume(self) -> Duration {
        self.since.elapsed()
        // Drop sends SIGCONT.
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &pid in &self.pids {
            signal(pid, Signal::SIGCONT);
        }
        eprintln!(
            "resumed {} after {:.1}s",
            self.what,
            self.since.elapsed().as_secs_f64()
        );
    }
}

/// The kube-apiserver's PID (written by `pgcluster-testenv up`), checked
/// to be a running kube-apiserver.
pub fn apiserver_pid() -> i32 {
    let path = Path::new(&env(STATE_ENV)).join("kube-apiserver.pid");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let pid: i32 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: not a PID ({e}): {text:?}", path.display()));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("kube-apiserver"),
        "PID {pid} from {} is not a running kube-apiserver",
        path.display()
    );
    pid
}

/// Runs `f` on a new thread that entered the node's network namespace, on
/// a current-thread runtime of its own; returns its handle.
pub fn in_node_net<F, Fut, T>(name: &str, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let netns = Path::new("/run/netns").join(env(NETNS_ENV));
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let file = std::fs::File::open(&netns)
                .unwrap_or_else(|e| panic!("opening {}: {e}", netns.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {}: {e}", netns.display()));
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds")
                .block_on(f())
        })
        .expect("spawning a thread works")
}

/// Runs `f` in the node's network namespace and waits for its result
/// without blocking the caller's runtime.
pub async fn node_net<F, Fut, T>(name: &str, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let handle = in_node_net(name, f);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .expect("the joining task is not cancelled")
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
