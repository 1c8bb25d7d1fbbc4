//! In-memory [`OutputStore`].

use std::collections::{HashMap, VecDeque};

use mse_engine::ids::random_hex;
use parking_lot::Mutex;

use crate::blueprints::StoreError;
use crate::outputs::{OutputRecord, OutputStore};

/// Default retention cap of [`MemoryOutputStore`].
pub const DEFAULT_MAX_OUTPUT_RECORDS: usize = 100_000;

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, OutputRecord>,
    /// Producer name → id of its newest stored record.
    newest_by_producer: HashMap<String, String>,
    /// Ids, oldest first.
    order: VecDeque<String>,
}

/// Data-plane outputs kept in memory, at most `max_records` of them: when an
/// append goes over the cap the oldest records are dropped (project decision 11).
///
/// Every operation is O(1) (amortised): a map by id, a map producer → newest id and
/// a queue of ids in insertion order.
pub struct MemoryOutputStore {
    max_records: usize,
    inner: Mutex<Inner>,
}

impl MemoryOutputStore {
    /// A store keeping at most `max_records` records (at least 1).
    pub fn new(max_records: usize) -> Self {
        Self {
            max_records: max_records.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The retention cap.
    pub fn max_records(&self) -> usize {
        self.max_records
    }
}

impl Default for MemoryOutputStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_OUTPUT_RECORDS)
    }
}

#[async_trait::async_trait]
impl OutputStore for MemoryOutputStore {
    async fn append(&self, mut record: OutputRecord) -> Result<String, StoreError> {
        let mut inner = self.inner.lock();
        let id = loop {
            let id = format!("out-{}", random_hex(5));
            if !inner.by_id.contains_key(&id) {
                break id;
            }
        };
        record.id = id.clone();
        inner
            .newest_by_producer
            .insert(record.producer_agent.clone(), id.clone());
        inner.order.push_back(id.clone());
        inner.by_id.insert(id.clone(), record);
        while inner.order.len() > self.max_records {
            let Some(old_id) = inner.order.pop_front() else {
                break;
            };
            let Some(old) = inner.by_id.remove(&old_id) else {
                continue;
            };
            // The oldest record can only be its producer's newest if it was the
            // producer's last one; then the name no longer resolves.
            if inner.newest_by_producer.get(&old.producer_agent) == Some(&old_id) {
                inner.newest_by_producer.remove(&old.producer_agent);
            }
        }
        Ok(id)
    }

    async fn get(&self, key: &str) -> Result<Option<OutputRecord>, StoreError> {
        let inner = self.inner.lock();
        if let Some(record) = inner.by_id.get(key) {
            return Ok(Some(record.clone()));
        }
        Ok(inner
            .newest_by_producer
            .get(key)
            .and_then(|id| inner.by_id.get(id))
            .cloned())
    }

    async fn count(&self) -> Result<usize, StoreError> {
        Ok(self.inner.lock().by_id.len())
    }
}
