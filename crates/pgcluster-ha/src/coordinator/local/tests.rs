//! Tests of the local coordinator: leases, member states and watches on real files.

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

/// Acquisitions, hand-overs and changes of the standbys are fsynced; a
/// plain renewal (time and WAL position) is not, and is still visible
/// to every other handle at once.
#[tokio::test]
async fn only_renewals_skip_the_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
    let other = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
    let won = |o: CasOutcome| match o {
        CasOutcome::Won(l) => l,
        CasOutcome::Lost(l) => panic!("lost to {l:?}"),
    };
    let l = won(c
        .compare_and_swap_lease(LeaseVersion(0), record("a", 1))
        .await
        .expect("cas"));
    assert_eq!(c.durable_writes(), 1, "acquisition");
    let mut renewal = l.record.clone();
    renewal.renewed_at = Millis(250);
    renewal.primary_lsn = crate::machine::Lsn(0x100);
    let l = won(c
        .compare_and_swap_lease(l.version, renewal.clone())
        .await
        .expect("cas"));
    assert_eq!(c.durable_writes(), 1, "a renewal is not fsynced");
    let seen = other.read_now().expect("read").lease.expect("lease");
    assert_eq!(seen, l, "another handle sees the renewal at once");
    let mut standbys = renewal.clone();
    standbys.sync_standbys.insert(MemberName::new("b"));
    let l = won(c
        .compare_and_swap_lease(l.version, standbys)
        .await
        .expect("cas"));
    assert_eq!(c.durable_writes(), 2, "a change of standbys");
    won(c
        .compare_and_swap_lease(l.version, record("b", 2))
        .await
        .expect("cas"));
    assert_eq!(c.durable_writes(), 3, "a new holder and term");
}

