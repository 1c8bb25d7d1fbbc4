//! SQLite [`OutputStore`].
//!
//! One row per record in `outputs` (migration 1 in [`super::db`]), in insertion
//! order by `seq`; the event and the parent refs are stored as JSON. Lookups are
//! indexed: by the `UNIQUE` id, else the newest row of a producer through
//! `outputs_by_producer(producer_agent, seq)`. Retention (project decision 11):
//! each append deletes, in the same transaction, the rows more than `max_records`
//! older than the newest, a range delete on the primary key.

use mse_engine::ids::random_hex;
use mse_engine::OutputEvent;
use rusqlite::{ffi, params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::db::{map_error, Database};
use crate::blueprints::StoreError;
use crate::outputs::{OutputRecord, OutputStore};

/// Data-plane outputs in the SQLite database, at most `max_records` of them.
#[derive(Clone, Debug)]
pub struct SqliteOutputStore {
    db: Database,
    max_records: usize,
}

impl SqliteOutputStore {
    /// A store keeping at most `max_records` records (at least 1).
    pub fn new(db: Database, max_records: usize) -> Self {
        Self {
            db,
            max_records: max_records.max(1),
        }
    }

    /// The retention cap.
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Columns of an [`OutputRecord`], in [`raw_from_row`] order.
macro_rules! columns {
    () => {
        "id, task_id, attempt, producer_agent, event_json, parent_refs_json"
    };
}

const INSERT_SQL: &str = concat!(
    "INSERT INTO outputs (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
);

/// Rows are only ever deleted as a prefix of `seq`, so this keeps the newest
/// `?1` rows.
const RETENTION_SQL: &str = "DELETE FROM outputs WHERE seq <= (SELECT MAX(seq) FROM outputs) - ?1";

const BY_ID_SQL: &str = concat!("SELECT ", columns!(), " FROM outputs WHERE id = ?1");

const NEWEST_BY_PRODUCER_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM outputs WHERE producer_agent = ?1 ORDER BY seq DESC LIMIT 1"
);

const COUNT_SQL: &str = "SELECT count(*) FROM outputs";

/// A row as read inside [`Database::call`]; JSON is parsed afterwards.
struct RawRecord {
    id: String,
    task_id: String,
    attempt: i64,
    producer_agent: String,
    event_json: String,
    parent_refs_json: String,
}

fn raw_from_row(r: &Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        id: r.get(0)?,
        task_id: r.get(1)?,
        attempt: r.get(2)?,
        producer_agent: r.get(3)?,
        event_json: r.get(4)?,
        parent_refs_json: r.get(5)?,
    })
}

fn corrupt(id: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt stored output {id}: {detail}"))
}

impl RawRecord {
    fn parse(self) -> Result<OutputRecord, StoreError> {
        let attempt = u32::try_from(self.attempt)
            .map_err(|_| corrupt(&self.id, format_args!("attempt {}", self.attempt)))?;
        let event: OutputEvent =
            serde_json::from_str(&self.event_json).map_err(|e| corrupt(&self.id, e))?;
        let parent_refs: Vec<String> =
            serde_json::from_str(&self.parent_refs_json).map_err(|e| corrupt(&self.id, e))?;
        Ok(OutputRecord {
            id: self.id,
            task_id: self.task_id,
            attempt,
            producer_agent: self.producer_agent,
            event,
            parent_refs,
        })
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|f| f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn find(conn: &Connection, sql: &str, key: &str) -> Result<Option<RawRecord>, StoreError> {
    conn.prepare_cached(sql)
        .map_err(map_error)?
        .query_row([key], raw_from_row)
        .optional()
        .map_err(map_error)
}

#[async_trait::async_trait]
impl OutputStore for SqliteOutputStore {
    async fn append(&self, record: OutputRecord) -> Result<String, StoreError> {
        let event_json = serde_json::to_string(&record.event)
            .map_err(|e| StoreError::Unavailable(format!("cannot serialize output: {e}")))?;
        let parent_refs_json = serde_json::to_string(&record.parent_refs)
            .map_err(|e| StoreError::Unavailable(format!("cannot serialize output: {e}")))?;
        let max_records = i64::try_from(self.max_records).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                let id = {
                    let mut insert = tx.prepare_cached(INSERT_SQL).map_err(map_error)?;
                    loop {
                        let id = format!("out-{}", random_hex(5));
                        match insert.execute(params![
                            id,
                            record.task_id,
                            record.attempt,
                            record.producer_agent,
                            event_json,
                            parent_refs_json,
                        ]) {
                            Ok(_) => break id,
                            Err(e) if is_unique_violation(&e) => continue,
                            Err(e) => return Err(map_error(e)),
                        }
                    }
                };
                tx.prepare_cached(RETENTION_SQL)
                    .map_err(map_error)?
                    .execute([max_records])
                    .map_err(map_error)?;
                tx.commit().map_err(map_error)?;
                Ok(id)
            })
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<OutputRecord>, StoreError> {
        let key = key.to_owned();
        let raw = self
            .db
            .call(move |conn| match find(conn, BY_ID_SQL, &key)? {
                Some(raw) => Ok(Some(raw)),
                None => find(conn, NEWEST_BY_PRODUCER_SQL, &key),
            })
            .await?;
        raw.map(RawRecord::parse).transpose()
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .db
            .call(|conn| {
                conn.prepare_cached(COUNT_SQL)
                    .map_err(map_error)?
                    .query_row([], |r| r.get(0))
                    .map_err(map_error)
            })
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unique_violation_is_detected() {
        let db = Database::in_memory().unwrap();
        db.call(|conn| {
            let insert =
                |id: &str| conn.execute(INSERT_SQL, params![id, "T-1", 1, "p", "{}", "[]"]);
            insert("out-0000000000").unwrap();
            let dup = insert("out-0000000000").unwrap_err();
            assert!(is_unique_violation(&dup), "{dup:?}");
            let other = conn.execute("INSERT INTO nope VALUES (1)", []).unwrap_err();
            assert!(!is_unique_violation(&other));
            Ok(())
        })
        .await
        .unwrap();
    }

    /// Lookups and retention are searches on a key or index: no scan, no sort.
    #[tokio::test]
    async fn statements_are_indexed() {
        let db = Database::in_memory().unwrap();
        db.call(|conn| {
            for (sql, want) in [
                (BY_ID_SQL, "USING INDEX sqlite_autoindex_outputs_1"),
                (NEWEST_BY_PRODUCER_SQL, "USING INDEX outputs_by_producer"),
                (RETENTION_SQL, "USING INTEGER PRIMARY KEY"),
            ] {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
                let plan: Vec<String> = stmt
                    .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                for step in &plan {
                    assert!(!step.starts_with("SCAN"), "{sql}: {plan:?}");
                    assert!(!step.contains("TEMP B-TREE"), "{sql}: {plan:?}");
                }
                assert!(plan.iter().any(|s| s.contains(want)), "{sql}: {plan:?}");
            }
            Ok(())
        })
        .await
        .unwrap();
    }
}
