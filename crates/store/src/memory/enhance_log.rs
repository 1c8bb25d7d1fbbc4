//! In-memory [`EnhanceLogStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;

use crate::enhance_log::{EnhanceLogEntry, EnhanceLogStore};
use crate::StoreError;

/// Position of an entry in the log order: `(ts_ms, insertion sequence)`.
type Key = (i64, u64);

#[derive(Default)]
struct Inner {
    next_seq: u64,
    /// Every entry in log order.
    entries: BTreeMap<Key, EnhanceLogEntry>,
    /// Issue id → key of its entry.
    by_issue: HashMap<String, Key>,
    /// Blueprint id → keys of its entries.
    by_blueprint: HashMap<String, BTreeSet<Key>>,
}

impl Inner {
    fn contains(&self, issue_id: &str) -> bool {
        self.by_issue.contains_key(issue_id)
    }

    /// Append unless the issue already has an entry; `true` if appended.
    fn append(&mut self, entry: EnhanceLogEntry) -> bool {
        if self.contains(&entry.issue_id) {
            return false;
        }
        let key = (entry.ts_ms, self.next_seq);
        self.next_seq += 1;
        self.by_issue.insert(entry.issue_id.clone(), key);
        self.by_blueprint
            .entry(entry.blueprint_id.clone())
            .or_default()
            .insert(key);
        self.entries.insert(key, entry);
        true
    }
}

/// The enhance log kept in memory (lost on restart).
///
/// Entries are ordered by `(ts_ms, insertion sequence)` with an index per issue and
/// per Blueprint id, so `append`/`get` are O(log n) and `list` walks back from the
/// newest matching entry (O(limit) without a status filter). One `parking_lot`
/// mutex guards the state; it is never held across an `.await`.
#[derive(Default)]
pub struct MemoryEnhanceLogStore {
    inner: Mutex<Inner>,
}

impl MemoryEnhanceLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `f` on the locked state (the ledger's checks and commit step).
    pub(super) fn with_locked<R>(&self, f: impl FnOnce(&mut LogGuard<'_>) -> R) -> R {
        let mut inner = self.inner.lock();
        f(&mut LogGuard { inner: &mut inner })
    }
}

/// The locked state of a [`MemoryEnhanceLogStore`], as the ledger sees it.
pub(super) struct LogGuard<'a> {
    inner: &'a mut Inner,
}

impl LogGuard<'_> {
    pub(super) fn contains(&self, issue_id: &str) -> bool {
        self.inner.contains(issue_id)
    }

    pub(super) fn append(&mut self, entry: EnhanceLogEntry) -> bool {
        self.inner.append(entry)
    }
}

#[async_trait::async_trait]
impl EnhanceLogStore for MemoryEnhanceLogStore {
    async fn append(&self, entry: EnhanceLogEntry) -> Result<bool, StoreError> {
        Ok(self.inner.lock().append(entry))
    }

    async fn get(&self, issue_id: &str) -> Result<Option<EnhanceLogEntry>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .by_issue
            .get(issue_id)
            .and_then(|key| inner.entries.get(key))
            .cloned())
    }

    async fn list(
        &self,
        blueprint_id: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EnhanceLogEntry>, StoreError> {
        let inner = self.inner.lock();
        let keep = |e: &&EnhanceLogEntry| status.is_none_or(|s| e.status == s);
        let mut out: Vec<EnhanceLogEntry> = match blueprint_id {
            None => inner
                .entries
                .values()
                .rev()
                .filter(keep)
                .take(limit)
                .cloned()
                .collect(),
            Some(bp) => inner.by_blueprint.get(bp).map_or_else(Vec::new, |keys| {
                keys.iter()
                    .rev()
                    .map(|key| &inner.entries[key])
                    .filter(keep)
                    .take(limit)
                    .cloned()
                    .collect()
            }),
        };
        out.reverse();
        Ok(out)
    }
}
