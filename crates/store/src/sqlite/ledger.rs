//! SQLite [`EnhanceLedger`].
//!
//! Each commit is one `BEGIN IMMEDIATE` transaction over `issues`, `enhance_log`,
//! `blueprint_ids` and `blueprint_versions`: check the issue (in flight, no log
//! entry), write the version with the expected-head check, append the log entry,
//! set the issue status, commit. Any failure drops the transaction, which rolls
//! everything back; a crash before the commit leaves none of it on disk (WAL).
//!
//! The Blueprint rows are written exactly as [`super::SqliteBlueprintStore`] writes
//! (and reads) them: `version`/`parent` as 64 lowercase hex, `body` as the typed
//! Blueprint's compact JSON, `created_at_ms` non-decreasing along a history, and
//! `blueprint_ids.head_seq` moved to the new row.

use std::sync::Arc;

use mse_blueprint::{Blueprint, BlueprintVersion};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::db::{map_error, Database};
use super::{enhance_log, issues};
use crate::enhance_log::EnhanceLogEntry;
use crate::issues::{now_ms, IssueStatus};
use crate::ledger::{applied_entry, check_issue, rejected_entry, EnhanceLedger};
use crate::{validate_blueprint_id, StoreError, VersionMeta};

/// The enhance ledger on a SQLite database (see the module docs); build it on the
/// same [`Database`] (or file) as the standalone stores.
#[derive(Clone, Debug)]
pub struct SqliteLedger {
    db: Database,
}

impl SqliteLedger {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt stored blueprint head: {detail}"))
}

fn render_head(head: Option<BlueprintVersion>) -> String {
    head.map_or_else(|| "none".to_owned(), |v| v.to_hex())
}

/// The current head of series `id`: `(archived, Some(head meta))`.
fn read_head(conn: &Connection, id: &str) -> Result<(bool, Option<VersionMeta>), StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT i.archived, v.version, v.parent, v.epoch_id, v.rationale, v.patch_hash, \
             v.created_at_ms, v.version_label, i.head_seq \
             FROM blueprint_ids i LEFT JOIN blueprint_versions v ON v.seq = i.head_seq \
             WHERE i.id = ?1",
        )
        .map_err(map_error)?
        .query_row([id], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })
        .optional()
        .map_err(map_error)?;
    let Some((archived, version, parent, epoch_id, rationale, patch_hash, created, label, seq)) =
        row
    else {
        return Ok((false, None));
    };
    let Some(version) = version else {
        if let Some(seq) = seq {
            return Err(corrupt(format_args!("id={id} seq={seq} missing")));
        }
        return Ok((archived, None));
    };
    let parse = |s: &str| -> Result<BlueprintVersion, StoreError> {
        s.parse().map_err(|e| corrupt(format_args!("id={id}: {e}")))
    };
    let meta = VersionMeta {
        version: parse(&version)?,
        parents: parent
            .as_deref()
            .map(parse)
            .transpose()?
            .into_iter()
            .collect(),
        epoch_id,
        rationale: rationale.unwrap_or_default(),
        patch_hash,
        created_at_ms: created.unwrap_or_default(),
        version_label: label,
    };
    Ok((archived, Some(meta)))
}

/// A version to write, prepared outside the database.
struct NewVersion {
    id: String,
    version: BlueprintVersion,
    body: String,
    version_label: Option<String>,
    expected_head: BlueprintVersion,
    rationale: String,
    epoch_id: Option<String>,
    patch_hash: Option<String>,
}

