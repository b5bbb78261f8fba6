//! A Redis Cluster resharded under load: the slot of one stream is migrated by hand to another
//! primary while a producer keeps adding to every stream. While the slot is migrating, the
//! source answers the kernel's reads of that stream (already moved) with `ASK`; the kernel
//! follows it (ASKING, then the read on the importing node), so it keeps reading the stream
//! throughout; once the slot is the target's, a MOVED points it there for good. Every
//! event whose XADD was acknowledged is stored exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fault_support::*;
use crate::support::*;
use fdc_testenv::{kernel_config, PostgresServer, RedisCluster};
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

/// Longest wait, the slot still migrating, for the events added to the moved stream in the
/// first two seconds after its keys moved to be stored (reads of it meet ASK meanwhile).
const WINDOW: Duration = Duration::from_secs(10);

/// Acknowledged XADDs: stream index, event id, when the XADD was acknowledged.
type Acked = Arc<Mutex<Vec<(usize, Uuid, Instant)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_load_is_read_throughout_and_every_event_stored_once() {
    let _serial = serial().await;
    let (cluster, postgres) = tokio::join!(RedisCluster::start(), PostgresServer::start());
    let (cluster, postgres) = (cluster.unwrap(), postgres.unwrap());
    let streams: Vec<String> = (0..3).map(|i| format!("events:{{m{i}}}")).collect();
    let moving = &streams[0];
    let source = cluster.primary_of(moving).await.unwrap();
    let mut primaries = Vec::new();
    for i in 0..cluster.nodes.len() {
        let role: String = redis::cmd("ROLE")
            .query_async::<Vec<redis::Value>>(&mut node_conn(&cluster, i).await)
            .await
            .map(|r| redis::from_redis_value(r[0].clone()).unwrap())
            .unwrap();
        if role == "master" {
            primaries.push(i);
        }
    }
    assert_eq!(primaries.len(), 3, "three primaries");
    let target = *primaries.iter().find(|&&p| p != source).unwrap();

    let mut config = kernel_config(&cluster.url(), &postgres.url());
    config.ingest.streams = streams.clone();
    let kernel = start_ready(config).await;
    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();

    // A steady producer on every stream, through redis-rs's cluster client (which follows
    // MOVED and ASK itself).
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce(
        cluster.seed_urls(),
        streams.clone(),
        acked.clone(),
        stop.clone(),
    ));
    assert!(wait_stored_at_least(&pg, 100).await >= 100);

    // The migration, by hand as `redis-cli --cluster reshard` does it.
    let (src, dst) = (
        node_conn(&cluster, source).await,
        node_conn(&cluster, target).await,
    );
    let slot: u16 = query(&src, redis::cmd("CLUSTER").arg("KEYSLOT").arg(moving)).await;
    let src_id: String = query(&src, redis::cmd("CLUSTER").arg("MYID")).await;
    let dst_id: String = query(&dst, redis::cmd("CLUSTER").arg("MYID")).await;
    let _: () = query(
        &dst,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&src_id),
    )
    .await;
    let _: () = query(
        &src,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&dst_id),
    )
    .await;
    let keys: Vec<String> = query(
        &src,
        redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100),
    )
    .await;
    assert!(
        keys.contains(moving),
        "{moving} is in slot {slot}: {keys:?}"
    );
    let _: () = query(
        &src,
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(cluster.nodes[target].port())
            .arg("")
            .arg(0)
            .arg(10_000)
            .arg("KEYS")
            .arg(&keys),
    )
    .await;
    let moved_at = Instant::now();

    // The slot is still migrating: the source answers ASK for the moved stream. Events the
    // producer added there meanwhile (on the target, after an ASKING) are stored before the
    // migration ends, so the kernel kept reading the stream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during: Vec<Uuid> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _, at)| *s == 0 && *at > moved_at)
        .map(|(_, id, _)| *id)
        .collect();
    assert!(
        !during.is_empty(),
        "the producer added to {moving} after MIGRATE"
    );
    let stored = wait_for(WINDOW, during.len() as i64, || {
        stored_of(&pg, during.clone())
    })
    .await;
    assert_eq!(
        stored,
        during.len() as i64,
        "events added to {moving} while its slot was migrating (reads answered ASK) are stored before the migration ends"
    );
    let still: String = query(&src, redis::cmd("CLUSTER").arg("NODES")).await;
    assert!(
        still.contains(&format!("[{slot}->-{dst_id}]")),
        "slot {slot} was still migrating: {still}"
    );

    // The migration ends: the target first, then the source, then the other primary.
    let mut order = vec![target, source];
    order.extend(primaries.iter().filter(|&&p| p != target && p != source));
    for node in order {
        let _: () = query(
            &node_conn(&cluster, node).await,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&dst_id),
        )
        .await;
    }
    let ended_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    assert_eq!(cluster.primary_of(moving).await.unwrap(), target);

    let acked = acked.lock().unwrap().clone();
    let after = acked
        .iter()
        .filter(|(s, _, at)| *s == 0 && *at > ended_at)
        .count();
    assert!(
        after > 0,
        "the producer added to {moving} after the migration"
    );
    let sent: Vec<Uuid> = acked.iter().map(|(_, id, _)| *id).collect();
    assert_stored_once(&pg, &sent).await;
    for stream in &streams {
        let conn = cluster.owner_conn(stream).await.unwrap();
        assert_eq!(
            wait_for(WAIT, 0, || pending(&conn, stream, "kernel")).await,
            0,
            "{stream}: entries left pending"
        );
    }
    kernel.shutdown().await;
}

/// XADDs one event to each stream in turn, every few milliseconds, until `stop`; records each
/// acknowledged one. An XADD that fails (none should) is not recorded.
async fn produce(seeds: Vec<String>, streams: Vec<String>, acked: Acked, stop: Arc<AtomicBool>) {
    let client = redis::cluster::ClusterClient::new(seeds).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let sets: Vec<EventSet> = streams.iter().map(|_| EventSet::new(5000, 0)).collect();
    for n in 0..5000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        for (s, stream) in streams.iter().enumerate() {
            let added: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(&sets[s].entries[n])
                .query_async(&mut conn)
                .await;
            match added {
                Ok(_) => acked
                    .lock()
                    .unwrap()
                    .push((s, sets[s].ids[n], Instant::now())),
                Err(e) => eprintln!("XADD to {stream} failed: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn node_conn(cluster: &RedisCluster, i: usize) -> MultiplexedConnection {
    redis_conn_at(&cluster.nodes[i].url()).await
}

async fn query<T: redis::FromRedisValue>(conn: &MultiplexedConnection, cmd: &mut redis::Cmd) -> T {
    cmd.query_async(&mut conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// How many of `ids` are stored.
async fn stored_of(pg: &sqlx::PgPool, ids: Vec<Uuid>) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM events WHERE event_id = ANY($1)")
        .bind(ids)
        .fetch_one(pg)
        .await
        .unwrap()
}
