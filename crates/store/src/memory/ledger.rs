//! In-memory [`EnhanceLedger`].

use std::sync::Arc;

use mse_blueprint::{Blueprint, BlueprintVersion};

use super::{MemoryBlueprintStore, MemoryEnhanceLogStore, MemoryIssueStore};
use crate::enhance_log::EnhanceLogEntry;
use crate::issues::IssueStatus;
use crate::ledger::{applied_entry, check_issue, rejected_entry, EnhanceLedger};
use crate::{BlueprintStore, StoreError, VersionMeta};

/// The enhance ledger over the in-memory stores it was built from (the same
/// `Arc`s the rest of the server reads).
///
/// Every ledger call runs under one async mutex, so ledger calls are atomic with
/// respect to each other. A commit checks the issue and the log, then writes the
/// version with [`BlueprintStore::write_new`] and its expected-head check (atomic
/// within the Blueprint store: a moved head fails before anything is written), then
/// appends the log entry and sets the issue status under both of those stores'
/// locks at once. What is *not* covered: a direct (non-ledger) write to the issue or
/// log store between the check and the final step can make the final step fail
/// after the version was written. The enhance loop finishes issues only through the
/// ledger, so that does not happen in the server; and memory stores are not
/// crash-durable anyway.
pub struct MemoryLedger {
    blueprints: Arc<MemoryBlueprintStore>,
    issues: Arc<MemoryIssueStore>,
    log: Arc<MemoryEnhanceLogStore>,
    serial: tokio::sync::Mutex<()>,
}

impl MemoryLedger {
    pub fn new(
        blueprints: Arc<MemoryBlueprintStore>,
        issues: Arc<MemoryIssueStore>,
        log: Arc<MemoryEnhanceLogStore>,
    ) -> Self {
        Self {
            blueprints,
            issues,
            log,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Check the preconditions (issue in flight, no log entry).
    fn check(&self, issue_id: &str) -> Result<(), StoreError> {
        self.issues.with_locked(|issues| {
            self.log.with_locked(|log| {
                check_issue(issue_id, issues.status_of(issue_id), log.contains(issue_id))
            })
        })
    }

    /// Re-check the preconditions and, if they hold, append `entry` and set the
    /// issue status, under both locks (issues first, then log: the only place that
    /// holds both).
    fn finish(
        &self,
        issue_id: &str,
        status: IssueStatus,
        reason: Option<String>,
        new_version: Option<String>,
        entry: EnhanceLogEntry,
    ) -> Result<(), StoreError> {
        self.issues.with_locked(|issues| {
            self.log.with_locked(|log| {
                check_issue(issue_id, issues.status_of(issue_id), log.contains(issue_id))?;
                log.append(entry);
                issues.set_status(issue_id, status, reason, new_version);
                Ok(())
            })
        })
    }
}

#[async_trait::async_trait]
impl EnhanceLedger for MemoryLedger {
    async fn commit_applied(
        &self,
        issue_id: &str,
        bp: Arc<Blueprint>,
        expected_head: BlueprintVersion,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
        entry: EnhanceLogEntry,
    ) -> Result<VersionMeta, StoreError> {
        let _serial = self.serial.lock().await;
        self.check(issue_id)?;
        let (meta, _written) = self
            .blueprints
            .write_new(
                bp,
                Some(Some(expected_head)),
                &entry.rationale,
                epoch_id,
                patch_hash,
            )
            .await?;
        let entry = applied_entry(entry, issue_id, &expected_head, &meta.version);
        self.finish(
            issue_id,
            IssueStatus::Applied,
            None,
            Some(meta.version.to_hex()),
            entry,
        )?;
        Ok(meta)
    }

    async fn commit_rejected(
        &self,
        issue_id: &str,
        reason: &str,
        entry: EnhanceLogEntry,
    ) -> Result<(), StoreError> {
        let _serial = self.serial.lock().await;
        let entry = rejected_entry(entry, issue_id);
        self.finish(
            issue_id,
            IssueStatus::Rejected,
            Some(reason.to_owned()),
            None,
            entry,
        )
    }
}
