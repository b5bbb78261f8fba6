//! `--wal-records`: where the limit run's WAL goes, by record type (`pg_walinspect`).
//!
//! The WAL per event in the report is one number; this splits it into what writes it: heap
//! rows (`Heap2/MULTI_INSERT`), each B-tree insertion (`Btree/INSERT_LEAF`), GIN pending-list
//! appends (`Gin/UPDATE_META_PAGE`), page splits, and the full-page images of each.

use sqlx::PgPool;

use super::BenchError;

/// The current WAL insert position: where a window starts.
pub async fn start(pool: &PgPool) -> Result<String, BenchError> {
    Ok(
        sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(pool)
            .await?,
    )
}

/// Prints the WAL written since `start` (the load's start, after its subjects, tags and
/// partitions were made) by record type, per event, largest first.
pub async fn print(
    pool: &PgPool,
    start: &str,
    events: usize,
    label: &str,
) -> Result<(), BenchError> {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .execute(pool)
        .await?;
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT \"resource_manager/record_type\", count, record_size, fpi_size, combined_size \
         FROM pg_get_wal_stats($1::pg_lsn, pg_current_wal_flush_lsn(), true) \
         WHERE count > 0 ORDER BY combined_size DESC",
    )
    .bind(start)
    .fetch_all(pool)
    .await?;
    let n = events.max(1) as f64;
    let total: i64 = rows.iter().map(|r| r.4).sum();
    println!("WAL by record type, {label}limit run, per event ({events} events):");
    println!(
        "{:32} {:>9} {:>10} {:>10} {:>10}",
        "record", "records", "record B", "image B", "all B"
    );
    for (kind, count, record, image, all) in rows.iter().filter(|r| r.4 as f64 / n >= 0.05) {
        println!(
            "{kind:32} {:>9.3} {:>10.1} {:>10.1} {:>10.1}",
            *count as f64 / n,
            *record as f64 / n,
            *image as f64 / n,
            *all as f64 / n
        );
    }
    println!(
        "{:32} {:>9} {:>10} {:>10} {:>10.1}",
        "total",
        "",
        "",
        "",
        total as f64 / n
    );
    Ok(())
}
