//! In-memory [`IssueStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;

use crate::issues::{
    interrupted_reason, new_issue_id, now_ms, status_details, IssueRecord, IssueStatus, IssueStore,
};
use crate::StoreError;

#[derive(Default)]
struct Inner {
    /// Creation sequence of the next issue.
    next_seq: u64,
    /// Every issue by creation sequence (oldest first).
    records: BTreeMap<u64, IssueRecord>,
    /// Issue id → creation sequence.
    seq_of: HashMap<String, u64>,
    /// Creation sequences of the issues in each status, indexed by
    /// [`status_index`]; the `pending` set is the FIFO queue.
    by_status: [BTreeSet<u64>; 4],
}

fn status_index(status: IssueStatus) -> usize {
    match status {
        IssueStatus::Pending => 0,
        IssueStatus::InFlight => 1,
        IssueStatus::Applied => 2,
        IssueStatus::Rejected => 3,
    }
}

impl Inner {
    fn get(&self, id: &str) -> Option<&IssueRecord> {
        self.records.get(self.seq_of.get(id)?)
    }

    /// Move issue `seq` to `status` (keeping the status index in step) and return
    /// it for further edits.
    fn transition(&mut self, seq: u64, status: IssueStatus, now: i64) -> &mut IssueRecord {
        let rec = self
            .records
            .get_mut(&seq)
            .expect("status index and records agree");
        self.by_status[status_index(rec.status)].remove(&seq);
        self.by_status[status_index(status)].insert(seq);
        rec.status = status;
        rec.updated_at_ms = now;
        rec
    }

    /// Set the status and (already normalised) details of an issue; `false` if
    /// unknown.
    fn set_status(
        &mut self,
        id: &str,
        status: IssueStatus,
        reason: Option<String>,
        new_version: Option<String>,
    ) -> bool {
        let Some(&seq) = self.seq_of.get(id) else {
            return false;
        };
        let rec = self.transition(seq, status, now_ms());
        rec.reason = reason;
        rec.new_version = new_version;
        true
    }
}

/// The issue queue kept in memory (lost on restart).
///
/// Records are kept by creation sequence with one ordered index per status, so
/// `pop_pending` is O(log n), `list` is O(limit · log n) and `recover_in_flight`
/// is proportional to the number of in-flight issues. One `parking_lot` mutex guards
/// the state; it is never held across an `.await`. Nothing is ever removed
/// (finished issues stay readable, as in the reference).
#[derive(Default)]
pub struct MemoryIssueStore {
    inner: Mutex<Inner>,
}

impl MemoryIssueStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `f` on the locked state (the ledger's checks and commit step).
    pub(super) fn with_locked<R>(&self, f: impl FnOnce(&mut IssuesGuard<'_>) -> R) -> R {
        let mut inner = self.inner.lock();
        f(&mut IssuesGuard { inner: &mut inner })
    }
}

/// The locked state of a [`MemoryIssueStore`], as the ledger sees it.
pub(super) struct IssuesGuard<'a> {
    inner: &'a mut Inner,
}

impl IssuesGuard<'_> {
    pub(super) fn status_of(&self, id: &str) -> Option<IssueStatus> {
        self.inner.get(id).map(|r| r.status)
    }

    pub(super) fn set_status(
        &mut self,
        id: &str,
        status: IssueStatus,
        reason: Option<String>,
        new_version: Option<String>,
    ) -> bool {
        self.inner.set_status(id, status, reason, new_version)
    }
}

#[async_trait::async_trait]
impl IssueStore for MemoryIssueStore {
    async fn create(&self, blueprint_id: &str, intent: &str) -> Result<IssueRecord, StoreError> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        let id = loop {
            let id = new_issue_id();
            if !inner.seq_of.contains_key(&id) {
                break id;
            }
        };
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let rec = IssueRecord {
            id: id.clone(),
            blueprint_id: blueprint_id.to_owned(),
            intent: intent.to_owned(),
            status: IssueStatus::Pending,
            reason: None,
            new_version: None,
            attempts: 0,
            created_at_ms: now,
            updated_at_ms: now,
        };
        inner.seq_of.insert(id, seq);
        inner.records.insert(seq, rec.clone());
        inner.by_status[status_index(IssueStatus::Pending)].insert(seq);
        Ok(rec)
    }

    async fn get(&self, id: &str) -> Result<Option<IssueRecord>, StoreError> {
        Ok(self.inner.lock().get(id).cloned())
    }

    async fn list(
        &self,
        status: Option<IssueStatus>,
        limit: usize,
    ) -> Result<Vec<IssueRecord>, StoreError> {
        let inner = self.inner.lock();
        Ok(match status {
            None => inner.records.values().rev().take(limit).cloned().collect(),
            Some(st) => inner.by_status[status_index(st)]
                .iter()
                .rev()
                .take(limit)
                .map(|seq| inner.records[seq].clone())
                .collect(),
        })
    }

    async fn pop_pending(&self) -> Result<Option<IssueRecord>, StoreError> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        let Some(&seq) = inner.by_status[status_index(IssueStatus::Pending)].first() else {
            return Ok(None);
        };
        let rec = inner.transition(seq, IssueStatus::InFlight, now);
        rec.attempts = rec.attempts.saturating_add(1);
        Ok(Some(rec.clone()))
    }

    async fn set_status(
        &self,
        id: &str,
        status: IssueStatus,
        reason: Option<String>,
        new_version: Option<String>,
    ) -> Result<bool, StoreError> {
        let (reason, new_version) = status_details(status, reason, new_version)?;
        Ok(self
            .inner
            .lock()
            .set_status(id, status, reason, new_version))
    }

    async fn recover_in_flight(
        &self,
        max_attempts: u32,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        let in_flight: Vec<u64> = inner.by_status[status_index(IssueStatus::InFlight)]
            .iter()
            .copied()
            .collect();
        let (mut requeued, mut rejected) = (Vec::new(), Vec::new());
        for seq in in_flight {
            let attempts = inner.records[&seq].attempts;
            if attempts < max_attempts {
                let rec = inner.transition(seq, IssueStatus::Pending, now);
                requeued.push(rec.id.clone());
            } else {
                let rec = inner.transition(seq, IssueStatus::Rejected, now);
                rec.reason = Some(interrupted_reason(attempts));
                rec.new_version = None;
                rejected.push(rec.id.clone());
            }
        }
        Ok((requeued, rejected))
    }
}
