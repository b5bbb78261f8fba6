//! The private servers start, answer, survive a kill/restart, and clean up.

use std::time::Duration;

use fdc_testenv::{
    pg_conn_after, redis_conn_at, PostgresPair, PostgresServer, RedisCluster, RedisServer,
};
use sqlx::Connection;

#[tokio::test]
async fn postgres_restarts_after_kill_and_keeps_data() {
    let mut pg = PostgresServer::start().await.unwrap();
    drop(
        pg_conn_after(
            &pg.url(),
            "create table t(x int); insert into t values (1), (2)",
        )
        .await,
    );
    pg.kill();
    assert!(sqlx::PgConnection::connect(&pg.url()).await.is_err());
    pg.restart().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let dir = pg.data_dir();
    drop(conn);
    drop(pg);
    assert!(!dir.exists(), "temp dir removed on drop");
}

#[tokio::test]
async fn postgres_replica_streams_refuses_writes_and_takes_over_when_promoted() {
    let mut pair = PostgresPair::start().await.unwrap();
    drop(
        pg_conn_after(
            &pair.primary.url(),
            "create table t(x int); insert into t values (1), (2)",
        )
        .await,
    );
    pair.wait_caught_up(Duration::from_secs(30)).await.unwrap();

    let mut replica = sqlx::PgConnection::connect(&pair.replica.url())
        .await
        .unwrap();
    let err = sqlx::query("insert into t values (3)")
        .execute(&mut replica)
        .await
        .unwrap_err();
    let code = err.as_database_error().and_then(|e| e.code()).unwrap();
    assert_eq!(
        code, "25006",
        "a standby refuses writes as read-only: {err}"
    );

    pair.primary.stop();
    pair.promote().await.unwrap();
    sqlx::query("insert into t values (3)")
        .execute(&mut replica)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from t")
        .fetch_one(&mut replica)
        .await
        .unwrap();
    assert_eq!(
        n, 3,
        "the promoted replica has the primary's rows and takes writes"
    );
}

#[tokio::test]
async fn redis_with_aof_keeps_stream_across_restart() {
    let mut redis = RedisServer::start_with(fdc_testenv::RedisOptions { appendonly: true })
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg("s")
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    redis.restart().await.unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: i64 = redis::cmd("XLEN")
        .arg("s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_has_three_primaries_with_a_replica_each_and_one_owner_per_key() {
    let cluster = RedisCluster::start().await.unwrap();
    let mut primaries = Vec::new();
    let mut replicas = 0;
    for url in cluster.seed_urls() {
        let mut conn = redis_conn_at(&url).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        match &role[0] {
            redis::Value::BulkString(r) if r.as_slice() == b"master" => primaries.push(url),
            redis::Value::BulkString(r) if r.as_slice() == b"slave" => replicas += 1,
            other => panic!("unexpected role {other:?}"),
        }
    }
    assert_eq!((primaries.len(), replicas), (3, 3));

    let key = "events:{harness}";
    let mut conn = redis_conn_at(&primaries[0]).await;
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Exactly one primary takes the key; the others redirect to it with the key's slot.
    let mut owners = Vec::new();
    let mut redirects = Vec::new();
    for url in &primaries {
        let mut conn = redis_conn_at(url).await;
        let set: redis::RedisResult<String> = redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query_async(&mut conn)
            .await;
        match set {
            Ok(ok) => {
                assert_eq!(ok, "OK");
                owners.push(url.clone());
            }
            Err(e) => {
                let (addr, moved_slot) = e.redirect_node().expect("a MOVED redirect");
                assert_eq!(moved_slot, slot);
                redirects.push(addr.to_string());
            }
        }
    }
    assert_eq!(owners.len(), 1, "one owner of slot {slot}");
    assert_eq!(redirects.len(), 2);
    let owner_addr = owners[0]
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    assert!(
        redirects.iter().all(|a| a == owner_addr),
        "{redirects:?} -> {owner_addr}"
    );
    let mut conn = redis_conn_at(&owners[0]).await;
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "v");
}

/// A primary killed with kill -9: its replica takes over the slot, and what the producer saw
/// replicated (`WAIT 1` answered 1) is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_replica_takes_over_a_killed_primary_with_what_wait_confirmed() {
    let mut cluster = RedisCluster::start().await.unwrap();
    let key = "events:{failover}";
    let old = cluster.primary_of(key).await.unwrap();
    let mut conn = redis_conn_at(&cluster.nodes[old].url()).await;
    for i in 0..100 {
        let _: String = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("n")
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // The replica is online once the cluster started, but each write is fsynced on both nodes:
    // on a loaded machine the acknowledgement can take seconds (400 ms once answered 0 in CI).
    // 10 s stays well inside the client's 30 s reply timeout.
    let replicated: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        replicated, 1,
        "the primary's replica acknowledged the writes"
    );

    cluster.kill(old);
    let new = cluster
        .wait_failover(key, Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(new, old);
    let mut conn = redis_conn_at(&cluster.nodes[new].url()).await;
    let len: i64 = redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 100);
}