/// Of many concurrent acquirers with the same expected version, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_concurrent_cas_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tasks = Vec::new();
    for i in 0..16 {
        // Separate handles, as separate processes would have.
        let c = Arc::new(LocalCoordinator::open(dir.path(), Duration::from_secs(5)).expect("open"));
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
        forced: false,
    })
    .await
    .expect("request");
    let again = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
    assert!(matches!(
        again
            .request_switchover(SwitchoverRequest {
                id: 8,
                target: None,
                forced: false,
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

/// A state file of an older version (members inside it) still loads,
/// and the next lease write keeps the lease.
#[tokio::test]
async fn older_state_file_with_members_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
    let CasOutcome::Won(lease) = c
        .compare_and_swap_lease(LeaseVersion(0), record("a", 1))
        .await
        .expect("cas")
    else {
        panic!("first write wins")
    };
    let mut old = ClusterView {
        lease: Some(lease),
        ..ClusterView::default()
    };
    let m = member_state("a", 3);
    old.members.insert(m.name.clone(), m.clone());
    fs::write(
        dir.path().join(STATE_FILE),
        serde_json::to_vec(&old).expect("json"),
    )
    .expect("write");
    assert_eq!(c.read_view().await.expect("read"), old);
    c.compare_and_swap_lease(LeaseVersion(1), record("a", 1))
        .await
        .expect("cas");
    let v = c.read_view().await.expect("read");
    assert_eq!(v.lease.map(|l| l.version), Some(LeaseVersion(2)));
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

fn member_state(name: &str, heartbeat: u64) -> MemberState {
    MemberState {
        name: MemberName::new(name),
        role: crate::machine::MemberRole::Replica,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Default::default(),
        replayed_lsn: Default::default(),
        flushed_lsn: Default::default(),
        system_identifier: None,
        following: None,
        sync_eligible: false,
        last_seen: Millis(0),
        heartbeat,
    }
}

fn inode_and_mtime(path: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).expect("metadata");
    (meta.ino(), meta.modified().expect("mtime"))
}

/// A heartbeat line is read back as written, whatever its numbers.
#[test]
fn beat_lines_round_trip() {
    for (hb, seen) in [(0, 0), (7, 1750), (u64::MAX, u64::MAX)] {
        let line = beat_line(hb, Millis(seen));
        assert_eq!(line.len(), 42, "fixed width");
        assert_eq!(parse_beat(&line), Some((hb, Millis(seen))));
    }
    assert_eq!(parse_beat("garbage"), None);
}

/// An idle member's loop rewrites only its heartbeat: publishing the same
/// state with a new heartbeat leaves the member file as it was (same
/// inode, same mtime) while every reader still sees the heartbeat move;
/// a real change is written at once.
#[tokio::test]
async fn an_unchanged_member_state_is_not_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
    let reader = LocalCoordinator::open(dir.path(), Duration::from_secs(1)).expect("open");
    let name = MemberName::new("a");
    let file = dir.path().join(MEMBERS_DIR).join("a.json");
    let mut state = member_state("a", 1);
    c.publish_member(state.clone()).await.expect("publish");
    let written = inode_and_mtime(&file);
    let beat_file = dir.path().join(BEATS_DIR).join("a");
    let beat_inode = inode_and_mtime(&beat_file).0;
    for beat in 2..=20 {
        state.heartbeat = beat;
        state.last_seen = Millis(beat * 250);
        c.publish_member(state.clone()).await.expect("publish");
        let seen = reader.read_now().expect("read").members[&name].clone();
        assert_eq!(seen.heartbeat, beat, "readers see every heartbeat");
        assert_eq!(seen.last_seen, Millis(beat * 250));
    }
    assert_eq!(c.member_writes(), 1, "19 loops, no rewrite of the state");
    assert_eq!(
        inode_and_mtime(&file),
        written,
        "the member file is untouched"
    );
    assert_eq!(
        inode_and_mtime(&beat_file).0,
        beat_inode,
        "heartbeats are written in place, no new file per loop"
    );
    state.role = crate::machine::MemberRole::Primary;
    state.heartbeat = 21;
    c.publish_member(state.clone()).await.expect("publish");
    assert_eq!(c.member_writes(), 2, "a new role is written");
    assert_ne!(inode_and_mtime(&file), written);
    assert_eq!(reader.read_now().expect("read").members[&name], state);
    // A member file removed behind the publisher's back comes back.
    fs::remove_file(&file).expect("remove");
    state.heartbeat = 22;
    c.publish_member(state.clone()).await.expect("publish");
    assert_eq!(reader.read_now().expect("read").members[&name], state);
}

/// Watchers are woken by a new holder, a switchover request and a
/// changed member state, and never by what an idle cluster does every
/// loop: renewals and heartbeats.
#[tokio::test]
async fn watchers_wake_on_changes_only() {
    let durable = tempfile::tempdir().expect("tempdir");
    // On tmpfs where there is one, as `pgcluster up` runs it: renewals
    // are then written on the caller's thread.
    let shm = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let c = LocalCoordinator::open_split(
        durable.path(),
        shm.path().join("run"),
        Duration::from_secs(1),
    )
    .expect("open");
    let lease_watch = c.watch(false).expect("inotify");
    let all_watch = c.watch(true).expect("inotify");
    let CasOutcome::Won(mut lease) = c
        .compare_and_swap_lease(LeaseVersion(0), record("a", 1))
        .await
        .expect("cas")
    else {
        panic!("lost")
    };
    let mut state = member_state("a", 1);
    c.publish_member(state.clone()).await.expect("publish");
    assert!(lease_watch.drain().expect("drain") > 0, "acquisition");
    assert!(
        all_watch.drain().expect("drain") > 0,
        "acquisition and first state"
    );
    // Forty idle loops of a primary: renew, publish the same state.
    for n in 2..=41u64 {
        let mut renewal = lease.record.clone();
        renewal.renewed_at = Millis(n * 250);
        let CasOutcome::Won(l) = c
            .compare_and_swap_lease(lease.version, renewal)
            .await
            .expect("cas")
        else {
            panic!("lost")
        };
        lease = l;
        state.heartbeat = n;
        c.publish_member(state.clone()).await.expect("publish");
    }
    assert_eq!(lease.version, LeaseVersion(41), "every renewal was written");
    assert_eq!(c.durable_writes(), 1, "only the acquisition was fsynced");
    assert_eq!(
        lease_watch.drain().expect("drain"),
        0,
        "renewals wake nobody"
    );
    assert_eq!(all_watch.drain().expect("drain"), 0, "nor do heartbeats");
    c.request_switchover(SwitchoverRequest {
        id: 1,
        target: None,
        forced: false,
    })
    .await
    .expect("request");
    assert!(
        lease_watch.drain().expect("drain") > 0,
        "a switchover request"
    );
    state.sync_eligible = true;
    c.publish_member(state.clone()).await.expect("publish");
    assert_eq!(
        lease_watch.drain().expect("drain"),
        0,
        "member states are not the lease"
    );
    assert!(
        all_watch.drain().expect("drain") > 0,
        "a changed member state"
    );
    // And the async side resolves on a change.
    let mut w = c.watch(false).expect("inotify");
    c.clear_switchover(1).await.expect("clear");
    tokio::time::timeout(Duration::from_secs(10), w.changed())
        .await
        .expect("woken, not timed out")
        .expect("watch");
}

/// Split: renewals and member states stay in the runtime directory (the
/// durable file is not rewritten); holder changes reach the durable file
/// before anyone sees them; with the runtime directory gone (a reboot)
/// readers get the durable state.
#[tokio::test]
async fn runtime_state_is_separate_and_the_durable_copy_survives_a_reboot() {
    let durable = tempfile::tempdir().expect("tempdir");
    let shm = tempfile::tempdir().expect("tempdir");
    let run = shm.path().join("run");
    let c =
        LocalCoordinator::open_split(durable.path(), &run, Duration::from_secs(1)).expect("open");
    let CasOutcome::Won(l) = c
        .compare_and_swap_lease(LeaseVersion(0), record("a", 1))
        .await
        .expect("cas")
    else {
        panic!("lost")
    };
    let durable_file = durable.path().join(STATE_FILE);
    let written = fs::read(&durable_file).expect("durable copy written");
    let mut renewal = l.record.clone();
    renewal.renewed_at = Millis(250);
    let CasOutcome::Won(renewed) = c
        .compare_and_swap_lease(l.version, renewal)
        .await
        .expect("cas")
    else {
        panic!("lost")
    };
    c.publish_member(member_state("b", 4))
        .await
        .expect("publish");
    assert_eq!(
        fs::read(&durable_file).expect("read"),
        written,
        "renewal not durable"
    );
    assert!(!durable.path().join(MEMBERS_DIR).join("b.json").exists());
    let other =
        LocalCoordinator::open_split(durable.path(), &run, Duration::from_secs(1)).expect("open");
    let seen = other.read_now().expect("read");
    assert_eq!(seen.lease, Some(renewed), "the runtime copy is current");
    assert!(seen.members.contains_key(&MemberName::new("b")));

    fs::remove_dir_all(&run).expect("reboot");
    let after =
        LocalCoordinator::open_split(durable.path(), &run, Duration::from_secs(1)).expect("open");
    let view = after.read_now().expect("read");
    assert_eq!(
        view.lease,
        Some(l.clone()),
        "the durable state, as acquired"
    );
    assert!(view.members.is_empty());
    // The next write continues from it.
    let CasOutcome::Won(next) = after
        .compare_and_swap_lease(l.version, record("b", 2))
        .await
        .expect("cas")
    else {
        panic!("lost")
    };
    let on_disk: ClusterView =
        serde_json::from_slice(&fs::read(&durable_file).expect("read")).expect("json");
    assert_eq!(on_disk.lease, Some(next));
}

/// The runtime directory must be this user's own: a symlink or a
/// directory others can write (`/dev/shm` is world-writable) is refused
/// with what to do.
#[test]
fn a_runtime_dir_someone_else_could_control_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let durable = tempfile::tempdir().expect("tempdir");
    let shm = tempfile::tempdir().expect("tempdir");
    let target = shm.path().join("elsewhere");
    fs::create_dir(&target).expect("mkdir");
    let link = shm.path().join("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let err = LocalCoordinator::open_split(durable.path(), &link, Duration::from_secs(1))
        .expect_err("a symlink");
    assert!(format!("{err:?}").contains("not a directory"), "{err:?}");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = LocalCoordinator::open_split(durable.path(), &target, Duration::from_secs(1))
        .expect_err("world-writable");
    assert!(
        format!("{err:?}").contains("writable by other users"),
        "{err:?}"
    );
    // Another owner (root can hand the directory to anyone).
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&target, Some(65534), None).expect("chown");
        let err = LocalCoordinator::open_split(durable.path(), &target, Duration::from_secs(1))
            .expect_err("another owner");
        assert!(
            format!("{err:?}").contains("belongs to user 65534"),
            "{err:?}"
        );
    }
    let fresh = shm.path().join("fresh");
    LocalCoordinator::open_split(durable.path(), &fresh, Duration::from_secs(1)).expect("created");
    let mode = fs::metadata(&fresh).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}
