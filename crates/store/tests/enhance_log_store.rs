//! Backend-neutral `EnhanceLogStore` suite, run on the memory and SQLite backends,
//! plus SQLite persistence across reopen.

use std::sync::Arc;

use mse_store::memory::MemoryEnhanceLogStore;
use mse_store::sqlite::{Database, SqliteEnhanceLogStore};
use mse_store::{EnhanceLogEntry, EnhanceLogStore};
use serde_json::json;
use tempfile::TempDir;

fn entry(issue: &str, bp: &str, status: &str, ts_ms: i64) -> EnhanceLogEntry {
    let applied = status == "applied";
    EnhanceLogEntry {
        issue_id: issue.into(),
        blueprint_id: bp.into(),
        prev_hash: "07".repeat(32),
        new_hash: if applied {
            "88".repeat(32)
        } else {
            String::new()
        },
        intent: format!("intent of {issue}"),
        rationale: "r".into(),
        verdicts: vec![
            json!({ "axis": "des", "status": if applied { "pass" } else { "deny" },
                               "detail": "d" }),
        ],
        status: status.into(),
        reasons: if applied {
            vec![]
        } else {
            vec!["des: d".into()]
        },
        ts_ms,
    }
}

fn issues(entries: &[EnhanceLogEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.issue_id.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------

pub async fn append_and_get(store: Arc<dyn EnhanceLogStore>) {
    assert_eq!(store.get("h-1").await.unwrap(), None);
    let e = entry("h-1", "main", "rejected", 1_767_225_600_000);
    assert!(store.append(e.clone()).await.unwrap());
    assert_eq!(store.get("h-1").await.unwrap(), Some(e.clone()));

    // Wire form of http-api.md §12.
    let wire = serde_json::to_value(&e).unwrap();
    let mut keys: Vec<&str> = wire
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "blueprint_id",
            "intent",
            "issue_id",
            "new_hash",
            "prev_hash",
            "rationale",
            "reasons",
            "status",
            "ts_ms",
            "verdicts"
        ]
    );
    assert_eq!(wire["new_hash"], json!(""));
}

pub async fn second_append_keeps_original(store: Arc<dyn EnhanceLogStore>) {
    let first = entry("h-1", "main", "rejected", 10);
    assert!(store.append(first.clone()).await.unwrap());
    let second = entry("h-1", "other", "applied", 20);
    assert!(!store.append(second).await.unwrap(), "duplicate is a no-op");
    assert_eq!(store.get("h-1").await.unwrap(), Some(first));
    assert_eq!(store.list(None, None, 10).await.unwrap().len(), 1);
    assert!(store
        .list(Some("other"), None, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn list_ascending_by_ts_stable(store: Arc<dyn EnhanceLogStore>) {
    assert!(store.list(None, None, 10).await.unwrap().is_empty());
    // Insertion order differs from ts order; equal timestamps keep insertion order.
    for (issue, ts) in [("a", 30), ("b", 10), ("c", 20), ("d", 10), ("e", 30)] {
        assert!(store
            .append(entry(issue, "main", "applied", ts))
            .await
            .unwrap());
    }
    assert_eq!(
        issues(&store.list(None, None, 100).await.unwrap()),
        ["b", "d", "c", "a", "e"]
    );
    // `limit` keeps the newest entries, still oldest first.
    assert_eq!(
        issues(&store.list(None, None, 3).await.unwrap()),
        ["c", "a", "e"]
    );
    assert_eq!(issues(&store.list(None, None, 1).await.unwrap()), ["e"]);
    assert!(store.list(None, None, 0).await.unwrap().is_empty());
}

pub async fn list_filters(store: Arc<dyn EnhanceLogStore>) {
    let rows = [
        ("1", "main", "applied", 1),
        ("2", "other", "rejected", 2),
        ("3", "main", "rejected", 3),
        ("4", "main", "applied", 4),
        ("5", "other", "applied", 5),
        ("6", "main", "rejected", 6),
    ];
    for (issue, bp, status, ts) in rows {
        store.append(entry(issue, bp, status, ts)).await.unwrap();
    }
    let list = |bp: Option<&'static str>, st: Option<&'static str>, limit| {
        let store = Arc::clone(&store);
        async move {
            let got = store.list(bp, st, limit).await.unwrap();
            for e in &got {
                assert!(bp.is_none_or(|b| e.blueprint_id == b));
                assert!(st.is_none_or(|s| e.status == s));
            }
            got.iter().map(|e| e.issue_id.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Some("main"), None, 100).await, ["1", "3", "4", "6"]);
    assert_eq!(list(Some("other"), None, 100).await, ["2", "5"]);
    assert_eq!(list(Some("nope"), None, 100).await, Vec::<String>::new());
    assert_eq!(list(None, Some("applied"), 100).await, ["1", "4", "5"]);
    assert_eq!(list(None, Some("rejected"), 100).await, ["2", "3", "6"]);
    assert_eq!(list(Some("main"), Some("rejected"), 100).await, ["3", "6"]);
    assert_eq!(list(Some("main"), Some("applied"), 1).await, ["4"]);
    assert_eq!(list(None, Some("rejected"), 2).await, ["3", "6"]);
    assert_eq!(list(Some("main"), None, 2).await, ["4", "6"]);
}

pub async fn concurrent_appends_one_per_issue(store: Arc<dyn EnhanceLogStore>) {
    // 2 writers race on the same 200 issues: each issue gets exactly one entry.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut won = 0;
                for i in 0..200 {
                    let mut e = entry(&format!("h-{i}"), "main", "applied", i);
                    e.rationale = format!("writer {w}");
                    if store.append(e).await.unwrap() {
                        won += 1;
                    }
                    tokio::task::yield_now().await;
                }
                won
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 200);
    let all = store.list(None, None, 1000).await.unwrap();
    assert_eq!(all.len(), 200);
    let expected: Vec<String> = (0..200).map(|i| format!("h-{i}")).collect();
    assert_eq!(issues(&all), expected);
}

// ---------------------------------------------------------------------------
// Instantiation per backend
// ---------------------------------------------------------------------------

macro_rules! enhance_log_store_suite {
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
            case!(append_and_get);
            case!(second_append_keeps_original);
            case!(list_ascending_by_ts_stable);
            case!(list_filters);
            case!(concurrent_appends_one_per_issue);
        }
    };
}

async fn memory_store() -> (Arc<dyn EnhanceLogStore>, Option<TempDir>) {
    (Arc::new(MemoryEnhanceLogStore::new()), None)
}

async fn sqlite_store() -> (Arc<dyn EnhanceLogStore>, Option<TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    (Arc::new(SqliteEnhanceLogStore::new(db)), Some(dir))
}

enhance_log_store_suite!(memory, crate::memory_store);
enhance_log_store_suite!(sqlite, crate::sqlite_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let a = entry("h-a", "main", "applied", 20);
    let b = entry("h-b", "main", "rejected", 10);
    {
        let store = SqliteEnhanceLogStore::new(Database::open(&path).unwrap());
        store.append(a.clone()).await.unwrap();
        store.append(b.clone()).await.unwrap();
    }
    let store = SqliteEnhanceLogStore::new(Database::open(&path).unwrap());
    assert_eq!(store.get("h-a").await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.list(Some("main"), None, 10).await.unwrap(),
        vec![b, a.clone()]
    );
    // Still append-only after reopening.
    assert!(!store
        .append(entry("h-a", "x", "rejected", 1))
        .await
        .unwrap());
    assert_eq!(store.get("h-a").await.unwrap(), Some(a));
}
