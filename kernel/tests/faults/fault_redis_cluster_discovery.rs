//! Stream patterns on a Redis Cluster (three primaries, a replica each): with
//! `ingest.streams: ["events:{*}"]` the kernel finds the matching streams on every primary
//! (one SCAN per primary), those created before it started and after, and stores every event
//! once; a matching key without a usable hash tag is not read. Here, under the fault tests'
//! lock, for the same reason as `fault_redis_cluster`: six Redis servers are a load.

use std::collections::HashMap;
use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use fdc_testenv::{kernel_config, PostgresServer, RedisCluster};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_a_pattern_on_every_primary_are_found_and_stored_once() {
    let _serial = serial().await;
    let (cluster, postgres) = tokio::join!(RedisCluster::start(), PostgresServer::start());
    let (cluster, postgres) = (cluster.unwrap(), postgres.unwrap());
    // Two streams per primary: one written before the kernel starts, one after.
    let mut by_primary: HashMap<usize, Vec<String>> = HashMap::new();
    for i in 0.. {
        let stream = format!("events:{{s{i}}}");
        let owner = cluster.primary_of(&stream).await.unwrap();
        let streams = by_primary.entry(owner).or_default();
        if streams.len() < 2 {
            streams.push(stream);
        }
        if by_primary.len() == 3 && by_primary.values().all(|s| s.len() == 2) {
            break;
        }
    }
    let early: Vec<&String> = by_primary.values().map(|s| &s[0]).collect();
    let late: Vec<&String> = by_primary.values().map(|s| &s[1]).collect();

    let mut sent: Vec<Uuid> = Vec::new();
    let mut invalid: HashMap<String, usize> = HashMap::new();
    for stream in &early {
        let set = EventSet::new(150, 30);
        let conn = cluster.owner_conn(stream).await.unwrap();
        publish(&conn, stream, &set.entries).await;
        sent.extend(&set.ids);
        invalid.insert(stream.to_string(), set.invalid);
    }
    // `events:{}` matches the pattern, but an empty tag hashes the whole key: its dead
    // letters could not share its slot, so the kernel leaves it alone.
    let untagged = EventSet::new(7, 0);
    let untagged_conn = cluster.owner_conn("events:{}").await.unwrap();
    publish(&untagged_conn, "events:{}", &untagged.entries).await;

    let mut config = kernel_config(&cluster.url(), &postgres.url());
    config.ingest.streams = vec!["events:{*}".into()];
    config.ingest.discover_interval = Duration::from_millis(300);
    let kernel = start_ready(config).await;
    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    assert_eq!(wait_stored(&pg, sent.len()).await, sent.len() as i64);

    for stream in &late {
        let set = EventSet::new(250, 50);
        let conn = cluster.owner_conn(stream).await.unwrap();
        publish(&conn, stream, &set.entries).await;
        sent.extend(&set.ids);
        invalid.insert(stream.to_string(), set.invalid);
    }
    assert_stored_once(&pg, &sent).await;
    for (stream, invalid) in &invalid {
        let conn = cluster.owner_conn(stream).await.unwrap();
        assert_eq!(
            wait_for(WAIT, 0, || pending(&conn, stream, "kernel")).await,
            0,
            "{stream}: entries left pending"
        );
        let letters = read_stream(&conn, &format!("{stream}:dlq")).await;
        assert_eq!(letters.len(), *invalid, "dead letters of {stream}");
    }
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_streams_read").await,
        Some(6.0)
    );
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("events:{}")
        .query_async(&mut untagged_conn.clone())
        .await
        .unwrap();
    assert!(groups.is_empty(), "events:{{}} was read");
    kernel.shutdown().await;
}
