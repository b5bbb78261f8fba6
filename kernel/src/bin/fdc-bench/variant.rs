//! Schema variants: the limit, drain and query runs can be repeated on several database schemas
//! in one invocation (`--schema LABEL=VERSION[+FILE]`), so a schema change is measured side by
//! side with the schema it replaces: the migrations up to VERSION, then FILE's SQL if given.
//!
//! Since migration 6 an event's tags are a `tag_ids bigint[]` column of `events`; a schema
//! stopped before it keeps them as `event_tags` rows, and the limit and query runs then write
//! those rows and run the `event_tags` versions of the tag queries
//! (`candidates/tags_rows_queries.sql`). A candidate applied on such a schema that moves the
//! tags into `events.tag_ids` says so with the line `-- fdc-bench: tags-as-array` in its file.
//! A candidate that changes what a query should look like (an index of another shape) adds the
//! new texts after its SQL, each after a `-- name: ` line as in `queries.sql`; the query run
//! uses them in place of the queries of the same names on that schema.
//! Drains run only on the latest schema: a kernel migrates the database it starts on.

use serde::Serialize;
use sqlx::PgPool;

use super::BenchError;
use fdc_kernel::store::MIGRATOR;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SchemaVariant {
    /// The name the report gives it; empty for the default (every migration).
    pub label: String,
    /// The last migration applied; every one when `None`.
    pub upto: Option<i64>,
    /// The experiment's SQL file, applied after the migrations.
    pub sql_file: Option<String>,
    #[serde(skip)]
    pub sql: Option<String>,
    /// The file's query texts (`-- name: ` blocks after its SQL), replacing those of
    /// `queries.sql` with the same names on this schema.
    #[serde(skip)]
    pub queries: Option<String>,
    pub tags: TagShape,
}

/// Where a schema keeps an event's tags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum TagShape {
    /// One `event_tags` row per tag: the model before migration 6.
    Rows,
    /// A `tag_ids bigint[]` column of `events`: the migrations' model since 6.
    #[default]
    Array,
}

/// The migration that moved the tags onto the event row.
const TAGS_ON_EVENTS: i64 = 6;

/// Where a candidate's replacement queries start.
const QUERY_MARK: &str = "-- name: ";

/// The line by which a candidate's SQL file asks for [`TagShape::Array`].
const TAGS_AS_ARRAY: &str = "-- fdc-bench: tags-as-array";

impl SchemaVariant {
    /// Every migration, nothing else: what the kernel would make.
    pub fn current() -> SchemaVariant {
        SchemaVariant::default()
    }

    /// Whether a kernel can drain into this schema: it applies every migration it embeds on
    /// start, so a schema stopped before the last one would be migrated under the benchmark
    /// (or collide with the experiment's SQL).
    pub fn kernel_can_run(&self) -> bool {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        self.tags == TagShape::Array && self.upto.is_none_or(|v| v >= latest)
    }

    pub async fn apply(&self, pool: &PgPool) -> Result<(), BenchError> {
        match self.upto {
            Some(version) => MIGRATOR.run_to(version, pool).await?,
            None => MIGRATOR.run(pool).await?,
        }
        if let Some(sql) = &self.sql {
            // Experiments only: the file is the benchmark user's own SQL.
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(pool)
                .await?;
        }
        Ok(())
    }
}

/// `today=4` or `nopk=4+experiments/drop_pk.sql` (the file is read now).
pub fn parse(arg: &str) -> Result<SchemaVariant, String> {
    let (label, spec) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected LABEL=VERSION[+FILE], got {arg:?}"))?;
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "schema label {label:?}: letters, digits and _ only"
        ));
    }
    let (version, file) = match spec.split_once('+') {
        Some((v, f)) => (v, Some(f)),
        None => (spec, None),
    };
    let upto = version
        .parse::<i64>()
        .map_err(|_| format!("{arg:?}: {version:?} is not a migration version (e.g. 3)"))?;
    let text = file
        .map(|f| std::fs::read_to_string(f).map_err(|e| format!("{arg:?}: reading {f}: {e}")))
        .transpose()?;
    let (sql, queries) = match text {
        Some(text) => match text.find(QUERY_MARK) {
            Some(at) => (Some(text[..at].to_string()), Some(text[at..].to_string())),
            None => (Some(text), None),
        },
        None => (None, None),
    };
    let tags = match &sql {
        _ if upto >= TAGS_ON_EVENTS => TagShape::Array,
        Some(sql) if sql.lines().any(|l| l.trim() == TAGS_AS_ARRAY) => TagShape::Array,
        _ => TagShape::Rows,
    };
    Ok(SchemaVariant {
        label: label.to_string(),
        upto: Some(upto),
        sql_file: file.map(str::to_string),
        sql,
        queries,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_version_and_file() {
        let v = parse("today=3").unwrap();
        assert_eq!((v.label.as_str(), v.upto, v.sql), ("today", Some(3), None));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.sql");
        std::fs::write(&file, "SELECT 1").unwrap();
        let v = parse(&format!("x=5+{}", file.display())).unwrap();
        assert_eq!((v.upto, v.sql.as_deref()), (Some(5), Some("SELECT 1")));
        assert_eq!(v.queries, None);
        std::fs::write(&file, "DROP INDEX i;\n-- name: q\nSELECT $1;\n").unwrap();
        let v = parse(&format!("x=5+{}", file.display())).unwrap();
        assert_eq!(v.sql.as_deref(), Some("DROP INDEX i;\n"));
        assert_eq!(v.queries.as_deref(), Some("-- name: q\nSELECT $1;\n"));
        assert!(parse("today").unwrap_err().contains("LABEL=VERSION"));
        assert!(parse("a b=3").unwrap_err().contains("letters"));
        assert!(parse("t=x")
            .unwrap_err()
            .contains("not a migration version"));
        assert!(parse("t=3+/nonexistent.sql")
            .unwrap_err()
            .contains("reading"));
        assert!(!parse("old=1").unwrap().kernel_can_run());
        assert!(parse("new=999").unwrap().kernel_can_run());
        assert!(SchemaVariant::current().kernel_can_run());
        assert_eq!(SchemaVariant::current().tags, TagShape::Array);
        assert_eq!(parse("before=5").unwrap().tags, TagShape::Rows);
        assert_eq!(parse("new=6").unwrap().tags, TagShape::Array);
        std::fs::write(
            &file,
            format!("{TAGS_AS_ARRAY}\nALTER TABLE events ADD x int"),
        )
        .unwrap();
        let array = parse(&format!("a=5+{}", file.display())).unwrap();
        assert_eq!(array.tags, TagShape::Array);
        assert!(
            !array.kernel_can_run(),
            "a candidate is not the kernel's schema"
        );
    }
}
