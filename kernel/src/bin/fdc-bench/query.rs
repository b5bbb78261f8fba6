//! The query run: W1 loaded the limit run's way (binary COPY, no kernel), `VACUUM ANALYZE`
//! (what autovacuum and the kernel's index upkeep leave behind on a settled partition: the GIN
//! pending list merged, the BRIN ranges summarized, the visibility map set), then the
//! queries of `queries.sql` (the ones docs/database.md lists) timed with parameters drawn from
//! the loaded events, interleaved in random order; then the tables' and indexes' sizes.

use std::time::Instant;

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::{Connection, Postgres};
use uuid::Uuid;

use super::env::{BenchEnv, RunDb};
use super::latency::quantile_sorted;
use super::limit::{self, Ids};
use super::report::{median, Sample};
use super::variant::{SchemaVariant, TagShape};
use super::workload::{tag_key, tag_value, W1Event, TAGS_PER_EVENT, W1};
use super::BenchError;

/// The query texts, each after a `-- name:` line.
pub const QUERIES_SQL: &str = include_str!("queries.sql");
/// The tag queries of a schema keeping tags as `event_tags` rows ([`TagShape::Rows`], before
/// migration 6), same names.
const TAGS_ROWS_QUERIES_SQL: &str = include_str!("candidates/tags_rows_queries.sql");
/// The newest-events query of a schema before migration 7 (through `event_index`'s B-tree on
/// `ts`), same name.
const NEWEST_VIA_EVENT_INDEX_SQL: &str = include_str!("candidates/newest_via_event_index.sql");
/// The migration that found the newest events through the `events` keys.
const NEWEST_FROM_EVENT_KEYS: i64 = 7;

/// Timed executions per query (after [`WARM_UP`] untimed ones); the hourly tag counts read a
/// whole day of tag rows, so they run fewer times.
fn executions(name: &str) -> usize {
    match name {
        "tag_counts_hourly_day" => 20,
        _ => 300,
    }
}
const WARM_UP: usize = 3;
/// Events whose id, subject, tags and time parameters are drawn from.
const SAMPLES: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub name: &'static str,
    /// The statement without its trailing `;`.
    pub sql: &'static str,
}

/// The queries of `queries.sql`, in file order.
pub fn queries() -> Vec<Query> {
    parse(QUERIES_SQL)
}

/// The queries run on `schema`: those of `queries.sql`, the tag ones replaced by their
/// `event_tags` versions for [`TagShape::Rows`], the newest events found through
/// `event_index` before migration 7, then any the schema's candidate file replaces.
fn queries_for(schema: &SchemaVariant) -> Vec<Query> {
    let mut queries = queries();
    let mut replace = |replacements: Vec<Query>| {
        for replacement in replacements {
            if let Some(q) = queries.iter_mut().find(|q| q.name == replacement.name) {
                *q = replacement;
            }
        }
    };
    if schema.tags == TagShape::Rows {
        replace(parse(TAGS_ROWS_QUERIES_SQL));
    }
    if schema.upto.is_some_and(|v| v < NEWEST_FROM_EVENT_KEYS) {
        replace(parse(NEWEST_VIA_EVENT_INDEX_SQL));
    }
    if let Some(text) = &schema.queries {
        // A benchmark run's few candidate texts live as long as the process.
        replace(parse(String::leak(text.clone())));
    }
    queries
}

fn parse(text: &'static str) -> Vec<Query> {
    text.split("-- name: ")
        .skip(1)
        .map(|chunk| {
            let (name, rest) = chunk.split_once('\n').unwrap_or((chunk, ""));
            Query {
                name: name.trim(),
                sql: rest.trim().trim_end_matches(';'),
            }
        })
        .collect()
}

/// One query's figures in one run.
#[derive(Debug, Clone, Serialize)]
pub struct QueryFigures {
    pub name: String,
    pub executions: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_rows: f64,
}

