//! Integration tests of the local router in front of real PostgreSQL 15
//! servers on 127.0.0.1.

use std::time::{Duration, Instant};

use pgcluster_ha::local::{RouteTargets, Router, RouterConfig};
use pgcluster_ha::testing::{TEST_PASSWORD, TestServer, wait_for};
use tokio::sync::watch;

/// A client through `addr` (the router) as the test superuser.
async fn connect(
    addr: std::net::SocketAddr,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(addr.port())
        .user("postgres")
        .password(TEST_PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The port of the server a client reached.
async fn server_port(client: &tokio_postgres::Client) -> u16 {
    let port: String = client
        .query_one("SELECT current_setting('port')", &[])
        .await
        .expect("query")
        .get(0);
    port.parse().expect("port is a number")
}

/// rw follows a change of primary: existing connections to the old primary
/// are closed at once, new ones reach the new primary.
#[tokio::test]
async fn rw_follows_switch_and_drops_old_connections() {
    let a = TestServer::primary("a").await;
    let b = TestServer::primary("b").await;
    let (tx, rx) = watch::channel(RouteTargets {
        primary: Some(a.addr()),
        replicas: vec![],
    });
    let router = Router::bind(RouterConfig::local(0, 0), rx)
        .await
        .expect("router");
    let old = connect(router.rw_addr()).await.expect("connect through rw");
    assert_eq!(server_port(&old).await, a.instance.port);

    let switched = Instant::now();
    tx.send_replace(RouteTargets {
        primary: Some(b.addr()),
        replicas: vec![],
    });
    // The old session must fail on its next statement (no silent writes to a).
    let mut closed_after = None;
    for _ in 0..100 {
        if old.batch_execute("SELECT 1").await.is_err() {
            closed_after = Some(switched.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed_after = closed_after.expect("old connection closed after the switch");
    assert!(
        closed_after < Duration::from_millis(500),
        "took {closed_after:?}"
    );
    let new = connect(router.rw_addr())
        .await
        .expect("connect after switch");
    assert_eq!(server_port(&new).await, b.instance.port);
    assert_eq!(router.stats().dropped_on_switch, 1);
}

/// ro spreads connections over the replicas round-robin and falls back to
/// the primary when there is none.
#[tokio::test]
async fn ro_round_robin_and_primary_fallback() {
    let p = TestServer::primary("p").await;
    let r1 = TestServer::primary("r1").await;
    let r2 = TestServer::primary("r2").await;
    let (tx, rx) = watch::channel(RouteTargets {
        primary: Some(p.addr()),
        replicas: vec![r1.addr(), r2.addr()],
    });
    let router = Router::bind(RouterConfig::local(0, 0), rx)
        .await
        .expect("router");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let c = connect(router.ro_addr()).await.expect("ro connect");
        seen.push(server_port(&c).await);
    }
    let ports = [r1.instance.port, r2.instance.port];
    assert!(seen.iter().all(|s| ports.contains(s)), "{seen:?}");
    assert!(
        ports.iter().all(|p| seen.contains(p)),
        "both replicas used: {seen:?}"
    );

    tx.send_replace(RouteTargets {
        primary: Some(p.addr()),
        replicas: vec![],
    });
    let c = connect(router.ro_addr())
        .await
        .expect("ro connect with no replicas");
    assert_eq!(server_port(&c).await, p.instance.port);
}

/// During a failover (no primary) a new rw client waits, bounded, and is
/// connected as soon as a primary appears.
#[tokio::test]
async fn rw_client_waits_for_a_primary() {
    let a = TestServer::primary("a").await;
    let (tx, rx) = watch::channel(RouteTargets::default());
    let router = Router::bind(RouterConfig::local(0, 0), rx)
        .await
        .expect("router");
    let addr = router.rw_addr();
    let pending = tokio::spawn(async move { connect(addr).await });
    // The router holds the accepted client while there is no primary.
    wait_for(
        "the router to hold the rw client",
        Duration::from_secs(10),
        || async {
            let s = router.stats();
            (s.accepted == 1 && s.active == 1).then_some(())
        },
    )
    .await;
    assert!(!pending.is_finished(), "the client waits for a primary");
    assert_eq!(router.stats().unroutable, 0, "not turned away");
    tx.send_replace(RouteTargets {
        primary: Some(a.addr()),
        replicas: vec![],
    });
    let client = pending
        .await
        .expect("task")
        .expect("connected once a primary exists");
    assert_eq!(server_port(&client).await, a.instance.port);
}
