//! In-memory [`BlueprintStore`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mse_blueprint::{Blueprint, BlueprintVersion};
use parking_lot::RwLock;

use crate::blueprints::{
    validate_blueprint_id, BlueprintStore, HistoryEntry, StoreError, StoredBlueprint, VersionMeta,
};

/// One stored version.
struct Entry {
    meta: VersionMeta,
    blueprint: Arc<Blueprint>,
}

/// The versions of one id, oldest first (never empty once created).
#[derive(Default)]
struct Series {
    entries: Vec<Entry>,
    /// Version → index of the newest entry with that version (content written
    /// again later, e.g. A → B → A, gets a new entry with the same version).
    newest_index: HashMap<BlueprintVersion, usize>,
    archived: bool,
}

impl Series {
    fn head(&self) -> Option<&Entry> {
        self.entries.last()
    }

    fn push(&mut self, entry: Entry) {
        self.newest_index
            .insert(entry.meta.version, self.entries.len());
        self.entries.push(entry);
    }
}

/// Blueprint versions kept in memory (lost on restart).
///
/// Ids are kept in a `BTreeMap`, so [`BlueprintStore::list`] is sorted by id for
/// free; each id's versions are a `Vec` (oldest first) plus a version index, so
/// `read_head` and `read_version` are O(1) in the length of the history and
/// `history(id, limit)` is O(limit).
#[derive(Default)]
pub struct MemoryBlueprintStore {
    series: RwLock<BTreeMap<String, Series>>,
}

impl MemoryBlueprintStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn render_head(head: Option<BlueprintVersion>) -> String {
    head.map_or_else(|| "none".to_owned(), |v| v.to_hex())
}

fn stored(id: &str, entry: &Entry) -> StoredBlueprint {
    StoredBlueprint {
        id: id.to_owned(),
        blueprint: Arc::clone(&entry.blueprint),
        meta: entry.meta.clone(),
    }
}

#[async_trait::async_trait]
impl BlueprintStore for MemoryBlueprintStore {
    async fn read_head(&self, id: &str) -> Result<StoredBlueprint, StoreError> {
        validate_blueprint_id(id)?;
        let map = self.series.read();
        let series = map
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if series.archived {
            return Err(StoreError::Archived(id.to_owned()));
        }
        let head = series
            .head()
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        Ok(stored(id, head))
    }

    async fn read_version(
        &self,
        id: &str,
        version: &BlueprintVersion,
    ) -> Result<StoredBlueprint, StoreError> {
        validate_blueprint_id(id)?;
        let map = self.series.read();
        let series = map
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let entry = series
            .newest_index
            .get(version)
            .and_then(|&i| series.entries.get(i))
            .ok_or_else(|| StoreError::VersionNotFound {
                id: id.to_owned(),
                version: version.to_hex(),
            })?;
        Ok(stored(id, entry))
    }

    async fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        validate_blueprint_id(id)?;
        let map = self.series.read();
        Ok(map.get(id).map_or_else(Vec::new, |series| {
            series
                .entries
                .iter()
                .rev()
                .take(limit)
                .map(|e| e.meta.clone())
                .collect()
        }))
    }

    async fn write_new(
        &self,
        bp: Arc<Blueprint>,
        expected_head: Option<Option<BlueprintVersion>>,
        rationale: &str,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
    ) -> Result<(VersionMeta, bool), StoreError> {
        let id = bp.id.as_str();
        validate_blueprint_id(id)?;
        // Hashing grows with the document, so it happens before taking the lock.
        let version = BlueprintVersion::of(&bp);
        let version_label = bp.metadata.version_label.clone();

        let mut map = self.series.write();
        let existing = map.get(id);
        if existing.is_some_and(|s| s.archived) {
            return Err(StoreError::Archived(id.to_owned()));
        }
        let head = existing.and_then(Series::head);
        let head_version = head.map(|h| h.meta.version);
        if let Some(expected) = expected_head {
            if expected != head_version {
                return Err(StoreError::HeadMoved {
                    id: id.to_owned(),
                    expected: render_head(expected),
                    actual: render_head(head_version),
                });
            }
        }
        if let Some(head) = head {
            if head.meta.version == version {
                return Ok((head.meta.clone(), false));
            }
        }
        // Keep `created_at_ms` non-decreasing along the history even if the wall
        // clock steps back.
        let created_at_ms = head.map_or_else(now_ms, |h| now_ms().max(h.meta.created_at_ms));
        let meta = VersionMeta {
            version,
            parents: head_version.into_iter().collect(),
            epoch_id,
            rationale: rationale.to_owned(),
            patch_hash,
            created_at_ms,
            version_label,
        };
        let series = match map.get_mut(id) {
            Some(series) => series,
            None => map.entry(id.to_owned()).or_default(),
        };
        series.push(Entry {
            meta: meta.clone(),
            blueprint: bp,
        });
        Ok((meta, true))
    }

    async fn archive(&self, id: &str) -> Result<(), StoreError> {
        self.set_archived(id, true)
    }

    async fn unarchive(&self, id: &str) -> Result<(), StoreError> {
        self.set_archived(id, false)
    }

    async fn list(&self) -> Result<Vec<(String, VersionMeta, bool)>, StoreError> {
        let map = self.series.read();
        Ok(map
            .iter()
            .filter_map(|(id, series)| {
                let head = series.head()?;
                Some((id.clone(), head.meta.clone(), series.archived))
            })
            .collect())
    }
}

impl MemoryBlueprintStore {
    fn set_archived(&self, id: &str, archived: bool) -> Result<(), StoreError> {
        validate_blueprint_id(id)?;
        let mut map = self.series.write();
        let series = map
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        series.archived = archived;
        Ok(())
    }
}