/// Main-fork and index bytes of a table (all partitions together).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RelationSize {
    pub relation: String,
    pub table_bytes: i64,
    pub index_bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuerySample {
    /// The load (binary COPY, as in the limit run).
    pub load: Sample,
    pub queries: Vec<QueryFigures>,
    pub sizes: Vec<RelationSize>,
}

pub async fn run(
    env: &BenchEnv,
    w1: W1,
    batch_size: usize,
    seed: u64,
    schema: &SchemaVariant,
) -> Result<QuerySample, BenchError> {
    let db = env.start_run_with("query", schema).await?;
    let result = measure(env, &db, w1, batch_size, seed, schema).await;
    env.finish_run(db).await?;
    result
}

async fn measure(
    env: &BenchEnv,
    db: &RunDb,
    w1: W1,
    batch_size: usize,
    seed: u64,
    schema: &SchemaVariant,
) -> Result<QuerySample, BenchError> {
    let (load, ids, _) = limit::load(env, db, w1, batch_size, schema.tags).await?;
    sqlx::query("VACUUM ANALYZE").execute(&db.pool).await?;
    let sizes = sizes(db).await?;

    let samples = sample_events(w1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0051_5545_5259);
    let queries = queries_for(schema);
    let mut plan: Vec<(usize, Vec<Param>)> = Vec::new();
    for (q, query) in queries.iter().enumerate() {
        for _ in 0..executions(query.name) {
            let event = samples.choose(&mut rng).expect("W1 has events");
            plan.push((q, params(query.name, event, &ids, w1, &mut rng)?));
        }
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    fdc_kernel::store::set_nodelay(&mut conn).await?;
    for (q, query) in queries.iter().enumerate() {
        for (_, params) in plan.iter().filter(|(i, _)| *i == q).take(WARM_UP) {
            execute(&mut conn, query.sql, params).await?;
        }
    }
    plan.shuffle(&mut rng);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
    let mut rows: Vec<usize> = vec![0; queries.len()];
    for (q, params) in &plan {
        let started = Instant::now();
        let n = execute(&mut conn, queries[*q].sql, params).await?;
        times[*q].push(started.elapsed().as_secs_f64() * 1e3);
        let want = match queries[*q].name {
            "event_by_id" => Some(1),
            "event_tags_by_id" => Some(TAGS_PER_EVENT),
            _ => None,
        };
        if want.is_some_and(|want| n != want) {
            return Err(BenchError::Check(format!(
                "{} returned {n} rows for a loaded id, want {want:?}",
                queries[*q].name
            )));
        }
        rows[*q] += n;
    }
    conn.close().await?;
    let figures = queries
        .iter()
        .zip(times)
        .zip(rows)
        .map(|((query, mut t), rows)| {
            t.sort_by(f64::total_cmp);
            QueryFigures {
                name: query.name.to_string(),
                executions: t.len(),
                p50_ms: quantile_sorted(&t, 0.5),
                p99_ms: quantile_sorted(&t, 0.99),
                mean_rows: rows as f64 / t.len().max(1) as f64,
            }
        })
        .collect();
    Ok(QuerySample {
        load: load.finish(),
        queries: figures,
        sizes,
    })
}

/// A query parameter.
#[derive(Debug, Clone)]
enum Param {
    Id(Uuid),
    Ts(DateTime<Utc>),
    Text(String),
}

/// Parameters of one execution of `name`, drawn around `event` so that most windows hold it.
fn params(
    name: &str,
    event: &W1Event,
    ids: &Ids,
    w1: W1,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Param>, BenchError> {
    const HOUR_NS: i64 = 3_600 * 1_000_000_000;
    let ts = |ns: i64| Param::Ts(DateTime::from_timestamp_nanos(ns));
    let before = |rng: &mut ChaCha8Rng, span: i64| ts(event.ts_ns - rng.gen_range(0..span));
    let tag = |i: usize| {
        let (k, v) = event.tags[i];
        [Param::Text(tag_key(k)), Param::Text(tag_value(v))]
    };
    let subject = Param::Id(ids.subjects[event.subject as usize]);
    Ok(match name {
        "event_by_id" | "event_tags_by_id" => vec![Param::Id(event.id)],
        "subject_hour" => vec![subject, before(rng, HOUR_NS)],
        "subject_day" => vec![subject, before(rng, 24 * HOUR_NS)],
        "one_tag_hour" => [tag(0).to_vec(), vec![before(rng, HOUR_NS)]].concat(),
        "two_tags_day" => [
            tag(0).to_vec(),
            tag(1).to_vec(),
            vec![before(rng, 24 * HOUR_NS)],
        ]
        .concat(),
        // A whole-hour start within the loaded days (two days from `first_day`).
        "tag_counts_hourly_day" => {
            vec![ts((w1.first_day * 24 + rng.gen_range(0..24)) * HOUR_NS)]
        }
        "newest_100" => vec![],
        other => {
            return Err(BenchError::Check(format!(
                "queries.sql has query {other:?} the benchmark has no parameters for"
            )))
        }
    })
}

async fn execute(
    conn: &mut sqlx::PgConnection,
    sql: &'static str,
    params: &[Param],
) -> Result<usize, BenchError> {
    let mut query: sqlx::query::Query<'_, Postgres, PgArguments> =
        sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in params {
        query = match p {
            Param::Id(v) => query.bind(*v),
            Param::Ts(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.clone()),
        };
    }
    Ok(query.fetch_all(&mut *conn).await?.len())
}

/// Every `N / SAMPLES`-th event of the workload.
fn sample_events(w1: W1) -> Vec<W1Event> {
    let stride = (w1.events / SAMPLES).max(1);
    w1.iter().step_by(stride).collect()
}

async fn sizes(db: &RunDb) -> Result<Vec<RelationSize>, BenchError> {
    Ok(sqlx::query_as(
        "SELECT r.name AS relation, \
                sum(pg_relation_size(p.relid))::bigint AS table_bytes, \
                sum(pg_indexes_size(p.relid))::bigint AS index_bytes \
         FROM unnest(ARRAY['event_index', 'events', 'event_tags']) WITH ORDINALITY AS r(name, n) \
         CROSS JOIN LATERAL ( \
             SELECT relid FROM pg_partition_tree(r.name::regclass) \
             UNION SELECT r.name::regclass \
         ) p \
         WHERE (SELECT relkind FROM pg_class WHERE oid = to_regclass(r.name)) IN ('r', 'p') \
         GROUP BY r.name, r.n ORDER BY r.n",
    )
    .fetch_all(&db.pool)
    .await?)
}

/// Query runs and their per-query medians (of each run's p50 and p99).
#[derive(Debug, Clone, Serialize)]
pub struct QuerySummary {
    pub median: Vec<QueryFigures>,
    pub runs: Vec<QuerySample>,
}

impl QuerySummary {
    pub fn of(runs: Vec<QuerySample>) -> Option<QuerySummary> {
        let first = runs.first()?;
        let median = first
            .queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let m = |f: fn(&QueryFigures) -> f64| median(runs.iter().map(|r| f(&r.queries[i])));
                QueryFigures {
                    name: q.name.clone(),
                    executions: q.executions,
                    p50_ms: m(|q| q.p50_ms),
                    p99_ms: m(|q| q.p99_ms),
                    mean_rows: m(|q| q.mean_rows),
                }
            })
            .collect();
        Some(QuerySummary { median, runs })
    }

    /// The query table and the sizes of the first run.
    pub fn table(&self) -> String {
        let mut out = format!(
            "\n{:<24} {:>6} {:>10} {:>10} {:>10}\n",
            "query", "runs", "p50 ms", "p99 ms", "rows"
        );
        for q in &self.median {
            out.push_str(&format!(
                "{:<24} {:>6} {:>10.3} {:>10.3} {:>10.1}\n",
                q.name, q.executions, q.p50_ms, q.p99_ms, q.mean_rows
            ));
        }
        if let Some(run) = self.runs.first() {
            out.push_str(&format!(
                "\n{:<12} {:>12} {:>12}\n",
                "relation", "table MiB", "index MiB"
            ));
            let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
            for s in &run.sizes {
                out.push_str(&format!(
                    "{:<12} {:>12.1} {:>12.1}\n",
                    s.relation,
                    mib(s.table_bytes),
                    mib(s.index_bytes)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sql_parses_into_named_statements() {
        let names: Vec<&str> = queries().iter().map(|q| q.name).collect();
        assert_eq!(
            names,
            [
                "event_by_id",
                "event_tags_by_id",
                "subject_hour",
                "subject_day",
                "one_tag_hour",
                "two_tags_day",
                "tag_counts_hourly_day",
                "newest_100"
            ]
        );
        for q in queries() {
            assert!(q.sql.starts_with("SELECT"), "{}: {}", q.name, q.sql);
            assert!(!q.sql.contains(';'), "{}", q.name);
        }
    }

    /// The names of the queries `schema` runs with another text than `queries.sql`'s.
    fn replaced_on(schema: &str) -> Vec<&'static str> {
        let all = queries();
        let on = queries_for(&crate::variant::parse(schema).unwrap());
        assert_eq!(
            on.iter().map(|q| q.name).collect::<Vec<_>>(),
            all.iter().map(|q| q.name).collect::<Vec<_>>()
        );
        on.iter()
            .zip(&all)
            .filter(|(o, a)| o.sql != a.sql)
            .map(|(o, _)| o.name)
            .collect()
    }

    #[test]
    fn older_schemas_replace_only_queries_of_the_same_name() {
        let tag_queries: Vec<&str> = parse(TAGS_ROWS_QUERIES_SQL)
            .iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(
            tag_queries,
            [
                "event_tags_by_id",
                "one_tag_hour",
                "two_tags_day",
                "tag_counts_hourly_day"
            ]
        );
        assert_eq!(
            replaced_on("before=5"),
            [tag_queries.as_slice(), &["newest_100"]].concat()
        );
        assert_eq!(replaced_on("before=6"), ["newest_100"]);
        assert!(replaced_on("now=7").is_empty());
        let before5 = queries_for(&crate::variant::parse("before=5").unwrap());
        for (q, a) in before5.iter().zip(queries()) {
            assert!(!a.sql.contains("event_tags"), "{}: {}", a.name, a.sql);
            assert_eq!(
                q.sql.contains("event_tags"),
                tag_queries.contains(&q.name),
                "{}",
                q.name
            );
        }
        let newest = |schema: &str| {
            queries_for(&crate::variant::parse(schema).unwrap())
                .into_iter()
                .find(|q| q.name == "newest_100")
                .unwrap()
                .sql
        };
        assert!(newest("before=6").contains("FROM event_index"));
        assert!(!newest("now=7").contains("event_index"));
    }

    #[test]
    fn a_candidate_file_replaces_the_queries_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.sql");
        std::fs::write(&file, "DROP INDEX x;\n\n-- name: subject_day\nSELECT 2;\n").unwrap();
        let schema = format!("c=7+{}", file.display());
        assert_eq!(replaced_on(&schema), ["subject_day"]);
        let q = queries_for(&crate::variant::parse(&schema).unwrap());
        assert_eq!(
            q.iter().find(|q| q.name == "subject_day").unwrap().sql,
            "SELECT 2"
        );
    }

    /// docs/database.md shows every query exactly as the benchmark runs it, and no other.
    #[test]
    fn docs_show_the_queries_the_benchmark_runs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/database.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let queries = queries();
        for q in &queries {
            let block = format!("```sql\n-- name: {}\n{};\n```", q.name, q.sql);
            assert!(
                docs.contains(&block),
                "docs/database.md lacks query {} as in queries.sql:\n{block}",
                q.name
            );
        }
        assert_eq!(docs.matches("-- name: ").count(), queries.len());
    }
}
