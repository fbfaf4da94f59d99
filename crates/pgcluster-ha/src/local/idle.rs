//! What an idle local cluster costs, for `pgcluster bench idle`: CPU time
//! (utime + stime from `/proc/PID/stat`) over a window and PSS
//! (`/proc/PID/smaps_rollup`) of each agent, its fencer, its PostgreSQL
//! server (the postmaster and all its children together) and the router,
//! against the goals of an idle cluster.
//!
//! ```text
//! cluster.json + postmaster.pid + /proc --processes()--> groups --measure(window)--> rows
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::layout::{ClusterRecord, Layout};

/// The most CPU an idle agent may use per minute.
pub const AGENT_GOAL: Duration = Duration::from_millis(150);
/// The most CPU an idle router may use per minute.
pub const ROUTER_GOAL: Duration = Duration::from_millis(20);

/// What a measured group of processes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Role {
    /// `pgcluster agent`.
    Agent,
    /// `pgcluster fence`, the agent's fencing process.
    Fencer,
    /// The postmaster and its children (backends, WAL sender/receiver, ...).
    Postgres,
    /// `pgcluster router` (or `pgcluster up` in the foreground, which routes).
    Router,
}

impl Role {
    /// The CPU goal per idle minute, if this role has one.
    pub fn goal(self) -> Option<Duration> {
        match self {
            Self::Agent => Some(AGENT_GOAL),
            Self::Router => Some(ROUTER_GOAL),
            Self::Fencer | Self::Postgres => None,
        }
    }

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Fencer => "fencer",
            Self::Postgres => "postgres",
            Self::Router => "router",
        }
    }
}

/// Processes measured together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// What they are.
    pub role: Role,
    /// Whose (`None`: the cluster's).
    pub member: Option<String>,
    /// The main PID (agent, fencer, postmaster, router).
    pub pid: u32,
    /// Whether the main PID's children count too (PostgreSQL's processes).
    pub with_children: bool,
}

/// One measured group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// What it is.
    pub role: Role,
    /// Whose.
    pub member: Option<String>,
    /// The main PID.
    pub pid: u32,
    /// Processes measured (the main one and, for PostgreSQL, its children).
    pub processes: usize,
    /// CPU time used, scaled to one minute, in ms.
    pub cpu_ms_per_min: f64,
    /// Proportional set size at the end of the window, in KiB.
    pub pss_kib: u64,
    /// The goal in ms per minute, if any.
    pub goal_ms_per_min: Option<f64>,
}

impl Row {
    /// Measured CPU over the goal (1.0: exactly the goal).
    pub fn ratio(&self) -> Option<f64> {
        self.goal_ms_per_min.map(|g| self.cpu_ms_per_min / g)
    }
}

/// Failures of the idle measurement.
#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    /// A process of the cluster is not running.
    #[error(
        "failed to find the {what} of cluster {cluster}; check that it runs (`pgcluster status`) and start it with `pgcluster up`"
    )]
    NotRunning {
        /// Which process.
        what: String,
        /// The cluster.
        cluster: String,
    },
    /// A process ended during the window.
    #[error(
        "failed to measure {what} (PID {pid}): it ended during the window; the cluster was not idle, measure again"
    )]
    Ended {
        /// Which process.
        what: String,
        /// Its PID.
        pid: u32,
    },
}

impl IdleError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotRunning { .. } => "not_running",
            Self::Ended { .. } => "ended",
        }
    }
}

/// The processes of the cluster in `layout`: per member its agent, fencer
/// and PostgreSQL server, and the router.
pub fn processes(layout: &Layout, record: &ClusterRecord) -> Result<Vec<Group>, IdleError> {
    let missing = |what: String| IdleError::NotRunning {
        what,
        cluster: record.name.clone(),
    };
    let parents = parent_map();
    let mut groups = Vec::new();
    for m in &record.members {
        let agent = m
            .agent_pid
            .filter(|p| super::prepare::pid_is_ours(*p, Some(layout.root())))
            .ok_or_else(|| missing(format!("agent of {}", m.name)))?;
        let member = Some(m.name.clone());
        groups.push(Group {
            role: Role::Agent,
            member: member.clone(),
            pid: agent,
            with_children: false,
        });
        if let Some(fencer) = children(&parents, agent)
            .into_iter()
            .find(|p| cmdline(*p).is_some_and(|c| c.contains("fence")))
        {
            groups.push(Group {
                role: Role::Fencer,
                member: member.clone(),
                pid: fencer,
                with_children: false,
            });
        }
        let pid_file = layout
            .member_layout(&m.name)
            .data_dir
            .join("postmaster.pid");
        let postmaster = postmaster_pid(&pid_file)
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .ok_or_else(|| missing(format!("PostgreSQL server of {}", m.name)))?;
        groups.push(Group {
            role: Role::Postgres,
            member,
            pid: postmaster,
            with_children: true,
        });
    }
    let router = record
        .router_pid
        .or(record.up_pid)
        .filter(|p| super::prepare::pid_is_ours(*p, None))
        .ok_or_else(|| missing("router".to_owned()))?;
    groups.push(Group {
        role: Role::Router,
        member: None,
        pid: router,
        with_children: false,
    });
    Ok(groups)
}

