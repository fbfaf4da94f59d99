//! Observing the local server into the machine's [`PgObservation`]: over the
//! Unix socket while it runs (one prepared statement on a kept connection), from `pg_controldata` and `standby.signal`
//! while it is stopped.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::AgentConfig;
use super::supervise::{LocalPg, WalEndCache, WalEndKey};
use crate::machine::{
    DataDir, Lsn, MemberName, PgObservation, ReplicaProgress, SyncStandbys, SystemId, Timeline,
};
use crate::postgres::{self, ConnectionUsage, PgError};

/// One observation plus what only the status page needs.
#[derive(Clone, Debug)]
pub struct Observed {
    /// What the machine gets.
    pub pg: PgObservation,
    /// Connections in use (running only).
    pub connections: Option<ConnectionUsage>,
}

/// Observes the local server; never fails: what cannot be read is reported
/// as "not running" (and logged), which is what the machine must assume.
pub async fn observe(cfg: &AgentConfig, local: &mut LocalPg, timeout: Duration) -> Observed {
    local.reap();
    if local.postmaster.is_some() {
        match tokio::time::timeout(timeout, running(cfg, local)).await {
            Ok(Ok(obs)) => return obs,
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not observe the running server");
                local.client = None;
            }
            Err(_) => {
                tracing::debug!(?timeout, "observing the running server timed out");
                local.client = None;
            }
        }
        // Our postmaster is alive but did not answer in time (starting,
        // overloaded): report what we last saw of it, or its files, as
        // running; a slow answer is no reason to restart it.
        if let Some(last) = &local.last_running {
            let mut pg = last.clone();
            pg.streaming = false;
            return Observed {
                pg,
                connections: None,
            };
        }
        let mut obs = stopped(cfg, local).await;
        obs.pg.running = true;
        return obs;
    }
    if local.background.as_ref().is_some_and(|b| b.stopping())
        && let Some(last) = &local.last_running
    {
        // A clean stop is under way: the server counts as running (as last
        // seen) until it has stopped, so the machine never reads a
        // half-written end of WAL from a shutting-down server's files.
        let mut pg = last.clone();
        pg.streaming = false;
        return Observed {
            pg,
            connections: None,
        };
    }
    if local.background.as_ref().is_some_and(|b| b.serves()) {
        // A promotion or start owns the postmaster: its server answers on
        // the socket like ours (a just-promoted primary must be seen as one
        // at once), and its data directory is live, no input for the tools
        // that read a stopped one.
        match tokio::time::timeout(timeout, running(cfg, local)).await {
            Ok(Ok(obs)) => return obs,
            _ => local.client = None,
        }
    }
    stopped(cfg, local).await
}

async fn running(cfg: &AgentConfig, local: &mut LocalPg) -> Result<Observed, PgError> {
    let standby_of = local.standby_of.clone();
    let (client, statement) = local.observer(cfg).await?;
    let state = postgres::observe_prepared(client, statement).await?;
    local.system_id = Some(state.system_identifier);
    let flushed = state
        .flushed_lsn
        .or(state.received_lsn)
        .or(state.replayed_lsn)
        .unwrap_or_default();
    let received = state.received_lsn.unwrap_or(flushed);
    let replayed = state.replayed_lsn.unwrap_or(flushed);
    let timeline = if state.in_recovery {
        WalDir::read(&cfg.instance.layout.data_dir)
            .standby_timeline(state.timeline, replayed.max(received))
    } else {
        state.timeline
    };
    let pg = PgObservation {
        data: DataDir::Initialized(SystemId(state.system_identifier)),
        running: true,
        in_recovery: state.in_recovery,
        timeline: Timeline(timeline),
        received_lsn: received,
        replayed_lsn: replayed,
        flushed_lsn: flushed.max(received),
        upstream: if state.in_recovery { standby_of } else { None },
        streaming: state.streaming,
        sync_standbys: parse_sync_standbys(&state.synchronous_standby_names),
        replicas: state
            .standbys
            .iter()
            .filter(|s| s.state == "streaming")
            .map(|s| ReplicaProgress {
                name: MemberName::new(s.application_name.clone()),
                flushed_lsn: s.flush_lsn.unwrap_or_default(),
            })
            .collect(),
    };
    local.last_running = Some(pg.clone());
    Ok(Observed {
        pg,
        connections: Some(state.connections),
    })
}

