//! Resolution cache of `POST /v1/tasks` by id: the head of each id, the versions
//! fixed selectors asked for and the answers to semver requirements, so a run by
//! id does not pay a database round trip (a blocking-pool hop, a query and a
//! Blueprint parse: about as much as the whole inline request) before reusing its
//! compiled Blueprint.
//!
//! Consistency:
//! - every write through the server's store handles ([`InvalidatingStore`] around
//!   the Blueprint store, [`InvalidatingLedger`] around the enhance ledger) clears
//!   the cache when it returns, and a read that started before a write can never
//!   put its (possibly older) result back: entries carry the cache generation they
//!   were read under and are dropped if a write bumped it meanwhile;
//! - anything else that changes the database (another process on the same file)
//!   is seen within [`MAX_AGE`]: older entries are read again. A semver answer is
//!   kept while the head it was computed against is still the head (checked
//!   through the cached head, so within [`MAX_AGE`] too); only an outside writer
//!   that moves the head away and back (A → B → A) within that window goes
//!   unnoticed until the next write through the server.
//!
//! Only successful reads are cached (unknown and archived ids always ask the
//! store); `GET /v1/blueprints/*` always reads the store.

use async_trait::async_trait;
use mse_blueprint::{Blueprint, BlueprintVersion};
use mse_store::{
    BlueprintStore, EnhanceLedger, EnhanceLogEntry, HistoryEntry, StoreError, StoredBlueprint,
    VersionMeta, VersionSelector,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest time a cached entry is used without reading the store again.
pub const MAX_AGE: Duration = Duration::from_millis(250);
/// Entries at most; the cache is cleared when full.
pub const MAX_ENTRIES: usize = 4096;

/// What a cached entry answers.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Head(String),
    Version(String, BlueprintVersion),
    Semver(String, String),
}

/// A cached answer: when it was read and, for semver answers, the head it was
/// computed against.
struct Entry {
    read_at: Instant,
    head: Option<BlueprintVersion>,
    value: StoredBlueprint,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    entries: HashMap<Key, Entry>,
}

/// See the module docs.
#[derive(Default)]
pub struct ResolveCache {
    inner: Mutex<Inner>,
}

/// An entry is usable while younger than [`MAX_AGE`] or, when it was computed
/// against a head, while that is still the head.
fn fresh(entry: Option<&Entry>, head: Option<BlueprintVersion>) -> Option<StoredBlueprint> {
    entry
        .filter(|e| match head {
            Some(h) => e.head == Some(h),
            None => e.read_at.elapsed() < MAX_AGE,
        })
        .map(|e| e.value.clone())
}

impl ResolveCache {
    /// Forget everything (after a write).
    pub fn invalidate(&self) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    /// The cached answer for `key`, else `read`'s (cached unless a write happened
    /// while it ran).
    async fn get_or_read<F>(
        &self,
        key: Key,
        head: Option<BlueprintVersion>,
        read: F,
    ) -> Result<StoredBlueprint, StoreError>
    where
        F: std::future::Future<Output = Result<StoredBlueprint, StoreError>>,
    {
        let generation = {
            let inner = self.inner.lock();
            if let Some(hit) = fresh(inner.entries.get(&key), head) {
                return Ok(hit);
            }
            inner.generation
        };
        let read_at = Instant::now();
        let value = read.await?;
        let mut inner = self.inner.lock();
        if inner.generation == generation {
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
            let entry = Entry {
                read_at,
                head,
                value: value.clone(),
            };
            inner.entries.insert(key, entry);
        }
        Ok(value)
    }

    async fn head(
        &self,
        store: &dyn BlueprintStore,
        id: &str,
    ) -> Result<StoredBlueprint, StoreError> {
        self.get_or_read(Key::Head(id.to_string()), None, store.read_head(id))
            .await
    }

