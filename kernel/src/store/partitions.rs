//! Daily range partitions of `events`, created on demand.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use sqlx::PgPool;

use super::StoreError;

/// For each GIN and BRIN index of the named partitions (those that exist): merge the pending
/// list, summarize the new ranges. Returns how many indexes it saw to.
const TIDY_INDEXES: &str = "\
SELECT count(CASE am.amname
                  WHEN 'gin' THEN gin_clean_pending_list(i.indexrelid::regclass)
                  ELSE brin_summarize_new_values(i.indexrelid::regclass) END)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
WHERE i.indrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) AS n)
  AND am.amname IN ('gin', 'brin')";

/// Remembers which days already have partitions, so a batch costs no DDL once its day exists.
#[derive(Clone, Default)]
pub struct Partitions {
    known: Arc<Mutex<BTreeSet<i64>>>,
}

/// `YYYYMMDD` of a day counted from the epoch: the suffix of its partition tables.
pub fn day_name(day: i64) -> String {
    day_date(day).format("%Y%m%d").to_string()
}

/// The statement that creates `table`'s partition for `day`, if missing. `events` is the one
/// partitioned table since migration 6; a database migrated only up to 5 also has
/// `event_tags` (the benchmark and the migration test build such databases).
pub fn create_partition_sql(table: &str, day: i64) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table}_p{} PARTITION OF {table} \
         FOR VALUES FROM ('{}') TO ('{}')",
        day_name(day),
        day_date(day),
        day_date(day + 1)
    )
}

fn day_date(day: i64) -> NaiveDate {
    DateTime::<Utc>::UNIX_EPOCH.date_naive() + Days::days(day)
}

pub fn today() -> i64 {
    Utc::now().timestamp().div_euclid(86_400)
}

impl Partitions {
    /// Forgets which partitions exist (after a switch to another server).
    pub fn clear(&self) {
        self.known.lock().expect("partition cache poisoned").clear();
    }

    /// Makes sure `events` has partitions for `days`. Safe under concurrent replicas: the
    /// DDL runs under a transaction-scoped advisory lock and `IF NOT EXISTS`.
    pub async fn ensure(&self, pool: &PgPool, days: &BTreeSet<i64>) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let known = self.known.lock().expect("partition cache poisoned");
            days.iter()
                .filter(|d| !known.contains(d))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        lock_partition_ddl(&mut tx).await?;
        for &day in &missing {
            ddl(&mut tx, create_partition_sql("events", day)).await?;
        }
        tx.commit().await?;
        self.known
            .lock()
            .expect("partition cache poisoned")
            .extend(missing);
        Ok(())
    }

    /// Creates today's partition and `ahead` days more.
    pub async fn ensure_ahead(&self, pool: &PgPool, ahead: u32) -> Result<(), StoreError> {
        let today = today();
        let days = (today..=today + i64::from(ahead)).collect();
        self.ensure(pool, &days).await
    }

    /// Drops the partitions entirely older than `keep_days` and the matching de-duplication
    /// rows. Returns the days dropped.
    pub async fn drop_older_than(
        &self,
        pool: &PgPool,
        keep_days: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let cutoff = today() - i64::from(keep_days);
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'events'",
        )
        .fetch_all(pool)
        .await?;
        let mut dropped = Vec::new();
        for name in names {
            let Some(day) = parse_day(&name) else {
                continue;
            };
            if day >= cutoff {
                continue;
            }
            let mut tx = pool.begin().await?;
            lock_partition_ddl(&mut tx).await?;
            ddl(
                &mut tx,
                format!("DROP TABLE IF EXISTS events_p{}", day_name(day)),
            )
            .await?;
            sqlx::query("DELETE FROM event_index WHERE ts >= $1 AND ts < $2")
                .bind(day_date(day).and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
                .bind(day_date(day + 1).and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.known
                .lock()
                .expect("partition cache poisoned")
                .remove(&day);
            dropped.push(day);
        }
        Ok(dropped)
    }

    /// Merges the GIN pending lists and summarizes the new BRIN ranges of the partitions being
    /// written (today's and yesterday's), so queries on fresh events read neither a long
    /// pending list nor every unsummarized page; autovacuum does the same, later. One replica
    /// at a time: one that finds another at it skips its turn. Returns the indexes tidied.
    pub async fn tidy_indexes(&self, pool: &PgPool) -> Result<i64, StoreError> {
        let today = today();
        let names: Vec<String> = [today - 1, today]
            .iter()
            .map(|&day| format!("events_p{}", day_name(day)))
            .collect();
        let mut tx = pool.begin().await?;
        let mine: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('fdc.index_upkeep'))")
                .fetch_one(&mut *tx)
                .await?;
        if !mine {
            return Ok(0);
        }
        let tidied: i64 = sqlx::query_scalar(TIDY_INDEXES)
            .bind(&names)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(tidied)
    }
}

/// Serializes partition DDL across replicas for the rest of the transaction.
async fn lock_partition_ddl(tx: &mut sqlx::PgTransaction<'_>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('fdc.partitions'))")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Runs one partition statement in `tx`.
async fn ddl(tx: &mut sqlx::PgTransaction<'_>, sql: String) -> Result<(), StoreError> {
    // Safe: callers format only day suffixes and date bounds into constant statements.
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn parse_day(partition: &str) -> Option<i64> {
    let suffix = partition.strip_prefix("events_p")?;
    let date = NaiveDate::parse_from_str(suffix, "%Y%m%d").ok()?;
    Some((date - DateTime::<Utc>::UNIX_EPOCH.date_naive()).num_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip() {
        assert_eq!(day_name(0), "19700101");
        assert_eq!(day_name(20_000), "20241004");
        assert_eq!(parse_day("events_p20241004"), Some(20_000));
        assert_eq!(parse_day("events_default"), None);
    }
}
