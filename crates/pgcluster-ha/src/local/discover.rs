//! Finding local clusters without being told where: every data directory
//! below [`Layout::default_parent`] that holds a `cluster.json`, and whether
//! anything of it runs. The CLI's `status`, `switchover`, `failover`, `down`
//! and `psql` use [`pick`] when neither `--name` nor `--data-dir` is given.
//!
//! ```text
//! default_parent()/*/cluster.json --clusters_in--> [Found {running}] --pick--> One | Several | NoneRunning
//! ```

use std::path::Path;

use super::layout::{ClusterRecord, Layout};
use super::prepare::live_pids;

/// A local cluster found on disk.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its layout.
    pub layout: Layout,
    /// Its record.
    pub record: ClusterRecord,
    /// Whether any of its processes runs (see [`is_running`]).
    pub running: bool,
}

/// Whether anything of the cluster runs: a recorded agent, router or `up`
/// process that is still ours, or a PostgreSQL server in one of its member
/// directories (an agent killed a moment ago leaves one until its fencer
/// stops it).
pub fn is_running(layout: &Layout, record: &ClusterRecord) -> bool {
    !live_pids(layout, record).is_empty()
        || record.members.iter().any(|m| {
            crate::agent::supervise::postmaster_of(&layout.member_layout(&m.name).data_dir)
                .is_some()
        })
}

/// Every cluster with a readable `cluster.json` in a directory directly
/// below `parent`, by name; unreadable or damaged records are left out
/// (`--data-dir` still reaches them, with the reason).
pub fn clusters_in(parent: &Path) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<Found> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let layout = Layout::new(e.path());
            let record = layout.read_record().ok()?;
            let running = is_running(&layout, &record);
            Some(Found {
                layout,
                record,
                running,
            })
        })
        .collect();
    found.sort_by(|a, b| (&a.record.name, a.layout.root()).cmp(&(&b.record.name, b.layout.root())));
    found
}

/// Which cluster a command without `--name`/`--data-dir` means.
#[derive(Clone, Debug)]
pub enum Pick {
    /// Exactly one cluster runs: this one.
    One(Found),
    /// Several run (by name): the user must choose.
    Several(Vec<Found>),
    /// None runs; these exist but are stopped (maybe none).
    NoneRunning(Vec<Found>),
}

/// The running cluster when there is exactly one; otherwise what there is.
pub fn pick(found: Vec<Found>) -> Pick {
    let (mut running, stopped): (Vec<Found>, Vec<Found>) =
        found.into_iter().partition(|f| f.running);
    match running.len() {
        0 => Pick::NoneRunning(stopped),
        1 => Pick::One(running.remove(0)),
        _ => Pick::Several(running),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, running: bool) -> Found {
        let mut record = ClusterRecord::demo(1);
        record.name = name.to_owned();
        Found {
            layout: Layout::new(format!("/data/{name}")),
            record,
            running,
        }
    }

    fn names(found: &[Found]) -> Vec<&str> {
        found.iter().map(|f| f.record.name.as_str()).collect()
    }

    /// One running cluster is chosen however many stopped ones lie beside
    /// it; several running are never guessed between; none running says
    /// which exist.
    #[test]
    fn pick_takes_the_only_running_cluster_and_never_guesses() {
        match pick(vec![found("a", false), found("b", true), found("c", false)]) {
            Pick::One(f) => assert_eq!(f.record.name, "b"),
            other => panic!("expected b: {other:?}"),
        }
        match pick(vec![found("a", true), found("b", false), found("c", true)]) {
            Pick::Several(f) => assert_eq!(names(&f), ["a", "c"]),
            other => panic!("expected a and c: {other:?}"),
        }
        match pick(vec![found("a", false), found("b", false)]) {
            Pick::NoneRunning(f) => assert_eq!(names(&f), ["a", "b"]),
            other => panic!("expected none running: {other:?}"),
        }
        assert!(matches!(pick(vec![]), Pick::NoneRunning(f) if f.is_empty()));
    }

    /// Only directories with a readable record count, sorted by name; a
    /// record whose processes are gone is not running.
    #[test]
    fn clusters_in_reads_records_below_the_parent() {
        let parent = tempfile::tempdir().expect("temp dir");
        for name in ["zeta", "alpha"] {
            let layout = Layout::new(parent.path().join(name));
            std::fs::create_dir_all(layout.root()).expect("mkdir");
            let mut record = ClusterRecord::demo(1);
            record.name = name.to_owned();
            // An agent that has exited (no such PID).
            record.members[0].agent_pid = Some(u32::MAX);
            layout.write_record(&record).expect("write");
        }
        std::fs::create_dir_all(parent.path().join("empty")).expect("mkdir");
        std::fs::create_dir_all(parent.path().join("damaged")).expect("mkdir");
        std::fs::write(parent.path().join("damaged/cluster.json"), "{").expect("write");
        let found = clusters_in(parent.path());
        assert_eq!(names(&found), ["alpha", "zeta"]);
        assert!(found.iter().all(|f| !f.running));
        assert!(clusters_in(&parent.path().join("missing")).is_empty());
    }
}