/// A stopped server: identity, timeline and position from pg_controldata,
/// recovery from `standby.signal`. While a background operation works on the
/// directory only pg_controldata is read: its WAL is being written.
async fn stopped(cfg: &AgentConfig, local: &mut LocalPg) -> Observed {
    let busy = local.background.is_some();
    let data_dir = &cfg.instance.layout.data_dir;
    local.last_running = None;
    let mut pg = PgObservation::empty();
    if !data_dir.join("PG_VERSION").exists() {
        local.system_id = None;
        return Observed {
            pg,
            connections: None,
        };
    }
    let wal = WalDir::read(data_dir);
    match controldata(cfg).await {
        Some(c) => {
            local.system_id = Some(c.system_identifier);
            pg.data = DataDir::Initialized(SystemId(c.system_identifier));
            // The local WAL may go on past the last checkpoint's timeline
            // (a primary killed right after its promotion, before a
            // checkpoint): its newest segments say where, and the end of
            // WAL is read on that timeline, from where it began.
            let timeline = wal
                .segment_timeline()
                .map_or(c.timeline, |t| t.max(c.timeline));
            let start = if timeline == c.timeline {
                c.checkpoint_lsn
            } else {
                wal.timeline_start(timeline).map_or(c.end_lsn, |l| l.0)
            };
            let lower = c.end_lsn.max(start);
            pg.timeline = Timeline(timeline);
            // The checkpoint location is the *start* of the last checkpoint
            // record; the machine needs the end of local WAL (a standby that
            // received the shutdown checkpoint is exactly there).
            let bound = last_segment_end(&wal.names, timeline, c.segment_size);
            let key = WalEndKey {
                checkpoint_lsn: c.checkpoint_lsn,
                timeline,
                bound,
            };
            let end = match local.wal_end_cache {
                Some(cached)
                    if cached.key == key
                        && cached.retry_at.is_none_or(|at| Instant::now() < at) =>
                {
                    cached.end
                }
                _ if busy => lower,
                _ => {
                    let found = match bound.filter(|b| *b > start) {
                        Some(bound) => wal_end(cfg, timeline, start, bound).await,
                        None => WalEnd::Unknown,
                    };
                    let end = match found {
                        WalEnd::Found(end) => end.max(lower),
                        WalEnd::Unknown | WalEnd::TimedOut => lower,
                    };
                    // A slow answer (a loaded machine) is asked again, but not
                    // every tick: each try holds the tick up to its timeout.
                    let retry_at =
                        matches!(found, WalEnd::TimedOut).then(|| Instant::now() + WAL_END_RETRY);
                    local.wal_end_cache = Some(WalEndCache { key, end, retry_at });
                    end
                }
            };
            pg.flushed_lsn = Lsn(end);
            pg.received_lsn = Lsn(end);
            pg.replayed_lsn = Lsn(end);
        }
        None => {
            // Unreadable control file: keep the cached identity if any so
            // the machine does not take the directory for empty.
            if let Some(id) = local.system_id {
                pg.data = DataDir::Initialized(SystemId(id));
            }
        }
    }
    pg.in_recovery = data_dir.join("standby.signal").exists();
    if pg.in_recovery {
        pg.timeline = Timeline(wal.standby_timeline(pg.timeline.0, pg.end_lsn()));
    }
    pg.upstream = if pg.in_recovery {
        local.standby_of.clone()
    } else {
        None
    };
    pg.sync_standbys = local.sync.clone();
    Observed {
        pg,
        connections: None,
    }
}

