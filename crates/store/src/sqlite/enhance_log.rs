//! SQLite [`EnhanceLogStore`].
//!
//! One row per entry in `enhance_log(seq, issue_id UNIQUE, blueprint_id, status,
//! ts_ms, entry)` (migration 1 in [`super::db`]); `entry` is the entry's JSON and
//! the other columns are copies used for filtering and ordering. The log order is
//! `(ts_ms, seq)`, read through the `enhance_log_by_ts(ts_ms, seq)` and
//! `enhance_log_by_blueprint(blueprint_id, ts_ms, seq)` indexes, so `list` reads
//! only the rows it returns (plus those a status filter skips).

use rusqlite::{params, Connection, OptionalExtension};

use super::db::{map_error, Database};
use crate::enhance_log::{EnhanceLogEntry, EnhanceLogStore};
use crate::StoreError;

/// The enhance log in the SQLite database (see the module docs).
#[derive(Clone, Debug)]
pub struct SqliteEnhanceLogStore {
    db: Database,
}

impl SqliteEnhanceLogStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt stored enhance log entry: {detail}"))
}

fn parse_entry(json: &str) -> Result<EnhanceLogEntry, StoreError> {
    serde_json::from_str(json).map_err(corrupt)
}

/// An entry's JSON, done before taking the database.
pub(super) fn entry_json(entry: &EnhanceLogEntry) -> Result<String, StoreError> {
    serde_json::to_string(entry)
        .map_err(|e| StoreError::Unavailable(format!("cannot serialize enhance log entry: {e}")))
}

/// Whether the issue has an entry; for the ledger's checks.
pub(super) fn contains(conn: &Connection, issue_id: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM enhance_log WHERE issue_id = ?1")
        .map_err(map_error)?
        .query_row([issue_id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(map_error)
}

/// Insert unless the issue already has an entry; `true` if inserted.
pub(super) fn insert(
    conn: &Connection,
    entry: &EnhanceLogEntry,
    json: &str,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT INTO enhance_log (issue_id, blueprint_id, status, ts_ms, entry) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(issue_id) DO NOTHING",
        )
        .map_err(map_error)?
        .execute(params![
            entry.issue_id,
            entry.blueprint_id,
            entry.status,
            entry.ts_ms,
            json
        ])
        .map_err(map_error)?;
    Ok(n > 0)
}

#[async_trait::async_trait]
impl EnhanceLogStore for SqliteEnhanceLogStore {
    async fn append(&self, entry: EnhanceLogEntry) -> Result<bool, StoreError> {
        let json = entry_json(&entry)?;
        self.db.call(move |conn| insert(conn, &entry, &json)).await
    }

    async fn get(&self, issue_id: &str) -> Result<Option<EnhanceLogEntry>, StoreError> {
        let issue_id = issue_id.to_owned();
        let json: Option<String> = self
            .db
            .call(move |conn| {
                conn.prepare_cached("SELECT entry FROM enhance_log WHERE issue_id = ?1")
                    .map_err(map_error)?
                    .query_row([issue_id], |r| r.get(0))
                    .optional()
                    .map_err(map_error)
            })
            .await?;
        json.as_deref().map(parse_entry).transpose()
    }

    async fn list(
        &self,
        blueprint_id: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EnhanceLogEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One statement per filter combination (each cached), so every one can use
        // its index; absent filters bind NULL and are not referenced.
        let filter = match (blueprint_id.is_some(), status.is_some()) {
            (false, false) => "",
            (true, false) => "WHERE blueprint_id = ?1",
            (false, true) => "WHERE status = ?2",
            (true, true) => "WHERE blueprint_id = ?1 AND status = ?2",
        };
        // The newest `limit` matching rows, then back to ascending order.
        let sql = format!(
            "SELECT entry FROM (SELECT entry, ts_ms, seq FROM enhance_log {filter} \
             ORDER BY ts_ms DESC, seq DESC LIMIT ?3) ORDER BY ts_ms, seq"
        );
        let blueprint_id = blueprint_id.map(str::to_owned);
        let status = status.map(str::to_owned);
        let rows: Vec<String> = self
            .db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&sql).map_err(map_error)?;
                let rows = stmt
                    .query_map(params![blueprint_id, status, limit], |r| r.get(0))
                    .map_err(map_error)?
                    .collect::<rusqlite::Result<Vec<String>>>();
                rows.map_err(map_error)
            })
            .await?;
        rows.iter().map(|j| parse_entry(j)).collect()
    }
}
