//! SQLite [`IssueStore`].
//!
//! One row per issue in `issues` (migration 1 in [`super::db`]); `seq` is the
//! creation order and `status` holds the wire name. The queue is the set of
//! `pending` rows ordered by `seq`, read through the `issues_by_status(status, seq)`
//! index, so popping, listing by status and recovery do not scan finished issues.
//! `pop_pending` and `recover_in_flight` each run in one `BEGIN IMMEDIATE`
//! transaction: SQLite admits one such writer at a time per file, across
//! connections and processes, so an issue is handed out once.

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};

use super::db::{map_error, Database};
use crate::issues::{
    interrupted_reason, new_issue_id, now_ms, status_details, IssueRecord, IssueStatus, IssueStore,
};
use crate::StoreError;

/// The issue queue in the SQLite database (see the module docs).
#[derive(Clone, Debug)]
pub struct SqliteIssueStore {
    db: Database,
}

impl SqliteIssueStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Columns of an [`IssueRecord`], in [`raw_from_row`] order.
const COLUMNS: &str =
    "id, blueprint_id, intent, status, reason, new_version, attempts, created_at_ms, updated_at_ms";

/// A row as read inside [`Database::call`]; checked afterwards.
struct RawIssue {
    id: String,
    blueprint_id: String,
    intent: String,
    status: String,
    reason: Option<String>,
    new_version: Option<String>,
    attempts: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

fn raw_from_row(r: &Row<'_>) -> rusqlite::Result<RawIssue> {
    Ok(RawIssue {
        id: r.get(0)?,
        blueprint_id: r.get(1)?,
        intent: r.get(2)?,
        status: r.get(3)?,
        reason: r.get(4)?,
        new_version: r.get(5)?,
        attempts: r.get(6)?,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
    })
}

fn corrupt(id: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt stored issue {id}: {detail}"))
}

fn parse_status(id: &str, text: &str) -> Result<IssueStatus, StoreError> {
    text.parse().map_err(|e| corrupt(id, e))
}

impl RawIssue {
    fn parse(self) -> Result<IssueRecord, StoreError> {
        let status = parse_status(&self.id, &self.status)?;
        let attempts = u32::try_from(self.attempts)
            .map_err(|_| corrupt(&self.id, format_args!("attempts {}", self.attempts)))?;
        Ok(IssueRecord {
            id: self.id,
            blueprint_id: self.blueprint_id,
            intent: self.intent,
            status,
            reason: self.reason,
            new_version: self.new_version,
            attempts,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Status of an issue (`None`: unknown); for the ledger's checks.
pub(super) fn status_of(conn: &Connection, id: &str) -> Result<Option<IssueStatus>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT status FROM issues WHERE id = ?1")
        .map_err(map_error)?
        .query_row([id], |r| r.get(0))
        .optional()
        .map_err(map_error)?;
    text.map(|t| parse_status(id, &t)).transpose()
}

/// Set the status and (already normalised) details of an issue; `false` if
/// unknown.
pub(super) fn write_status(
    conn: &Connection,
    id: &str,
    status: IssueStatus,
    reason: Option<&str>,
    new_version: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE issues SET status = ?1, reason = ?2, new_version = ?3, updated_at_ms = ?4 \
             WHERE id = ?5",
        )
        .map_err(map_error)?
        .execute(params![status.as_str(), reason, new_version, now, id])
        .map_err(map_error)?;
    Ok(changed > 0)
}

#[async_trait::async_trait]
impl IssueStore for SqliteIssueStore {
    async fn create(&self, blueprint_id: &str, intent: &str) -> Result<IssueRecord, StoreError> {
        let now = now_ms();
        let blueprint_id = blueprint_id.to_owned();
        let intent = intent.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO issues (id, blueprint_id, intent, status, attempts, \
                         created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
                    )
                    .map_err(map_error)?;
                // A UUIDv4 collision is astronomically unlikely; retry a few times
                // rather than fail if it ever happens.
                let mut tries = 0;
                let id = loop {
                    let id = new_issue_id();
                    match stmt.execute(params![
                        id,
                        blueprint_id,
                        intent,
                        IssueStatus::Pending.as_str(),
                        now
                    ]) {
                        Ok(_) => break id,
                        Err(e)
                            if tries < 3
                                && e.sqlite_error_code()
                                    == Some(ErrorCode::ConstraintViolation) =>
                        {
                            tries += 1;
                        }
                        Err(e) => return Err(map_error(e)),
                    }
                };
                Ok(IssueRecord {
                    id,
                    blueprint_id,
                    intent,
                    status: IssueStatus::Pending,
                    reason: None,
                    new_version: None,
                    attempts: 0,
                    created_at_ms: now,
                    updated_at_ms: now,
                })
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<IssueRecord>, StoreError> {
        let id = id.to_owned();
        let raw = self
            .db
            .call(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM issues WHERE id = ?1"))
                    .map_err(map_error)?
                    .query_row([id], raw_from_row)
                    .optional()
                    .map_err(map_error)
            })
            .await?;
        raw.map(RawIssue::parse).transpose()
    }

    async fn list(
        &self,
        status: Option<IssueStatus>,
        limit: usize,
    ) -> Result<Vec<IssueRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = sql_limit(limit);
        let raw = self
            .db
            .call(move |conn| {
                let rows = match status {
                    Some(st) => {
                        let mut stmt = conn
                            .prepare_cached(&format!(
                                "SELECT {COLUMNS} FROM issues WHERE status = ?1 \
                                 ORDER BY seq DESC LIMIT ?2"
                            ))
                            .map_err(map_error)?;
                        let rows = stmt
                            .query_map(params![st.as_str(), limit], raw_from_row)
                            .map_err(map_error)?
                            .collect::<rusqlite::Result<Vec<_>>>();
                        rows
                    }
                    None => {
                        let mut stmt = conn
                            .prepare_cached(&format!(
                                "SELECT {COLUMNS} FROM issues ORDER BY seq DESC LIMIT ?1"
                            ))
                            .map_err(map_error)?;
                        let rows = stmt
                            .query_map([limit], raw_from_row)
                            .map_err(map_error)?
                            .collect::<rusqlite::Result<Vec<_>>>();
                        rows
                    }
                };
                rows.map_err(map_error)
            })
            .await?;
        raw.into_iter().map(RawIssue::parse).collect()
    }

    async fn pop_pending(&self) -> Result<Option<IssueRecord>, StoreError> {
        let now = now_ms();
        let raw = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                let raw = tx
                    .prepare_cached(&format!(
                        "UPDATE issues SET status = ?1, attempts = attempts + 1, \
                         updated_at_ms = ?2 \
                         WHERE seq = (SELECT seq FROM issues WHERE status = ?3 \
                                      ORDER BY seq LIMIT 1) \
                         RETURNING {COLUMNS}"
                    ))
                    .map_err(map_error)?
                    .query_row(
                        params![
                            IssueStatus::InFlight.as_str(),
                            now,
                            IssueStatus::Pending.as_str()
                        ],
                        raw_from_row,
                    )
                    .optional()
                    .map_err(map_error)?;
                tx.commit().map_err(map_error)?;
                Ok(raw)
            })
            .await?;
        raw.map(RawIssue::parse).transpose()
    }