/// What pg_controldata tells about a stopped cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// `Database system identifier`.
    pub system_identifier: u64,
    /// `Latest checkpoint's TimeLineID`.
    pub timeline: u32,
    /// `Latest checkpoint location` (the start of the checkpoint record).
    pub checkpoint_lsn: u64,
    /// The larger of the latest checkpoint location and the minimum recovery
    /// ending location: a lower bound of the local WAL's end.
    pub end_lsn: u64,
    /// `Bytes per WAL segment` (16 MiB unless initdb chose otherwise).
    pub segment_size: u64,
}

async fn controldata(cfg: &AgentConfig) -> Option<ControlData> {
    let mut cmd = cfg.instance.tool("pg_controldata");
    cmd.arg(&cfg.instance.layout.data_dir).env("LC_ALL", "C");
    let out = cmd.output().await.ok()?;
    if !out.status.success() {
        tracing::debug!(
            stderr = %String::from_utf8_lossy(&out.stderr),
            "pg_controldata failed"
        );
        return None;
    }
    parse_controldata(&String::from_utf8_lossy(&out.stdout))
}

/// The end of the valid WAL of `timeline` in a stopped server's pg_wal,
/// read with pg_waldump from `start` (the last checkpoint, or where the
/// timeline began): the position where it finds no further record.
/// pg_waldump waits 5 s for a segment file that is not there (it retries
/// the open), so it is told to stop at `bound`, the end of the last segment
/// present; reaching that bound means the WAL fills it.
async fn wal_end(cfg: &AgentConfig, timeline: u32, start: u64, bound: u64) -> WalEnd {
    let pg_wal = cfg.instance.layout.data_dir.join("pg_wal");
    let mut cmd = cfg.instance.tool("pg_waldump");
    cmd.arg("--path")
        .arg(&pg_wal)
        .arg("--start")
        .arg(Lsn(start).to_string())
        .arg("--end")
        .arg(Lsn(bound).to_string())
        .arg("--timeline")
        .arg(timeline.to_string())
        .arg("--quiet")
        .env("LC_ALL", "C");
    // Bounded: the agent's tick waits for this.
    match tokio::time::timeout(Duration::from_secs(1), cmd.output()).await {
        Err(_) => WalEnd::TimedOut,
        Ok(Err(_)) => WalEnd::Unknown,
        Ok(Ok(out)) if out.status.success() => WalEnd::Found(bound),
        Ok(Ok(out)) => parse_waldump_end(&String::from_utf8_lossy(&out.stderr))
            .map_or(WalEnd::Unknown, WalEnd::Found),
    }
}

/// How long a guessed WAL end (pg_waldump timed out) serves before another try.
const WAL_END_RETRY: Duration = Duration::from_secs(10);

/// What [`wal_end`] found out.
enum WalEnd {
    /// The end of the valid WAL.
    Found(u64),
    /// Not readable (no segments, pg_waldump failed): pg_controldata's bound serves.
    Unknown,
    /// pg_waldump did not answer in time.
    TimedOut,
}

/// The end of the last WAL segment file of `timeline` among `names` (the
/// entries of pg_wal), for segments of `segment_size` bytes.
pub fn last_segment_end(names: &[String], timeline: u32, segment_size: u64) -> Option<u64> {
    if segment_size == 0 || !segment_size.is_power_of_two() {
        return None;
    }
    let per_log = 0x1_0000_0000u64 / segment_size;
    names
        .iter()
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter_map(|n| {
            let tli = u32::from_str_radix(&n[0..8], 16).ok()?;
            let log = u64::from_str_radix(&n[8..16], 16).ok()?;
            let seg = u64::from_str_radix(&n[16..24], 16).ok()?;
            (tli == timeline && seg < per_log).then_some(log * per_log + seg)
        })
        .max()
        .map(|segno| (segno + 1) * segment_size)
}

