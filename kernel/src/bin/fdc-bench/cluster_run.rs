//! The cluster drain: W1 spread over 16 hash-tagged streams (`events:{0}` … `events:{15}`) on
//! a Redis Cluster of three primaries (each with a replica: what `fdc_testenv::RedisCluster`
//! starts), drained by one kernel reading all 16 (`redis+cluster://`, `ingest.streams`). Timed
//! and checked as the plain drain is; Redis CPU is the sum over the three primaries.

use std::collections::BTreeSet;

use redis::aio::MultiplexedConnection;

use super::drain::{self, DrainSetup, Kernels};
use super::env::BenchEnv;
use super::workload::W1;
use super::{BenchError, Sample};
use fdc_testenv::RedisCluster;

/// Streams the workload is spread over: enough that the slots of their hash tags fall on
/// every primary of a three-primary cluster (checked on start with `CLUSTER KEYSLOT`).
pub const STREAMS: usize = 16;

/// Name of stream `i`: the hash tag `{i}` alone decides its slot.
pub fn stream_name(i: usize) -> String {
    format!("events:{{{i}}}")
}

pub fn stream_names() -> Vec<String> {
    (0..STREAMS).map(stream_name).collect()
}

/// The stream of the `seq`-th event of the workload: round robin, so every stream gets the
/// same share (± 1) of every part of W1.
pub fn stream_of(seq: usize) -> usize {
    seq % STREAMS
}

/// `ingest.streams` as an `FDC_INGEST__STREAMS` value: a list of quoted names (a bare `{` would
/// start a map).
pub fn streams_env(streams: &[String]) -> String {
    let quoted: Vec<String> = streams.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The cluster, with plain connections to its primaries.
pub struct ClusterRedis {
    cluster: RedisCluster,
    /// Indices in `cluster.nodes` of the primaries, and a connection to each.
    primaries: Vec<(usize, MultiplexedConnection)>,
    /// Per stream, the position in `primaries` of the one serving it.
    owners: Vec<usize>,
    /// The kernel's `redis.url`: every running node as a seed.
    url: String,
}

impl ClusterRedis {
    /// Starts the cluster (three primaries, a replica each), turns the append-only file off on
    /// every node (the single Redis of the other runs has none either) and checks that the
    /// streams' slots fall on every primary. Without `replicas`, the replicas are killed once
    /// the cluster formed (an experiment: what feeding them costs the primaries).
    pub async fn start(replicas: bool) -> Result<ClusterRedis, BenchError> {
        let mut cluster = RedisCluster::start().await?;
        let mut primaries = Vec::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            let mut conn = redis::Client::open(node.url())?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("appendonly")
                .arg("no")
                .query_async::<()>(&mut conn)
                .await?;
            let role: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await?;
            if role.lines().any(|l| l.trim() == "role:master") {
                primaries.push((i, conn));
            }
        }
        let mut owners = Vec::with_capacity(STREAMS);
        for stream in stream_names() {
            let node = cluster.primary_of(&stream).await?;
            let owner = primaries
                .iter()
                .position(|(i, _)| *i == node)
                .ok_or_else(|| BenchError::Check(format!("{stream}: node {node} not a primary")))?;
            owners.push(owner);
        }
        if !replicas {
            for i in 0..cluster.nodes.len() {
                if !primaries.iter().any(|(p, _)| *p == i) {
                    cluster.kill(i);
                }
            }
            cluster.wait_ok(std::time::Duration::from_secs(30)).await?;
        }
        let seeds: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let url = format!("redis+cluster://{}/", seeds.join(","));
        let served: BTreeSet<usize> = owners.iter().copied().collect();
        if primaries.len() != 3 || served.len() != primaries.len() {
            return Err(BenchError::Check(format!(
                "{} primaries, the {STREAMS} streams fall on {} of them",
                primaries.len(),
                served.len()
            )));
        }
        Ok(ClusterRedis {
            cluster,
            primaries,
            owners,
            url,
        })
    }

    /// Streams per primary, in the order of the primaries.
    pub fn streams_per_primary(&self) -> Vec<usize> {
        (0..self.primaries.len())
            .map(|p| self.owners.iter().filter(|&&o| o == p).count())
            .collect()
    }

    fn owner(&self, stream: usize) -> MultiplexedConnection {
        self.primaries[self.owners[stream]].1.clone()
    }

    /// Empties every primary (their replicas follow).
    async fn flush(&self) -> Result<(), BenchError> {
        for (_, conn) in &self.primaries {
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut conn.clone())
                .await?;
        }
        Ok(())
    }

    /// Events of a `events`-event workload that land on each primary.
    fn events_per_primary(&self, events: usize) -> Vec<usize> {
        let mut per = vec![0; self.primaries.len()];
        for (stream, &owner) in self.owners.iter().enumerate() {
            per[owner] += events_in_stream(events, stream);
        }
        per
    }

    /// CPU seconds (user + system, `INFO cpu`) of each primary, and of the replicas together.
    async fn cpu_seconds(&self) -> Result<(Vec<f64>, f64), BenchError> {
        let mut primaries = vec![0.0; self.primaries.len()];
        let mut replicas = 0.0;
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            let mut conn = redis::Client::open(node.url())?
                .get_multiplexed_async_connection()
                .await?;
            let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
            let cpu = super::env::info_cpu_seconds(&info);
            if let Some(p) = self.primaries.iter().position(|(p, _)| *p == i) {
                primaries[p] = cpu;
            } else {
                replicas += cpu;
            }
        }
        Ok((primaries, replicas))
    }

    /// XADDs the workload, event `seq` to stream [`stream_of`]`(seq)`, pipelined per stream on
    /// its primary.
    async fn preload(&self, w1: W1, streams: &[String]) -> Result<(), BenchError> {
        const CHUNK: usize = 2_000;
        let mut pipes: Vec<(redis::Pipeline, usize)> =
            (0..STREAMS).map(|_| (redis::pipe(), 0)).collect();
        for (seq, event) in w1.iter().enumerate() {
            let s = stream_of(seq);
            let (pipe, n) = &mut pipes[s];
            pipe.cmd("XADD")
                .arg(&streams[s])
                .arg("*")
                .arg(drain::plain_entry(&event))
                .ignore();
            *n += 1;
            if *n == CHUNK {
                pipe.query_async::<()>(&mut self.owner(s)).await?;
                pipe.clear();
                *n = 0;
            }
        }
        for (s, (pipe, n)) in pipes.iter().enumerate() {
            if *n > 0 {
                pipe.query_async::<()>(&mut self.owner(s)).await?;
            }
        }
        Ok(())
    }
}

