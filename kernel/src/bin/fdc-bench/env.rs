//! The benchmark's private Redis and Postgres, a fresh database per run, and the server-side
//! figures of a run (Postgres and Redis CPU, WAL bytes).

use std::time::Instant;

use redis::aio::MultiplexedConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::procfs;
use super::variant::SchemaVariant;
use super::BenchError;
use fdc_testenv::{PostgresOptions, PostgresServer, RedisServer};

pub struct BenchEnv {
    pub redis: RedisServer,
    pub postgres: PostgresServer,
    admin: PgPool,
    redis_conn: MultiplexedConnection,
    runs: std::sync::atomic::AtomicU32,
}

/// A database of its own for one run, migrated; dropped by [`BenchEnv::finish_run`].
pub struct RunDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl BenchEnv {
    /// Starts both servers. `fsync` and `full_page_writes` apply to Postgres for every run alike.
    pub async fn start(fsync: bool, full_page_writes: bool) -> Result<BenchEnv, BenchError> {
        let (redis, postgres) = tokio::join!(
            RedisServer::start(),
            PostgresServer::start_with(PostgresOptions {
                fsync,
                full_page_writes,
            })
        );
        let (redis, postgres) = (redis?, postgres?);
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&postgres.url())
            .await?;
        let redis_conn = redis::Client::open(redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        Ok(BenchEnv {
            redis,
            postgres,
            admin,
            redis_conn,
            runs: Default::default(),
        })
    }

    pub fn redis(&self) -> MultiplexedConnection {
        self.redis_conn.clone()
    }

    /// A new database with every migration and an empty Redis.
    pub async fn start_run(&self, label: &str) -> Result<RunDb, BenchError> {
        self.start_run_with(label, &SchemaVariant::current()).await
    }

    /// A new database with `schema` and an empty Redis.
    pub async fn start_run_with(
        &self,
        label: &str,
        schema: &SchemaVariant,
    ) -> Result<RunDb, BenchError> {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bench_{label}_{n}");
        // Safe: the name is built from a constant label and a counter.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&self.admin)
            .await?;
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.postgres.port()
        );
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await?;
        schema.apply(&pool).await?;
        let mut conn = self.redis();
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
        Ok(RunDb { name, url, pool })
    }

    /// Drops the run's database, so runs do not fill the disk.
    pub async fn finish_run(&self, db: RunDb) -> Result<(), BenchError> {
        db.pool.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db.name
        )))
        .execute(&self.admin)
        .await?;
        Ok(())
    }

    /// Runs `measure` on a run database of its own ([`start_run`](Self::start_run)), then drops
    /// the database whatever `measure` returned.
    pub async fn in_run<T>(
        &self,
        label: &str,
        measure: impl AsyncFnOnce(&RunDb) -> Result<T, BenchError>,
    ) -> Result<T, BenchError> {
        self.in_run_with(label, &SchemaVariant::current(), measure)
            .await
    }

    /// [`in_run`](Self::in_run) on a database with `schema`.
    pub async fn in_run_with<T>(
        &self,
        label: &str,
        schema: &SchemaVariant,
        measure: impl AsyncFnOnce(&RunDb) -> Result<T, BenchError>,
    ) -> Result<T, BenchError> {
        let db = self.start_run_with(label, schema).await?;
        let result = measure(&db).await;
        self.finish_run(db).await?;
        result
    }

    /// Writes dirty pages out now, so a run does not pay for the previous run's checkpoint.
    pub async fn checkpoint(&self) -> Result<(), BenchError> {
        sqlx::query("CHECKPOINT").execute(&self.admin).await?;
        Ok(())
    }

    pub async fn postgres_version(&self) -> Result<String, BenchError> {
        Ok(sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.admin)
            .await?)
    }

    pub async fn redis_version(&self) -> Result<String, BenchError> {
        let info = self.redis_info("server").await?;
        Ok(info_field(&info, "redis_version").unwrap_or_else(|| "unknown".into()))
    }

    async fn redis_info(&self, section: &str) -> Result<String, BenchError> {
        let mut conn = self.redis();
        Ok(redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await?)
    }

    async fn redis_cpu_seconds(&self) -> Result<f64, BenchError> {
        Ok(info_cpu_seconds(&self.redis_info("cpu").await?))
    }

    async fn wal_bytes(&self) -> Result<i64, BenchError> {
        Ok(
            sqlx::query_scalar("SELECT wal_bytes::bigint FROM pg_stat_wal")
                .fetch_one(&self.admin)
                .await?,
        )
    }

    fn postgres_cpu_seconds(&self) -> f64 {
        procfs::postmaster_pid(&self.postgres.data_dir())
            .map(procfs::tree_cpu_seconds)
            .unwrap_or(0.0)
    }

    /// Starts measuring a run: wall time, server CPU and WAL from now on.
    pub async fn meter(&self) -> Result<Meter, BenchError> {
        Ok(Meter {
            pg_cpu: self.postgres_cpu_seconds(),
            redis_cpu: self.redis_cpu_seconds().await?,
            wal: self.wal_bytes().await?,
            machine_busy: procfs::machine_busy_seconds(),
            bench_cpu: own_cpu_seconds(),
            started: Instant::now(),
        })
    }

    /// Server figures since `meter` was taken. Wall time is measured by the caller.
    pub async fn read_meter(&self, meter: &Meter) -> Result<ServerFigures, BenchError> {
        Ok(ServerFigures {
            pg_cpu_seconds: self.postgres_cpu_seconds() - meter.pg_cpu,
            redis_cpu_seconds: self.redis_cpu_seconds().await? - meter.redis_cpu,
            redis_replica_cpu_seconds: 0.0,
            wal_bytes: self.wal_bytes().await? - meter.wal,
            machine_busy_seconds: procfs::machine_busy_seconds() - meter.machine_busy,
            bench_cpu_seconds: own_cpu_seconds() - meter.bench_cpu,
        })
    }
}

/// Server counters at the start of a run.
pub struct Meter {
    pg_cpu: f64,
    redis_cpu: f64,
    wal: i64,
    machine_busy: f64,
    bench_cpu: f64,
    pub started: Instant,
}

fn own_cpu_seconds() -> f64 {
    procfs::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ServerFigures {
    pub pg_cpu_seconds: f64,
    /// The Redis servers the run reads from (the cluster run: its primaries).
    pub redis_cpu_seconds: f64,
    /// The cluster run's replicas: not per-event Redis cost, but not other load either.
    pub redis_replica_cpu_seconds: f64,
    pub wal_bytes: i64,
    /// The whole machine's busy CPU time, every process.
    pub machine_busy_seconds: f64,
    /// This benchmark process's own CPU time (producer, encoder, observer).
    pub bench_cpu_seconds: f64,
}

/// User + system CPU seconds of a Redis server from its `INFO cpu`.
pub fn info_cpu_seconds(info: &str) -> f64 {
    let get = |k: &str| {
        info_field(info, k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    get("used_cpu_sys") + get("used_cpu_user")
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}