/// The position where pg_waldump found no further record: the last LSN in
/// its error ("error in WAL record at A: invalid record length at B: wanted
/// 24, got 0" in PostgreSQL 15, "... at B: expected at least 24, got 0" in
/// 17, "... in WAL segment S, LSN B, offset 0" for a recycled segment).
/// Taking the text after the last " at " read "least 24" in PostgreSQL 17,
/// so every stopped server's end fell back to its last checkpoint (found on
/// the test node: each switchover's target released the handed-over lease).
pub fn parse_waldump_end(stderr: &str) -> Option<u64> {
    let (_, reason) = stderr.split_once("error in WAL record at ")?;
    reason
        .split_whitespace()
        .rev()
        .filter(|word| word.contains('/'))
        .filter_map(|word| word.trim_end_matches([':', ',', '.']).parse::<Lsn>().ok())
        .next()
        .map(|l| l.0)
}

/// What a data directory's `pg_wal` holds, listed once per observation:
/// the names of its files and which timelines have a history file. A
/// history file's text is read only when a question needs it (a running
/// standby asks every tick, and rarely needs one).
pub struct WalDir {
    /// The directory.
    pub pg_wal: std::path::PathBuf,
    /// The file names in pg_wal.
    pub names: Vec<String>,
    /// Timelines with a non-empty history file (placeholders placed before
    /// a promotion are empty and name no switch).
    pub histories: BTreeSet<u32>,
}

impl WalDir {
    /// Reads `data_dir/pg_wal` (empty when unreadable).
    pub fn read(data_dir: &std::path::Path) -> WalDir {
        let pg_wal = data_dir.join("pg_wal");
        let names: Vec<String> = std::fs::read_dir(&pg_wal)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let histories = names
            .iter()
            .filter_map(|name| {
                let id = u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()?;
                let size = std::fs::metadata(pg_wal.join(name)).ok()?.len();
                (size > 0).then_some(id)
            })
            .collect();
        WalDir {
            pg_wal,
            names,
            histories,
        }
    }

    /// The text of `timeline`'s history file, if it has one.
    fn history(&self, timeline: u32) -> Option<String> {
        if !self.histories.contains(&timeline) {
            return None;
        }
        std::fs::read_to_string(self.pg_wal.join(format!("{timeline:08X}.history"))).ok()
    }

    /// The highest timeline with a WAL segment file: the timeline local WAL
    /// ends on. PostgreSQL names new and recycled segments after the
    /// timeline it writes, so no segment names a timeline it never reached.
    pub fn segment_timeline(&self) -> Option<u32> {
        self.names
            .iter()
            .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter_map(|n| u32::from_str_radix(&n[0..8], 16).ok())
            .max()
    }

    /// The highest timeline with a history file (1 if none).
    pub fn newest_history(&self) -> u32 {
        self.histories.iter().copied().max().unwrap_or(1)
    }

    /// Where `timeline` began: the switch point on the last line of its
    /// history file.
    pub fn timeline_start(&self, timeline: u32) -> Option<Lsn> {
        self.history(timeline)?
            .lines()
            .rev()
            .find_map(|line| line.split_whitespace().nth(1)?.parse::<Lsn>().ok())
    }

    /// The timeline a standby is on. PostgreSQL tells the last
    /// checkpoint's or restartpoint's timeline (`reported`); local WAL may
    /// go on past it (the newest segments'). A newer history file means the
    /// standby will follow that timeline if its own is an ancestor of it and
    /// `position` lies at or before the point where the new timeline left
    /// it; otherwise PostgreSQL refuses to follow ("new timeline N forked
    /// off current database system timeline T before current recovery
    /// point", or "WAL location ... belongs to timeline 3, but previous
    /// recovered WAL file came from timeline 4") and retries forever, so
    /// the standby is reported on its own timeline and the machine rewinds
    /// it. Found on the test node: old primaries re-joining after kill -9
    /// with WAL past the switch point, or on a timeline the cluster's
    /// lineage never took, were reported on the new timeline and never
    /// rewound.
    pub fn standby_timeline(&self, reported: u32, position: Lsn) -> u32 {
        let own = self
            .segment_timeline()
            .map_or(reported, |t| t.max(reported));
        let newest = self.newest_history();
        if newest <= own {
            return own;
        }
        match self.history(newest).and_then(|h| switch_point(&h, own)) {
            Some(left) if position <= left => newest,
            _ => own,
        }
    }
}