    async fn set_status(
        &self,
        id: &str,
        status: IssueStatus,
        reason: Option<String>,
        new_version: Option<String>,
    ) -> Result<bool, StoreError> {
        let (reason, new_version) = status_details(status, reason, new_version)?;
        let id = id.to_owned();
        let now = now_ms();
        self.db
            .call(move |conn| {
                write_status(
                    conn,
                    &id,
                    status,
                    reason.as_deref(),
                    new_version.as_deref(),
                    now,
                )
            })
            .await
    }

    async fn recover_in_flight(
        &self,
        max_attempts: u32,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let now = now_ms();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                let in_flight: Vec<(String, i64)> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT id, attempts FROM issues WHERE status = ?1 ORDER BY seq",
                        )
                        .map_err(map_error)?;
                    let rows = stmt
                        .query_map([IssueStatus::InFlight.as_str()], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .map_err(map_error)?
                        .collect::<rusqlite::Result<Vec<_>>>();
                    rows.map_err(map_error)?
                };
                let (mut requeued, mut rejected) = (Vec::new(), Vec::new());
                for (id, attempts) in in_flight {
                    let attempts = u32::try_from(attempts)
                        .map_err(|_| corrupt(&id, format_args!("attempts {attempts}")))?;
                    if attempts < max_attempts {
                        write_status(&tx, &id, IssueStatus::Pending, None, None, now)?;
                        requeued.push(id);
                    } else {
                        let reason = interrupted_reason(attempts);
                        write_status(&tx, &id, IssueStatus::Rejected, Some(&reason), None, now)?;
                        rejected.push(id);
                    }
                }
                tx.commit().map_err(map_error)?;
                Ok((requeued, rejected))
            })
            .await
    }
}