    /// Resolve like [`BlueprintStore::resolve`], from the cache when possible.
    pub async fn resolve(
        &self,
        store: &dyn BlueprintStore,
        id: &str,
        selector: &VersionSelector,
    ) -> Result<StoredBlueprint, StoreError> {
        match selector {
            VersionSelector::Latest => self.head(store, id).await,
            VersionSelector::Fixed { value } => {
                let version: BlueprintVersion = value
                    .parse()
                    .map_err(|_| StoreError::BadVersion(value.clone()))?;
                // The id must be live (not archived, not unknown).
                let head = self.head(store, id).await?;
                if head.meta.version == version {
                    return Ok(head);
                }
                let key = Key::Version(id.to_string(), version);
                self.get_or_read(key, None, store.read_version(id, &version))
                    .await
            }
            VersionSelector::SemverReq { req } => {
                // The answer (a walk over up to 1024 versions) stays valid while
                // the head it was computed against is the head: histories only
                // grow by a new head. The head check also refuses archived ids.
                let head = self.head(store, id).await?.meta.version;
                let key = Key::Semver(id.to_string(), req.clone());
                self.get_or_read(key, Some(head), store.resolve(id, selector))
                    .await
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

/// The Blueprint store with every write clearing the [`ResolveCache`].
pub struct InvalidatingStore {
    pub inner: Arc<dyn BlueprintStore>,
    pub cache: Arc<ResolveCache>,
}

#[async_trait]
impl BlueprintStore for InvalidatingStore {
    async fn read_head(&self, id: &str) -> Result<StoredBlueprint, StoreError> {
        self.inner.read_head(id).await
    }

    async fn read_version(
        &self,
        id: &str,
        version: &BlueprintVersion,
    ) -> Result<StoredBlueprint, StoreError> {
        self.inner.read_version(id, version).await
    }

    async fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.history(id, limit).await
    }

    async fn write_new(
        &self,
        bp: Arc<Blueprint>,
        expected_head: Option<Option<BlueprintVersion>>,
        rationale: &str,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
    ) -> Result<(VersionMeta, bool), StoreError> {
        let r = self
            .inner
            .write_new(bp, expected_head, rationale, epoch_id, patch_hash)
            .await;
        self.cache.invalidate();
        r
    }

    async fn archive(&self, id: &str) -> Result<(), StoreError> {
        let r = self.inner.archive(id).await;
        self.cache.invalidate();
        r
    }

    async fn unarchive(&self, id: &str) -> Result<(), StoreError> {
        let r = self.inner.unarchive(id).await;
        self.cache.invalidate();
        r
    }

    async fn list(&self) -> Result<Vec<(String, VersionMeta, bool)>, StoreError> {
        self.inner.list().await
    }

    async fn resolve(
        &self,
        id: &str,
        selector: &VersionSelector,
    ) -> Result<StoredBlueprint, StoreError> {
        self.inner.resolve(id, selector).await
    }
}

/// The enhance ledger with applied commits clearing the [`ResolveCache`].
pub struct InvalidatingLedger {
    pub inner: Arc<dyn EnhanceLedger>,
    pub cache: Arc<ResolveCache>,
}

#[async_trait]
impl EnhanceLedger for InvalidatingLedger {
    async fn commit_applied(
        &self,
        issue_id: &str,
        bp: Arc<Blueprint>,
        expected_head: BlueprintVersion,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
        entry: EnhanceLogEntry,
    ) -> Result<VersionMeta, StoreError> {
        let r = self
            .inner
            .commit_applied(issue_id, bp, expected_head, epoch_id, patch_hash, entry)
            .await;
        self.cache.invalidate();
        r
    }

    async fn commit_rejected(
        &self,
        issue_id: &str,
        reason: &str,
        entry: EnhanceLogEntry,
    ) -> Result<(), StoreError> {
        self.inner.commit_rejected(issue_id, reason, entry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mse_store::memory::MemoryBlueprintStore;
    use serde_json::json;

    fn bp(echo: &str) -> Arc<Blueprint> {
        Arc::new(
            Blueprint::from_value(json!({
                "id": "c",
                "flow": {"kind": "step", "ref": "a", "in": {"op": "lit", "value": echo},
                         "out": {"op": "path", "at": "$.out"}},
                "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}]
            }))
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn writes_through_the_wrapper_are_seen_at_once() {
        let cache = Arc::new(ResolveCache::default());
        let raw: Arc<dyn BlueprintStore> = Arc::new(MemoryBlueprintStore::new());
        let store = InvalidatingStore {
            inner: raw.clone(),
            cache: cache.clone(),
        };
        let (v1, _) = store
            .write_new(bp("1"), None, "t", None, None)
            .await
            .unwrap();
        let latest = VersionSelector::Latest;
        let got = cache.resolve(&store, "c", &latest).await.unwrap();
        assert_eq!(got.meta.version, v1.version);
        assert_eq!(cache.len(), 1);
        let (v2, _) = store
            .write_new(bp("2"), None, "t", None, None)
            .await
            .unwrap();
        assert_eq!(cache.len(), 0);
        let got = cache.resolve(&store, "c", &latest).await.unwrap();
        assert_eq!(got.meta.version, v2.version);
        // Fixed: cached per version, the id must stay live.
        let fixed = VersionSelector::Fixed {
            value: v1.version.to_hex(),
        };
        let got = cache.resolve(&store, "c", &fixed).await.unwrap();
        assert_eq!(got.meta.version, v1.version);
        store.archive("c").await.unwrap();
        let e = cache.resolve(&store, "c", &fixed).await.unwrap_err();
        assert!(matches!(e, StoreError::Archived(_)), "{e}");
        let e = cache.resolve(&store, "c", &latest).await.unwrap_err();
        assert!(matches!(e, StoreError::Archived(_)), "{e}");
        store.unarchive("c").await.unwrap();

        // A write that bypasses the wrapper is seen once the entry is too old.
        cache.resolve(&store, "c", &latest).await.unwrap();
        let (v3, _) = raw.write_new(bp("3"), None, "t", None, None).await.unwrap();
        let stale = cache.resolve(&store, "c", &latest).await.unwrap();
        assert_eq!(stale.meta.version, v2.version);
        tokio::time::sleep(MAX_AGE + Duration::from_millis(20)).await;
        let got = cache.resolve(&store, "c", &latest).await.unwrap();
        assert_eq!(got.meta.version, v3.version);
    }

    #[tokio::test]
    async fn a_read_racing_a_write_is_not_cached() {
        let cache = ResolveCache::default();
        let store = MemoryBlueprintStore::new();
        store
            .write_new(bp("1"), None, "t", None, None)
            .await
            .unwrap();
        let read = async {
            let old = store.read_head("c").await;
            cache.invalidate(); // a write finished while the read ran
            old
        };
        cache
            .get_or_read(Key::Head("c".into()), None, read)
            .await
            .unwrap();
        assert_eq!(cache.len(), 0);
        cache
            .get_or_read(Key::Head("c".into()), None, store.read_head("c"))
            .await
            .unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn semver_requirements_are_cached_until_a_write() {
        let cache = Arc::new(ResolveCache::default());
        let store = InvalidatingStore {
            inner: Arc::new(MemoryBlueprintStore::new()),
            cache: cache.clone(),
        };
        let labelled = |echo: &str, label: &str| {
            let mut v = bp(echo).as_ref().clone();
            v.metadata.version_label = Some(label.into());
            Arc::new(v)
        };
        let (v1, _) = store
            .write_new(labelled("1", "1.0.0"), None, "t", None, None)
            .await
            .unwrap();
        let req = VersionSelector::SemverReq { req: "^1".into() };
        let got = cache.resolve(&store, "c", &req).await.unwrap();
        assert_eq!(got.meta.version, v1.version);
        assert_eq!(cache.len(), 2, "the head and the answer");
        let (v2, _) = store
            .write_new(labelled("2", "1.1.0"), None, "t", None, None)
            .await
            .unwrap();
        let got = cache.resolve(&store, "c", &req).await.unwrap();
        assert_eq!(got.meta.version, v2.version);
        let bad = VersionSelector::SemverReq { req: "^3".into() };
        assert!(cache.resolve(&store, "c", &bad).await.is_err());
        assert_eq!(cache.len(), 2, "errors are not cached");
    }
}
