//! SQLite [`EnhanceLedger`].
//!
//! Each commit is one `BEGIN IMMEDIATE` transaction over `issues`, `enhance_log`,
//! `blueprint_ids` and `blueprint_versions`: check the issue (in flight, no log
//! entry), write the version with the expected-head check, append the log entry,
//! set the issue status, commit. Any failure drops the transaction, which rolls
//! everything back; a crash before the commit leaves none of it on disk (WAL).
//!
//! The Blueprint row is written by the Blueprint store's own transaction body
//! ([`super::blueprints`]), so both paths store versions identically.

use std::sync::Arc;

use mse_blueprint::{Blueprint, BlueprintVersion};
use rusqlite::{Connection, TransactionBehavior};

use super::blueprints::{write_version_in, VersionWrite};
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
        let write = VersionWrite::prepare(&bp, entry.rationale.clone(), epoch_id, patch_hash)?;
        let issue_id = issue_id.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                check(&tx, &issue_id)?;
                let (meta, _) = write_version_in(&tx, write, Some(Some(expected_head)))?;
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
