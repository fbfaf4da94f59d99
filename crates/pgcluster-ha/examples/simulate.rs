//! Runs the deterministic cluster simulator and prints what happened.
//!
//! ```text
//! cargo run -p pgcluster-ha --example simulate -- --seed 42 --members 3 --faults random
//! cargo run -p pgcluster-ha --example simulate -- --seed 1 --mode sync \
//!     --faults crash-node:primary@3000-6000,coord-down:all@7000-8000
//! cargo run --release -p pgcluster-ha --example simulate -- --seed 0 --count 100000 --quiet
//! ```
//!
//! Faults are `KIND:WHO@START[-END]` (ms): KIND is crash-node, crash-agent,
//! crash-pg, coord-down, partition/N, switchover/N or switchover/best,
//! foreign-data; WHO is a member index, `all` or `primary`.

use std::process::ExitCode;
use std::time::Instant;

use pgcluster_core::api::v1alpha1::NoStandbyPolicy;
use pgcluster_ha::sim::{self, Fault, SimConfig};

struct Args {
    seed: u64,
    members: usize,
    mode: String,
    fallback: bool,
    faults: Option<Vec<Fault>>,
    count: u64,
    quiet: bool,
    duration: Option<u64>,
    mix: bool,
    time_limit: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seed: 0,
        members: 3,
        mode: "async".into(),
        fallback: false,
        faults: None,
        count: 1,
        quiet: false,
        duration: None,
        mix: false,
        time_limit: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--members" => a.members = value()?.parse().map_err(|e| format!("--members: {e}"))?,
            "--mode" => a.mode = value()?,
            "--fallback" => a.fallback = true,
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--duration" => {
                a.duration = Some(value()?.parse().map_err(|e| format!("--duration: {e}"))?)
            }
            "--quiet" => a.quiet = true,
            "--mix" => a.mix = true,
            "--time-limit" => {
                a.time_limit = Some(value()?.parse().map_err(|e| format!("--time-limit: {e}"))?)
            }
            "--faults" => {
                let v = value()?;
                if v != "random" {
                    let faults: Result<Vec<Fault>, _> = v.split(',').map(str::parse).collect();
                    a.faults = Some(faults.map_err(|e| e.to_string())?);
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(2..=9).contains(&a.members) {
        return Err("--members must be 2..=9".into());
    }
    Ok(a)
}

/// Mode, fallback and size of one schedule: as given, or (with `--mix`)
/// rotating through async / sync+block / sync+fallback and 2 to 5 members.
fn shape(a: &Args, seed: u64) -> (bool, bool, usize) {
    if a.mix {
        let sizes = [3, 3, 3, 2, 4, 5];
        let size = sizes[((seed / 3) % sizes.len() as u64) as usize];
        return (!seed.is_multiple_of(3), seed % 3 == 2, size);
    }
    (a.mode == "sync", a.fallback, a.members)
}

fn config(a: &Args, seed: u64) -> SimConfig {
    let (sync, fallback, members) = shape(a, seed);
    let mut c = SimConfig::new(seed, members);
    if sync {
        let policy = if fallback {
            NoStandbyPolicy::FallbackToAsync
        } else {
            NoStandbyPolicy::Block
        };
        c = c.sync(policy);
    }
    c.faults = a.faults.clone();
    if let Some(d) = a.duration {
        c.duration = d;
    }
    c.trace = !a.quiet && a.count == 1;
    c
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: simulate [--seed S] [--members N] [--mode async|sync] [--fallback] [--faults random|F,F,...] [--count K] [--mix] [--time-limit SECS] [--duration MS] [--quiet]"
            );
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut failed = 0u64;
    let mut done = 0u64;
    let (mut worst_failover, mut worst_switchover) = (0u64, 0u64);
    for seed in a.seed..a.seed.saturating_add(a.count) {
        if a.time_limit
            .is_some_and(|l| started.elapsed().as_secs() >= l)
        {
            break;
        }
        let c = config(&a, seed);
        let r = sim::run(&c);
        done += 1;
        if a.count > 1 && done.is_multiple_of(100_000) {
            eprintln!(
                "{done} schedules, {failed} failed, {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
        worst_failover = worst_failover.max(r.failover_ms.iter().copied().max().unwrap_or(0));
        worst_switchover = worst_switchover.max(r.switchover_ms.iter().copied().max().unwrap_or(0));
        if a.count == 1 {
            for line in &r.timeline {
                println!("{line}");
            }
            println!(
                "faults: {}",
                r.faults
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "seed {} ({:?}): {} writes, {} acknowledged, {} acknowledged but lost, {} leadership changes, failover {:?} ms, switchover {:?} ms, {} events",
                r.seed,
                r.shape,
                r.writes,
                r.acked,
                r.lost,
                r.leadership_changes,
                r.failover_ms,
                r.switchover_ms,
                r.events
            );
        }
        if !r.violations.is_empty() {
            failed += 1;
            let (sync, fallback, members) = shape(&a, seed);
            println!(
                "seed {seed} FAILED; replay: cargo run -p pgcluster-ha --example simulate -- --seed {seed} --members {members}{}{}",
                if sync { " --mode sync" } else { "" },
                if fallback { " --fallback" } else { "" }
            );
            for v in &r.violations {
                println!("  {v}");
            }
        }
    }
    println!(
        "{done} schedule(s), {failed} failed, worst failover {worst_failover} ms, worst switchover {worst_switchover} ms, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