/// `SqliteBlueprintStore::write_new` with `expected_head = Some(Some(..))`, inside
/// the caller's transaction.
fn write_version(conn: &Connection, new: NewVersion) -> Result<VersionMeta, StoreError> {
    let (archived, head) = read_head(conn, &new.id)?;
    if archived {
        return Err(StoreError::Archived(new.id));
    }
    let head_version = head.as_ref().map(|h| h.version);
    if head_version != Some(new.expected_head) {
        return Err(StoreError::HeadMoved {
            id: new.id,
            expected: new.expected_head.to_hex(),
            actual: render_head(head_version),
        });
    }
    if let Some(head) = head.as_ref() {
        if head.version == new.version {
            return Ok(head.clone());
        }
    }
    let created_at_ms = head
        .as_ref()
        .map_or_else(now_ms, |h| now_ms().max(h.created_at_ms));
    let meta = VersionMeta {
        version: new.version,
        parents: head_version.into_iter().collect(),
        epoch_id: new.epoch_id,
        rationale: new.rationale,
        patch_hash: new.patch_hash,
        created_at_ms,
        version_label: new.version_label,
    };
    conn.prepare_cached(
        "INSERT INTO blueprint_versions (blueprint_id, version, parent, epoch_id, \
         rationale, patch_hash, created_at_ms, version_label, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(map_error)?
    .execute(params![
        new.id,
        meta.version.to_hex(),
        head_version.map(|v| v.to_hex()),
        meta.epoch_id,
        meta.rationale,
        meta.patch_hash,
        meta.created_at_ms,
        meta.version_label,
        new.body,
    ])
    .map_err(map_error)?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO blueprint_ids (id, archived, head_seq) VALUES (?1, 0, ?2) \
         ON CONFLICT(id) DO UPDATE SET head_seq = excluded.head_seq",
    )
    .map_err(map_error)?
    .execute(params![new.id, seq])
    .map_err(map_error)?;
    Ok(meta)
}

/// The issue preconditions, inside the caller's transaction.
fn check(conn: &Connection, issue_id: &str) -> Result<(), StoreError> {
    check_issue(
        issue_id,
        issues::status_of(conn, issue_id)?,
        enhance_log::contains(conn, issue_id)?,
    )
}

#[async_trait::async_trait]
impl EnhanceLedger for SqliteLedger {
    async fn commit_applied(
        &self,
        issue_id: &str,
        bp: Arc<Blueprint>,
        expected_head: BlueprintVersion,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
        entry: EnhanceLogEntry,
    ) -> Result<VersionMeta, StoreError> {
        validate_blueprint_id(&bp.id)?;
        // Hashing and serializing grow with the document: done before the database.
        let new = NewVersion {
            id: bp.id.clone(),
            version: BlueprintVersion::of(&bp),
            body: serde_json::to_string(&*bp)
                .map_err(|e| StoreError::Unavailable(format!("cannot serialize blueprint: {e}")))?,
            version_label: bp.metadata.version_label.clone(),
            expected_head,
            rationale: entry.rationale.clone(),
            epoch_id,
            patch_hash,
        };
        let issue_id = issue_id.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                check(&tx, &issue_id)?;
                let meta = write_version(&tx, new)?;
                let new_version = meta.version.to_hex();
                let entry = applied_entry(entry, &issue_id, &expected_head, &meta.version);
                enhance_log::insert(&tx, &entry, &enhance_log::entry_json(&entry)?)?;
                issues::write_status(
                    &tx,
                    &issue_id,
                    IssueStatus::Applied,
                    None,
                    Some(&new_version),
                    now_ms(),
                )?;
                tx.commit().map_err(map_error)?;
                Ok(meta)
            })
            .await
    }

    async fn commit_rejected(
        &self,
        issue_id: &str,
        reason: &str,
        entry: EnhanceLogEntry,
    ) -> Result<(), StoreError> {
        let entry = rejected_entry(entry, issue_id);
        let json = enhance_log::entry_json(&entry)?;
        let issue_id = issue_id.to_owned();
        let reason = reason.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                check(&tx, &issue_id)?;
                enhance_log::insert(&tx, &entry, &json)?;
                issues::write_status(
                    &tx,
                    &issue_id,
                    IssueStatus::Rejected,
                    Some(&reason),
                    None,
                    now_ms(),
                )?;
                tx.commit().map_err(map_error)?;
                Ok(())
            })
            .await
    }
}
