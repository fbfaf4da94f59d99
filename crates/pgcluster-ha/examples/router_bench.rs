//! Router overhead benchmark: pgbench select-only TPS directly against a
//! real PostgreSQL 15 server vs through the local router (same run,
//! alternating), with the router reaching the server over loopback TCP and
//! over its Unix socket (what `pgcluster up` uses); the router's CPU time per
//! proxied transaction (less sensitive to machine load than TPS); and 200
//! concurrent connections through the router (errors, p95 latency), with the
//! direct 200-connection run as baseline.
//!
//! `cargo run -p pgcluster-ha --release --example router_bench [SECONDS] [CLIENTS]`

use std::path::PathBuf;
use std::time::Duration;

use pgcluster_ha::local::bench::{self, BenchRun, BenchTarget};
use pgcluster_ha::local::{RouteTargets, Router, RouterConfig};
use pgcluster_ha::testing::{TEST_PASSWORD, TestServer};
use tokio::sync::watch;

fn target(port: u16) -> BenchTarget {
    BenchTarget {
        host: "127.0.0.1".to_owned(),
        port,
        user: "postgres".to_owned(),
        password: TEST_PASSWORD.to_owned(),
        dbname: "postgres".to_owned(),
    }
}

fn show(label: &str, r: &bench::BenchResult) {
    println!(
        "  {label:<32} tps {:>9.0}  avg {:>7} ms  p95 {:>7} ms  errors {}",
        r.tps,
        r.latency_avg_ms.map_or("-".into(), |v| format!("{v:.2}")),
        r.latency_p95_ms.map_or("-".into(), |v| format!("{v:.2}")),
        r.errors()
    );
}

/// This process's CPU time (user + system) in clock ticks; the router's
/// thread is the only busy one while pgbench (a child) runs.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let clients: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let server = TestServer::primary_with("bench", |c| {
        c.extra.insert("max_connections".into(), "260".into());
    })
    .await;
    let pgbench = server.instance.bin.tool("pgbench");
    let scratch = PathBuf::from(server.dir());
    bench::init(&pgbench, &target(server.instance.port), 1).await?;

    let (_targets, rx) = watch::channel(RouteTargets {
        primary: Some(server.addr()),
        replicas: vec![],
    });
    let via_tcp = Router::spawn_dedicated(RouterConfig::local(0, 0), rx.clone())?;
    let mut config = RouterConfig::local(0, 0);
    let socket = server
        .instance
        .layout
        .socket_dir
        .join(format!(".s.PGSQL.{}", server.instance.port));
    config.unix_sockets.insert(server.addr(), socket);
    let via_unix = Router::spawn_dedicated(config, rx)?;
    let direct = target(server.instance.port);

    println!(
        "select-only, {clients} clients, 2 threads, {seconds} s per run, best of 2 alternating rounds"
    );
    let spec = BenchRun {
        clients,
        threads: 2,
        duration: Duration::from_secs(seconds),
        select_only: true,
        log_latencies: true,
    };
    for (label, router) in [
        ("router -> server over TCP", &via_tcp),
        ("router -> server over Unix", &via_unix),
    ] {
        let routed = target(router.rw_addr().port());
        let o =
            bench::compare_direct_vs_routed(&pgbench, &direct, &routed, &spec, 2, &scratch).await?;
        println!("{label}:");
        show("direct", &o.direct);
        show("through router (rw)", &o.routed);
        println!("  ratio routed/direct: {:.2}", o.ratio);
        let before = cpu_ticks();
        let r = bench::run(&pgbench, &routed, &spec, &scratch).await?;
        if let (Some(before), Some(after)) = (before, cpu_ticks())
            && r.transactions > 0
        {
            // Clock ticks are 10 ms on Linux.
            let micros = (after - before) as f64 * 10_000.0 / r.transactions as f64;
            println!("  router CPU per transaction: {micros:.1} us");
        }
    }

    println!("200 concurrent connections, select-only, {seconds} s");
    let many = BenchRun {
        clients: 200,
        ..spec
    };
    let routed = target(via_unix.rw_addr().port());
    let direct_many = bench::run(&pgbench, &direct, &many, &scratch).await?;
    let routed_many = bench::run(&pgbench, &routed, &many, &scratch).await?;
    show("direct, 200 clients", &direct_many);
    show("through router, 200 clients", &routed_many);
    println!(
        "  ratio routed/direct: {:.2}; router errors: {}; router stats: {:?}",
        routed_many.tps / direct_many.tps.max(f64::MIN_POSITIVE),
        routed_many.errors(),
        via_unix.stats()
    );
    Ok(())
}
