//! A Redis Cluster (three primaries, a replica each): the kernel reads streams spread over its
//! nodes, each from the node owning the stream's slot, and dead-letters into the same slot.
//! Here rather than with the ingest tests: six Redis servers are a load, so these run one at
//! a time under the fault tests' lock.

use std::collections::HashSet;

use crate::fault_support::*;
use crate::support::*;
use fdc_testenv::{kernel_config, PostgresServer, RedisCluster};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_every_primary_are_drained_and_dead_lettered_in_their_slot() {
    let _serial = serial().await;
    let (cluster, postgres) = tokio::join!(RedisCluster::start(), PostgresServer::start());
    let (cluster, postgres) = (cluster.unwrap(), postgres.unwrap());
    let streams: Vec<String> = (0..6).map(|i| format!("events:{{s{i}}}")).collect();
    let mut owners = HashSet::new();
    for stream in &streams {
        owners.insert(cluster.primary_of(stream).await.unwrap());
    }
    assert!(
        owners.len() >= 2,
        "the streams span several primaries: {owners:?}"
    );

    let mut config = kernel_config(&cluster.url(), &postgres.url());
    config.ingest.streams = streams.clone();
    let kernel = start_ready(config).await;
    let mut sent: Vec<Uuid> = Vec::new();
    let mut invalid = Vec::new();
    for stream in &streams {
        let set = EventSet::new(300, 30);
        let owner = &cluster.nodes[cluster.primary_of(stream).await.unwrap()];
        publish(&redis_conn_at(&owner.url()).await, stream, &set.entries).await;
        sent.extend(&set.ids);
        invalid.push(set.invalid);
    }

    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    assert_stored_once(&pg, &sent).await;
    for (stream, invalid) in streams.iter().zip(invalid) {
        let owner = &cluster.nodes[cluster.primary_of(stream).await.unwrap()];
        let conn = redis_conn_at(&owner.url()).await;
        assert_eq!(
            wait_for(WAIT, 0, || pending(&conn, stream, "kernel")).await,
            0
        );
        let letters = read_stream(&conn, &format!("{stream}:dlq")).await;
        assert_eq!(letters.len(), invalid, "dead letters of {stream}");
        assert!(letters
            .iter()
            .all(|f| f.get("source_stream") == Some(stream)));
    }
    kernel.shutdown().await;
}

/// A primary killed with kill -9 while events flow: its replica takes over, the kernel follows
/// (reads the slot map again, claims what the lost acknowledgements left pending), and every
/// event whose XADD the producer saw confirmed is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_flow_is_followed_and_every_event_stored_once() {
    let _serial = serial().await;
    let (cluster, postgres) = tokio::join!(RedisCluster::start(), PostgresServer::start());
    let (mut cluster, postgres) = (cluster.unwrap(), postgres.unwrap());
    let streams: Vec<String> = (0..6).map(|i| format!("events:{{s{i}}}")).collect();
    let mut config = kernel_config(&cluster.url(), &postgres.url());
    config.ingest.streams = streams.clone();
    config.postgres.statement_timeout = std::time::Duration::from_secs(2);
    config.ingest.claim_idle = std::time::Duration::from_secs(3);
    config.ingest.claim_interval = std::time::Duration::from_secs(1);
    let kernel = start_ready(config).await;
    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();

    let sets: Vec<EventSet> = streams.iter().map(|_| EventSet::new(400, 0)).collect();
    // First half, each XADD confirmed by the primary's replica (WAIT 1): what a producer that
    // asks for WAIT knows survives a failover.
    for (stream, set) in streams.iter().zip(&sets) {
        let owner = &cluster.nodes[cluster.primary_of(stream).await.unwrap()];
        let conn = redis_conn_at(&owner.url()).await;
        publish(&conn, stream, &set.entries[..200]).await;
        // Up to 10 s: on a loaded machine the replica may acknowledge later than a producer
        // would wait in production; the check is that it does confirm.
        let replicated: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(10_000)
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        assert_eq!(replicated, 1, "{stream}: the replica confirmed the entries");
    }
    assert!(wait_stored_at_least(&pg, 1).await >= 1);

    let victim = cluster.primary_of(&streams[0]).await.unwrap();
    cluster.kill(victim);
    let heir = cluster
        .wait_failover(&streams[0], std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(heir, victim);
    for (stream, set) in streams.iter().zip(&sets) {
        let owner = &cluster.nodes[cluster.primary_of(stream).await.unwrap()];
        publish(
            &redis_conn_at(&owner.url()).await,
            stream,
            &set.entries[200..],
        )
        .await;
    }

    let sent: Vec<Uuid> = sets.iter().flat_map(|s| s.ids.iter().copied()).collect();
    assert_stored_once(&pg, &sent).await;
    for stream in &streams {
        let owner = &cluster.nodes[cluster.primary_of(stream).await.unwrap()];
        let conn = redis_conn_at(&owner.url()).await;
        assert_eq!(
            wait_for(WAIT, 0, || pending(&conn, stream, "kernel")).await,
            0,
            "{stream}: entries left pending"
        );
        assert!(read_stream(&conn, &format!("{stream}:dlq"))
            .await
            .is_empty());
    }
    kernel.shutdown().await;
}

/// The stream client on a cluster: groups, a read over two slots, the group's lag (a script
/// run on the stream's node) and acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_client_reads_two_slots_in_one_call_and_reports_lag() {
    use fdc_kernel::redis_io::StreamClient;

    let _serial = serial().await;
    let cluster = RedisCluster::start().await.unwrap();
    let client = StreamClient::new(
        &cluster.url(),
        "g",
        "c",
        std::time::Duration::from_millis(100),
    )
    .unwrap();
    let streams = vec!["events:{b}".to_string(), "events:{c}".to_string()];
    assert_ne!(
        cluster.primary_of(&streams[0]).await.unwrap(),
        cluster.primary_of(&streams[1]).await.unwrap(),
        "the two tags land on different primaries"
    );
    for (stream, n) in streams.iter().zip([5, 3]) {
        client.ensure_group(stream).await.unwrap();
        let owner = &cluster.nodes[cluster.primary_of(stream).await.unwrap()];
        let entries: Vec<Vec<(&str, String)>> =
            (0..n).map(|i| vec![("n", i.to_string())]).collect();
        publish(&redis_conn_at(&owner.url()).await, stream, &entries).await;
    }
    let info = client.group_info(&streams[0]).await.unwrap();
    assert_eq!((info.pending, info.lag), (0, Some(5)));

    let read = client
        .read(
            &streams,
            &[">".to_string(), ">".to_string()],
            100,
            Some(std::time::Duration::from_millis(100)),
        )
        .await
        .unwrap();
    let from = |s: &str| read.iter().filter(|e| &*e.at.stream == s).count();
    assert_eq!((from(&streams[0]), from(&streams[1])), (5, 3));
    let info = client.group_info(&streams[1]).await.unwrap();
    assert_eq!((info.pending, info.lag), (3, Some(0)));
    let ids: Vec<&str> = read
        .iter()
        .filter(|e| *e.at.stream == *streams[1])
        .map(|e| &*e.at.id)
        .collect();
    assert_eq!(client.ack(&streams[1], &ids).await.unwrap(), 3);
}