/// Where a timeline history file (`parent<TAB>switchpoint<TAB>reason`
/// lines) says its timeline line left timeline `from`.
fn switch_point(history: &str, from: u32) -> Option<Lsn> {
    history.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let parent: u32 = fields.next()?.parse().ok()?;
        let at: Lsn = fields.next()?.parse().ok()?;
        (parent == from).then_some(at)
    })
}

/// Parses pg_controldata's C-locale output.
pub fn parse_controldata(text: &str) -> Option<ControlData> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let lsn = |name: &str| {
        field(name)
            .and_then(|v| v.parse::<Lsn>().ok())
            .map_or(0, |l| l.0)
    };
    Some(ControlData {
        system_identifier: field("Database system identifier:")?.parse().ok()?,
        timeline: field("Latest checkpoint's TimeLineID:")?.parse().ok()?,
        checkpoint_lsn: lsn("Latest checkpoint location:"),
        end_lsn: lsn("Latest checkpoint location:").max(lsn("Minimum recovery ending location:")),
        segment_size: field("Bytes per WAL segment:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(16 * 1024 * 1024),
    })
}

/// The machine's view of a `synchronous_standby_names` value written by
/// [`SyncStandbys::to_setting`].
pub fn parse_sync_standbys(value: &str) -> SyncStandbys {
    let value = value.trim();
    if value.is_empty() {
        return SyncStandbys::Off;
    }
    let names: BTreeSet<MemberName> = value
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|n| *n != "pgcluster_no_standby")
        .map(MemberName::new)
        .collect();
    SyncStandbys::AllOf(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of WAL is where pg_waldump stops finding records.
    #[test]
    fn parses_waldump_end() {
        let err = "pg_waldump: error: error in WAL record at 0/301AB20: invalid record length at 0/301AB98: wanted 24, got 0\n";
        assert_eq!(parse_waldump_end(err), Some(0x0301_AB98));
        // PostgreSQL 17 (from the test node; "expected at least" holds " at ").
        let err = "pg_waldump: error: error in WAL record at 0/38853A8: invalid record length at 0/3885420: expected at least 24, got 0\n";
        assert_eq!(parse_waldump_end(err), Some(0x0388_5420));
        let err = "pg_waldump: error: error in WAL record at 0/3FFFF80: invalid magic number 0000 in WAL segment 000000020000000000000004, LSN 0/4000000, offset 0\n";
        assert_eq!(parse_waldump_end(err), Some(0x0400_0000));
        assert_eq!(parse_waldump_end("nothing"), None);
        assert_eq!(
            parse_waldump_end("pg_waldump: error: could not open file"),
            None
        );
    }

    /// Whatever the agent writes as synchronous_standby_names reads back the same.
    #[test]
    fn sync_standbys_round_trip() {
        for value in [
            SyncStandbys::Off,
            SyncStandbys::AllOf(BTreeSet::new()),
            SyncStandbys::AllOf(["a-1".into(), "b-2".into()].into_iter().collect()),
        ] {
            assert_eq!(parse_sync_standbys(&value.to_setting()), value);
        }
    }

    /// pg_waldump is bounded by the end of the last segment file of the
    /// checkpoint's timeline; other timelines, history and partial files
    /// do not count.
    #[test]
    fn last_segment_end_of_a_timeline() {
        let mib16 = 16 * 1024 * 1024;
        let names: Vec<String> = [
            "000000010000000000000002",
            "000000010000000000000003",
            "00000002.history",
            "000000020000000000000004",
            "000000010000000000000005.partial",
            "archive_status",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(last_segment_end(&names, 1, mib16), Some(0x0400_0000));
        assert_eq!(last_segment_end(&names, 2, mib16), Some(0x0500_0000));
        assert_eq!(last_segment_end(&names, 3, mib16), None);
        // Segment numbers wrap into the next "log" every 4 GiB.
        let high = vec!["0000000100000001000000FF".to_owned()];
        assert_eq!(last_segment_end(&high, 1, mib16), Some(0x2_0000_0000));
        assert_eq!(last_segment_end(&names, 1, 0), None);
    }

    /// A standby whose replay position lies past the point where the newest
    /// history file's timeline left its own is not on that timeline
    /// (PostgreSQL refuses to follow it); at or before it, it is.
    #[test]
    fn a_history_file_forked_before_the_position_names_no_followed_timeline() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).expect("pg_wal");
        std::fs::write(
            wal.join("00000006.history"),
            "1\t0/3000160\tno recovery target specified\n\
             3\t0/48C1568\tno recovery target specified\n\
             5\t0/5000000\tno recovery target specified\n",
        )
        .expect("history written");
        let at = |s: &str| s.parse::<Lsn>().expect("an LSN");
        let standby_timeline = |dir: &std::path::Path, reported, position| {
            WalDir::read(dir).standby_timeline(reported, position)
        };
        assert_eq!(switch_point("3\t0/48C1568\tx\n", 3), Some(at("0/48C1568")));
        // Past the switch point: diverged, still on timeline 3.
        assert_eq!(standby_timeline(dir.path(), 3, at("0/48C15F8")), 3);
        // At or before it: follows timeline 6.
        assert_eq!(standby_timeline(dir.path(), 3, at("0/48C1568")), 6);
        assert_eq!(standby_timeline(dir.path(), 3, at("0/4000000")), 6);
        // Already on the newest timeline.
        assert_eq!(standby_timeline(dir.path(), 6, at("0/6000000")), 6);
        // WAL of timeline 6 arrived: past the switch point on timeline 6.
        std::fs::write(wal.join("000000060000000000000004"), b"").expect("segment written");
        assert_eq!(standby_timeline(dir.path(), 3, at("0/48C15F8")), 6);
    }

    /// An old primary promoted to timeline 4 (its segments and history on
    /// disk) while the cluster's lineage went from 3 to 5 is on timeline 4,
    /// whatever its last checkpoint says, and does not follow 5: the
    /// machine rewinds it (bug 9 on the test node).
    #[test]
    fn a_standby_with_wal_of_an_abandoned_timeline_is_on_that_timeline() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).expect("pg_wal");
        let write =
            |name: &str, text: &[u8]| std::fs::write(wal.join(name), text).expect("written");
        write("000000030000000000000005", b"");
        write("00000004.history", b"1\t0/3000160\tx\n3\t0/5800000\tx\n");
        write("000000040000000000000005", b"");
        write("00000005.history", b"1\t0/3000160\tx\n3\t0/5894D60\tx\n");
        write("00000006.history", b"");
        let at = |s: &str| s.parse::<Lsn>().expect("an LSN");
        let dir = WalDir::read(dir.path());
        assert_eq!(dir.segment_timeline(), Some(4));
        assert_eq!(
            dir.newest_history(),
            5,
            "an empty placeholder names no timeline"
        );
        assert_eq!(dir.timeline_start(4), Some(at("0/5800000")));
        assert_eq!(dir.timeline_start(2), None);
        // Before timeline 5's switch point, yet not on its lineage.
        assert_eq!(dir.standby_timeline(3, at("0/5810000")), 4);
        assert_eq!(dir.standby_timeline(4, at("0/5810000")), 4);
    }

    /// The stopped server's identity, timeline and WAL position come from pg_controldata.
    #[test]
    fn parses_controldata_fields() {
        let text = "Database system identifier:           7311111111111111111\n\
                    Latest checkpoint location:           0/3000060\n\
                    Latest checkpoint's TimeLineID:       2\n\
                    Minimum recovery ending location:     0/3000100\n";
        let c = parse_controldata(text).expect("parsed");
        assert_eq!(c.system_identifier, 7_311_111_111_111_111_111);
        assert_eq!(c.timeline, 2);
        assert_eq!(c.end_lsn, 0x0300_0100);
    }
}
