//! The enhance ledger: how the enhance loop finishes an issue, atomically
//! (project decision 15).
//!
//! Finishing an issue touches three stores: the Blueprint store (the new version),
//! the enhance log (the entry) and the issue queue (the final status). The
//! reference did these one after another, so a crash in between left a new head
//! with no log entry and an issue stuck `in_flight`. An [`EnhanceLedger`] does them
//! as one all-or-nothing step over the same stores the standalone
//! [`BlueprintStore`](crate::BlueprintStore), [`IssueStore`](crate::IssueStore) and
//! [`EnhanceLogStore`](crate::EnhanceLogStore) handles see.
//!
//! Both commits first check that the issue exists, is `in_flight` and has no log
//! entry yet; otherwise (it was already finished, or recovery re-queued it) they fail
//! with [`StoreError::Unavailable`] carrying a `ledger conflict: ...` message and
//! write nothing.

use std::sync::Arc;

use mse_blueprint::{Blueprint, BlueprintVersion};

use crate::enhance_log::{EnhanceLogEntry, LOG_STATUS_APPLIED, LOG_STATUS_REJECTED};
use crate::issues::IssueStatus;
use crate::{StoreError, VersionMeta};

#[async_trait::async_trait]
pub trait EnhanceLedger: Send + Sync + 'static {
    /// Commit an applied enhance run, all or nothing:
    ///
    /// 1. write `bp` as the new head of series `bp.id`, only if the head is still
    ///    `expected_head` (`HeadMoved` otherwise, also when the series has no
    ///    head; `Archived` if archived), with rationale `entry.rationale`, `epoch_id` and
    ///    `patch_hash`. Content equal to the head writes no new version; the head
    ///    is then the "new" version;
    /// 2. append `entry` with `issue_id`, `status = "applied"`, `prev_hash =
    ///    expected_head` and `new_hash` = the version of step 1 (hex) filled in;
    /// 3. set the issue `applied` with `new_version` = that version.
    ///
    /// Returns the version's lineage. On any error nothing is written: the head,
    /// the log and the issue (still `in_flight`) are unchanged.
    async fn commit_applied(
        &self,
        issue_id: &str,
        bp: Arc<Blueprint>,
        expected_head: BlueprintVersion,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
        entry: EnhanceLogEntry,
    ) -> Result<VersionMeta, StoreError>;

    /// Commit a rejected enhance run, all or nothing: append `entry` with
    /// `issue_id`, `status = "rejected"` and `new_hash = ""` filled in, and set the
    /// issue `rejected` with `reason`.
    async fn commit_rejected(
        &self,
        issue_id: &str,
        reason: &str,
        entry: EnhanceLogEntry,
    ) -> Result<(), StoreError>;
}

/// The error of a violated precondition (see the module docs).
pub(crate) fn ledger_conflict(msg: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("ledger conflict: {msg}"))
}

/// Check the issue part of the preconditions given its current status (`None`:
/// unknown) and whether it has a log entry.
pub(crate) fn check_issue(
    issue_id: &str,
    status: Option<IssueStatus>,
    has_log_entry: bool,
) -> Result<(), StoreError> {
    match status {
        None => Err(ledger_conflict(format!("issue {issue_id} not found"))),
        Some(IssueStatus::InFlight) if !has_log_entry => Ok(()),
        Some(IssueStatus::InFlight) => Err(ledger_conflict(format!(
            "issue {issue_id} already has an enhance log entry"
        ))),
        Some(st) => Err(ledger_conflict(format!(
            "issue {issue_id} is {st}, not in_flight"
        ))),
    }
}

/// `entry` as an applied commit records it.
pub(crate) fn applied_entry(
    mut entry: EnhanceLogEntry,
    issue_id: &str,
    prev: &BlueprintVersion,
    new: &BlueprintVersion,
) -> EnhanceLogEntry {
    entry.issue_id = issue_id.to_owned();
    entry.status = LOG_STATUS_APPLIED.to_owned();
    entry.prev_hash = prev.to_hex();
    entry.new_hash = new.to_hex();
    entry
}

/// `entry` as a rejected commit records it.
pub(crate) fn rejected_entry(mut entry: EnhanceLogEntry, issue_id: &str) -> EnhanceLogEntry {
    entry.issue_id = issue_id.to_owned();
    entry.status = LOG_STATUS_REJECTED.to_owned();
    entry.new_hash = String::new();
    entry
}