/// Measures `groups` over `window`: CPU from a sample at its start and one
/// at its end, PSS at its end. Children of a group that started during the
/// window count from zero; a main process that ended is an error.
pub async fn measure(groups: &[Group], window: Duration) -> Result<Vec<Row>, IdleError> {
    let sample = |g: &Group| -> Result<BTreeMap<u32, u64>, IdleError> {
        let ended = || IdleError::Ended {
            what: describe(g),
            pid: g.pid,
        };
        let mut pids = vec![g.pid];
        if g.with_children {
            pids.extend(children(&parent_map(), g.pid));
        }
        let mut out = BTreeMap::new();
        for pid in pids {
            match cpu_ticks(pid) {
                Some(t) => {
                    out.insert(pid, t);
                }
                None if pid == g.pid => return Err(ended()),
                None => {}
            }
        }
        Ok(out)
    };
    let before: Vec<_> = groups.iter().map(sample).collect::<Result<_, _>>()?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after: Vec<_> = groups.iter().map(sample).collect::<Result<_, _>>()?;
    let elapsed = started.elapsed().as_secs_f64();
    let tick_ms = 1000.0 / clock_ticks_per_second();
    Ok(groups
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(g, (b, a))| {
            let ticks: u64 = a
                .iter()
                .map(|(pid, t)| t.saturating_sub(b.get(pid).copied().unwrap_or(0)))
                .sum();
            Row {
                role: g.role,
                member: g.member.clone(),
                pid: g.pid,
                processes: a.len(),
                cpu_ms_per_min: ticks as f64 * tick_ms * 60.0 / elapsed,
                pss_kib: a.keys().filter_map(|p| pss_kib(*p)).sum(),
                goal_ms_per_min: g.role.goal().map(|d| d.as_secs_f64() * 1000.0),
            }
        })
        .collect())
}

fn describe(g: &Group) -> String {
    match &g.member {
        Some(m) => format!("the {} of {m}", g.role.name()),
        None => format!("the {}", g.role.name()),
    }
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime (fields 14 and 15) from the text of `/proc/PID/stat`. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted after its last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The parent PID (field 4) from the text of `/proc/PID/stat`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// PSS of `pid` in KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    parse_pss(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in KiB.
pub fn parse_pss(rollup: &str) -> Option<u64> {
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The smallest CPU difference a window of `window` can show, in ms per
/// minute: one clock tick of `/proc` (10 ms) scaled to a minute.
pub fn resolution_ms_per_min(window: Duration) -> f64 {
    1000.0 / clock_ticks_per_second() * 60.0 / window.as_secs_f64().max(0.001)
}

fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as f64,
        // USER_HZ, what /proc reports in on every Linux architecture we run on.
        _ => 100.0,
    }
}

/// Every process's parent.
fn parent_map() -> BTreeMap<u32, u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat_ppid(&stat)?))
        })
        .collect()
}

/// All descendants of `pid`.
fn children(parents: &BTreeMap<u32, u32>, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    // Bounded: each PID is visited at most once.
    while let Some(p) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, pp)| **pp == p) {
            if !out.contains(child) && *child != pid {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

fn postmaster_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The table `pgcluster bench idle` prints.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<8} {:<12} {:>8} {:>6} {:>12} {:>8} {:>12} {:>6}\n",
        "process", "member", "pid", "procs", "CPU ms/min", "PSS MiB", "goal ms/min", "ratio"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<8} {:<12} {:>8} {:>6} {:>12.1} {:>8.1} {:>12} {:>6}\n",
            r.role.name(),
            r.member.as_deref().unwrap_or("-"),
            r.pid,
            r.processes,
            r.cpu_ms_per_min,
            r.pss_kib as f64 / 1024.0,
            r.goal_ms_per_min
                .map_or_else(|| "-".to_owned(), |g| format!("{g:.0}")),
            r.ratio()
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU and parent come from the fields after the command name, whatever
    /// the command name holds.
    #[test]
    fn parses_stat_fields_after_the_command_name() {
        let stat = "4242 (postgres: a) b) S 17 4242 4242 0 -1 4194560 1043 0 0 0 \
                    25 7 0 0 20 0 1 0 8931 226263040 4013 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(32));
        assert_eq!(parse_stat_ppid(stat), Some(17));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    /// PSS is read from its own line, in KiB.
    #[test]
    fn parses_pss() {
        let rollup = "55d0c-7ffd0 ---p 00000000 00:00 0 [rollup]\nRss:  9120 kB\nPss:  4711 kB\nPss_Anon: 3000 kB\n";
        assert_eq!(parse_pss(rollup), Some(4711));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    /// Descendants are found through any depth, each once.
    #[test]
    fn finds_all_descendants() {
        let parents: BTreeMap<u32, u32> = [(2, 1), (3, 2), (4, 2), (5, 3), (6, 9)].into();
        let mut c = children(&parents, 2);
        c.sort_unstable();
        assert_eq!(c, vec![3, 4, 5]);
    }

    /// The ratio is measured over goal; roles without a goal have none.
    #[test]
    fn ratio_against_the_goal() {
        let row = |role: Role, cpu| Row {
            role,
            member: None,
            pid: 1,
            processes: 1,
            cpu_ms_per_min: cpu,
            pss_kib: 2048,
            goal_ms_per_min: role.goal().map(|d| d.as_secs_f64() * 1000.0),
        };
        assert_eq!(row(Role::Agent, 75.0).ratio(), Some(0.5));
        assert_eq!(row(Role::Router, 40.0).ratio(), Some(2.0));
        assert_eq!(row(Role::Postgres, 40.0).ratio(), None);
        assert!(table(&[row(Role::Router, 40.0)]).contains("2.00"));
    }
}
