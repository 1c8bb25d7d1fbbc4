//! Backend-neutral `EnhanceSettingStore` suite, run on the memory and SQLite
//! backends, plus SQLite persistence across reopen.

use std::sync::Arc;

use mse_store::memory::MemoryEnhanceSettingStore;
use mse_store::sqlite::{Database, SqliteEnhanceSettingStore};
use mse_store::{EnhanceSetting, EnhanceSettingStore, VersionSelector};
use serde_json::json;
use tempfile::TempDir;

fn setting(id: &str, bp: &str) -> EnhanceSetting {
    EnhanceSetting::new(id, bp, 600)
}

// ---------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------

pub async fn put_get_roundtrip(store: Arc<dyn EnhanceSettingStore>) {
    assert_eq!(store.get("default").await.unwrap(), None);
    let s = setting("default", "enhance-default");
    store.put(s.clone()).await.unwrap();
    assert_eq!(store.get("default").await.unwrap(), Some(s));

    // Every field survives, including a non-default selector, empty axes and meta.
    let custom = EnhanceSetting {
        id: "custom".into(),
        blueprint_id: "enhance-x".into(),
        ttl_secs: 0,
        version: VersionSelector::SemverReq { req: "^1.2".into() },
        verifier_axes: vec![],
        meta: json!({ "note": "n", "n": [1, 2] }),
    };
    store.put(custom.clone()).await.unwrap();
    assert_eq!(store.get("custom").await.unwrap(), Some(custom));
    let fixed = EnhanceSetting {
        version: VersionSelector::Fixed {
            value: "ab".repeat(32),
        },
        ..setting("fixed", "b")
    };
    store.put(fixed.clone()).await.unwrap();
    assert_eq!(store.get("fixed").await.unwrap(), Some(fixed));
}

pub async fn put_is_upsert(store: Arc<dyn EnhanceSettingStore>) {
    store.put(setting("default", "a")).await.unwrap();
    let replaced = EnhanceSetting {
        ttl_secs: 5,
        verifier_axes: vec!["des".into()],
        ..setting("default", "b")
    };
    store.put(replaced.clone()).await.unwrap();
    assert_eq!(store.get("default").await.unwrap(), Some(replaced));
    assert_eq!(store.list().await.unwrap(), ["default"]);
}

pub async fn delete_semantics(store: Arc<dyn EnhanceSettingStore>) {
    assert!(!store.delete("default").await.unwrap(), "absent");
    store.put(setting("default", "a")).await.unwrap();
    store.put(setting("other", "a")).await.unwrap();
    assert!(store.delete("default").await.unwrap());
    assert_eq!(store.get("default").await.unwrap(), None);
    assert!(!store.delete("default").await.unwrap(), "already gone");
    assert_eq!(store.list().await.unwrap(), ["other"]);
    // Re-creating after a delete works.
    store.put(setting("default", "c")).await.unwrap();
    assert_eq!(
        store.get("default").await.unwrap().unwrap().blueprint_id,
        "c"
    );
}

pub async fn list_is_ascending(store: Arc<dyn EnhanceSettingStore>) {
    assert!(store.list().await.unwrap().is_empty());
    for id in ["zeta", "alpha", "default", "Beta", "alpha-2", "_x"] {
        store.put(setting(id, "bp")).await.unwrap();
    }
    // Byte order (uppercase before underscore before lowercase).
    assert_eq!(
        store.list().await.unwrap(),
        ["Beta", "_x", "alpha", "alpha-2", "default", "zeta"]
    );
}

// ---------------------------------------------------------------------------
// Instantiation per backend
// ---------------------------------------------------------------------------

macro_rules! settings_store_suite {
    ($module:ident, $make:path) => {
        mod $module {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let (store, _guard) = $make().await;
                        super::$name(store).await;
                    }
                };
            }
            case!(put_get_roundtrip);
            case!(put_is_upsert);
            case!(delete_semantics);
            case!(list_is_ascending);
        }
    };
}

async fn memory_store() -> (Arc<dyn EnhanceSettingStore>, Option<TempDir>) {
    (Arc::new(MemoryEnhanceSettingStore::new()), None)
}

async fn sqlite_store() -> (Arc<dyn EnhanceSettingStore>, Option<TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    (Arc::new(SqliteEnhanceSettingStore::new(db)), Some(dir))
}

settings_store_suite!(memory, crate::memory_store);
settings_store_suite!(sqlite, crate::sqlite_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_settings_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let kept = EnhanceSetting {
        meta: json!({ "k": true }),
        ..setting("default", "enhance-default")
    };
    {
        let store = SqliteEnhanceSettingStore::new(Database::open(&path).unwrap());
        store.put(kept.clone()).await.unwrap();
        store.put(setting("gone", "x")).await.unwrap();
        assert!(store.delete("gone").await.unwrap());
    }
    let store = SqliteEnhanceSettingStore::new(Database::open(&path).unwrap());
    assert_eq!(store.list().await.unwrap(), ["default"]);
    assert_eq!(store.get("default").await.unwrap(), Some(kept));
    assert_eq!(store.get("gone").await.unwrap(), None);
}
