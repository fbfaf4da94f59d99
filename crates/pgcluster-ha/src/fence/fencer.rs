//! The fencer process (`pgcluster fence`) and its exec wrapper
//! (`pgcluster fence-exec`). Synchronous on purpose: no runtime, three
//! threads (main, stdin reader, child waiter), a blocking read at rest.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{PID_LINE, monotonic_ns};

/// How long the postmaster has to exit after SIGQUIT before it gets SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// What the fencer runs.
#[derive(Clone, Debug)]
pub struct FencerArgs {
    /// The executable providing `fence-exec` (the `pgcluster` binary).
    pub exe: PathBuf,
    /// Run the server as this user and group (when the fencer runs as root).
    pub user: Option<(u32, u32)>,
    /// The server program (`postgres`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

enum Event {
    Line(String),
    AgentGone,
    Exited(std::io::Result<ExitStatus>),
}

/// Runs the fencer: starts the server through `fence-exec`, prints
/// `pid <N>` on stdout, obeys `arm <ns>` / `disarm` lines on stdin, fences
/// on a passed deadline or end-of-file, and exits with the server's status
/// (128 + signal when it was killed). Returns the exit code.
pub fn run_fencer(args: FencerArgs) -> i32 {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        // Still fences the postmaster and its children; only orphans of a
        // dead postmaster would escape.
        eprintln!("pgcluster fence: could not become a child subreaper: {error}");
    }
    let me = std::process::id();
    let mut cmd = Command::new(&args.exe);
    cmd.arg("fence-exec").arg("--parent").arg(me.to_string());
    // The wrapper switches users itself: the parent-death signal must be
    // set after the switch (a change of credentials clears it), and the
    // unprivileged user may not be able to execute our binary's path.
    if let Some((uid, gid)) = args.user {
        cmd.arg("--uid")
            .arg(uid.to_string())
            .arg("--gid")
            .arg(gid.to_string());
    }
    cmd.arg("--")
        .arg(&args.program)
        .args(&args.args)
        .stdin(Stdio::null());
    // The server's stdout goes where its stderr goes (our stderr): our own
    // stdout is the agent's pipe.
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(err) => cmd.stdout(Stdio::from(err)),
        Err(_) => cmd.stdout(Stdio::null()),
    };
    // Forked from the main thread, which lives as long as this process: the
    // parent-death signal is tied to the forking thread.
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!(
                "pgcluster fence: failed to start {}: {error}",
                args.program.to_string_lossy()
            );
            return 127;
        }
    };
    let pm = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PID_LINE}{}", child.id());
        let _ = out.flush();
    }

    let (tx, rx) = mpsc::channel();
    let lines = tx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin().lock();
        for line in stdin.lines() {
            match line {
                Ok(line) => {
                    if lines.send(Event::Line(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = lines.send(Event::AgentGone);
    });
    let mut child = child;
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exited(child.wait()));
    });

    let mut deadline: Option<u64> = None;
    let mut fenced_at: Option<Instant> = None;
    loop {
        let wait = match (fenced_at, deadline) {
            // Fencing: re-kill children every 100 ms until the postmaster is gone.
            (Some(_), _) => Duration::from_millis(100),
            (None, Some(d)) => {
                Duration::from_nanos(d.saturating_sub(monotonic_ns())).min(Duration::from_secs(1))
            }
            (None, None) => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Event::Line(line)) => match parse_line(&line) {
                Some(Feed::Arm(ns)) => deadline = Some(ns),
                Some(Feed::Disarm) => deadline = None,
                None => eprintln!("pgcluster fence: ignoring unknown command {line:?}"),
            },
            Ok(Event::AgentGone) => {
                if fenced_at.is_none() {
                    fence(pm, "its agent exited");
                    fenced_at = Some(Instant::now());
                }
            }
            Ok(Event::Exited(status)) => {
                reap_orphans(me);
                return exit_code(status);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return 1,
        }
        match fenced_at {
            Some(at) => {
                kill_children_of(pm.as_raw(), Signal::SIGKILL);
                if at.elapsed() >= QUIT_GRACE {
                    let _ = kill(pm, Signal::SIGKILL);
                }
            }
            None => {
                if deadline.is_some_and(|d| monotonic_ns() >= d) {
                    fence(
                        pm,
                        "the lease deadline passed without a renewal from its agent",
                    );
                    fenced_at = Some(Instant::now());
                    deadline = None;
                }
            }
        }
    }
}