/// One cluster drain: the workload on the cluster, one kernel (`setup.replicas`) reading the
/// 16 streams, timed from its start until every stream's group has nothing pending and
/// nothing undelivered; then the same checks as the plain drain, dead letters per stream.
pub async fn run(
    env: &BenchEnv,
    cluster: &ClusterRedis,
    w1: W1,
    setup: &DrainSetup<'_>,
) -> Result<Sample, BenchError> {
    let streams = stream_names();
    env.in_run_with(setup.label, setup.db_schema, async |db| {
        cluster.flush().await?;
        cluster.preload(w1, &streams).await?;
        env.checkpoint().await?;
        let url = cluster.url.clone();
        let observer = drain::observer_at(&url)?;
        let logs = tempfile::Builder::new().prefix("fdc-bench-").tempdir()?;
        let streams_env = [("FDC_INGEST__STREAMS".to_string(), streams_env(&streams))];

        let (primaries_cpu, replicas_cpu) = cluster.cpu_seconds().await?;
        let meter = env.meter().await?;
        let mut kernels = Kernels::spawn(setup, &url, &db.url, &streams_env, logs.path())?;
        kernels
            .wait_drained(&observer, &streams, setup.timeout)
            .await?;
        let seconds = meter.started.elapsed().as_secs_f64();
        let figures = kernels.figures().await;
        let mut server = env.read_meter(&meter).await?;
        let (primaries_end, replicas_end) = cluster.cpu_seconds().await?;
        let by_primary: Vec<f64> = primaries_end
            .iter()
            .zip(&primaries_cpu)
            .map(|(end, start)| end - start)
            .collect();
        server.redis_cpu_seconds += by_primary.iter().sum::<f64>();
        server.redis_replica_cpu_seconds = replicas_end - replicas_cpu;
        kernels.stop()?;
        drain::verify(db, w1.events, &figures.stored_by, setup.expect_producers).await?;
        for (s, stream) in streams.iter().enumerate() {
            drain::check_no_dead_letters(&cluster.owner(s), stream).await?;
        }
        let mut sample = figures.sample(w1.events, seconds, server);
        sample.redis_cpu_us_per_event_by_primary = by_primary
            .iter()
            .zip(cluster.events_per_primary(w1.events))
            .map(|(cpu, events)| cpu * 1e6 / events.max(1) as f64)
            .collect();
        Ok(sample)
    })
    .await
}

/// Events of an `events`-event workload that [`stream_of`] sends to `stream`.
fn events_in_stream(events: usize, stream: usize) -> usize {
    events / STREAMS + usize::from(stream < events % STREAMS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC16-XMODEM of the key's hash tag (or the whole key), mod 16384: Redis Cluster's
    /// `CLUSTER KEYSLOT`.
    fn key_slot(key: &str) -> u16 {
        let bytes = key.as_bytes();
        let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
            let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        });
        let mut crc: u16 = 0;
        for &b in tagged.unwrap_or(bytes) {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16_384
    }

    #[test]
    fn key_slot_is_redis_cluster_keyslot() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot("123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12_182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("events:{0}"), key_slot("0"));
    }

    #[test]
    fn streams_are_named_by_hash_tag_and_quoted_for_the_env() {
        let streams = stream_names();
        assert_eq!(streams.len(), STREAMS);
        assert_eq!(streams[0], "events:{0}");
        assert_eq!(streams[15], "events:{15}");
        assert_eq!(
            streams_env(&streams[..2]),
            r#"["events:{0}", "events:{1}"]"#
        );
    }

    #[test]
    fn events_go_round_robin_over_every_stream() {
        let mut per_stream = [0usize; STREAMS];
        for seq in 0..1_000 {
            per_stream[stream_of(seq)] += 1;
        }
        for (stream, &n) in per_stream.iter().enumerate() {
            assert_eq!(events_in_stream(1_000, stream), n);
        }
        assert!(
            per_stream.iter().all(|&n| n == 62 || n == 63),
            "{per_stream:?}"
        );
    }

    #[test]
    fn the_streams_slots_spread_over_three_primaries() {
        // `redis-cli --cluster create` with three primaries splits the slots in thirds.
        let third = |slot: u16| match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        let mut per_primary = [0usize; 3];
        for stream in stream_names() {
            per_primary[third(key_slot(&stream))] += 1;
        }
        assert_eq!(per_primary, [6, 6, 4]);
    }
}