/// The fence: the postmaster quits at once and none of its children finishes
/// anything, even if the postmaster itself does not run.
fn fence(pm: Pid, why: &str) {
    eprintln!("pgcluster fence: {why}; fencing postmaster {pm} (SIGQUIT, SIGKILL to its children)");
    let _ = kill(pm, Signal::SIGQUIT);
    kill_children_of(pm.as_raw(), Signal::SIGKILL);
}

/// One line from the agent.
enum Feed {
    Arm(u64),
    Disarm,
}

fn parse_line(line: &str) -> Option<Feed> {
    let mut words = line.split_whitespace();
    match (words.next()?, words.next(), words.next()) {
        ("arm", Some(ns), None) => ns.parse().ok().map(Feed::Arm),
        ("disarm", None, None) => Some(Feed::Disarm),
        _ => None,
    }
}

fn exit_code(status: std::io::Result<ExitStatus>) -> i32 {
    match status {
        Ok(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(1),
        Err(_) => 1,
    }
}

/// Signals every live process whose parent is `ppid` (from `/proc`).
pub(crate) fn kill_children_of(ppid: i32, signal: Signal) -> usize {
    let mut n = 0;
    for pid in children_of(ppid) {
        if kill(Pid::from_raw(pid), signal).is_ok() {
            n += 1;
        }
    }
    n
}

/// The PIDs whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(ppid))
        .collect()
}

/// The parent PID of `pid` (field 4 of `/proc/<pid>/stat`, after the command name).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Backends left behind by a dead postmaster were re-parented to us (a
/// subreaper): kill and reap them.
fn reap_orphans(me: u32) {
    let me = i32::try_from(me).unwrap_or(i32::MAX);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let left = children_of(me);
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pgcluster fence-exec`: switches to `user` (uid, gid) if given, asks
/// for SIGQUIT when the parent (the fencer) dies, checks the parent is still
/// `parent` (it may have died before), and replaces itself with `program`.
/// Returns only on failure.
pub fn exec_with_parent_death_signal(
    parent: u32,
    user: Option<(u32, u32)>,
    program: &OsString,
    args: &[OsString],
) -> std::io::Error {
    if let Some((uid, gid)) = user {
        let gid = nix::unistd::Gid::from_raw(gid);
        let switched = nix::unistd::setgroups(&[gid])
            .and_then(|()| nix::unistd::setgid(gid))
            .and_then(|()| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)));
        if let Err(errno) = switched {
            return std::io::Error::from(errno);
        }
    }
    if let Err(errno) = nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT) {
        return std::io::Error::from(errno);
    }
    if u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(parent) {
        return std::io::Error::other(format!(
            "the fencer (PID {parent}) exited before the server started"
        ));
    }
    Command::new(program).args(args).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two commands parse; anything else is refused (and ignored by the loop).
    #[test]
    fn command_lines() {
        assert!(matches!(parse_line("arm 123"), Some(Feed::Arm(123))));
        assert!(matches!(parse_line("disarm"), Some(Feed::Disarm)));
        assert!(parse_line("arm").is_none());
        assert!(parse_line("arm x").is_none());
        assert!(parse_line("arm 1 2").is_none());
        assert!(parse_line("kill").is_none());
    }

    /// `/proc` parsing finds our own parent and a child we started.
    #[test]
    fn finds_parent_and_children() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let mut child = Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid fits");
        assert_eq!(parent_of(pid), Some(me));
        assert!(children_of(me).contains(&pid));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Exit codes keep the server's code, or 128 + the signal that killed it.
    #[test]
    fn exit_codes() {
        let killed = Command::new("sh")
            .args(["-c", "kill -QUIT $$"])
            .status()
            .expect("sh runs");
        assert_eq!(exit_code(Ok(killed)), 128 + 3);
        let plain = Command::new("sh")
            .args(["-c", "exit 7"])
            .status()
            .expect("sh runs");
        assert_eq!(exit_code(Ok(plain)), 7);
    }
}
