//! Backend-neutral `OutputStore` suite: ids, lookups by id and producer name,
//! retention.
//!
//! Every behaviour is an `async fn(make: Make)` where `make(max_records)` builds a
//! fresh, empty store with that retention cap. [`output_store_suite!`] turns the suite
//! into `#[tokio::test]`s for one backend; it runs on the memory and the SQLite
//! backends (invocations at the bottom of this file, with the backend-only tests).

use std::collections::HashSet;
use std::sync::Arc;

use mse_engine::OutputEvent;
use mse_store::memory::{MemoryOutputStore, DEFAULT_MAX_OUTPUT_RECORDS};
use mse_store::sqlite::{map_error, Database, SqliteBlueprintStore, SqliteOutputStore};
use mse_store::{BlueprintStore, OutputRecord, OutputStore, StoreError};
use serde_json::json;

/// Builds a fresh store keeping at most `max_records` records.
type Make = fn(usize) -> Arc<dyn OutputStore>;

fn record(task: &str, attempt: u32, producer: &str, value: i64) -> OutputRecord {
    OutputRecord {
        id: String::new(),
        task_id: task.into(),
        attempt,
        producer_agent: producer.into(),
        event: OutputEvent::final_inline(json!({ "v": value }), true),
        parent_refs: vec![],
    }
}

fn value_of(rec: &OutputRecord) -> i64 {
    match &rec.event {
        OutputEvent::Final {
            content: mse_engine::ContentRef::Inline { value },
            ..
        } => value["v"].as_i64().unwrap(),
        other => panic!("unexpected event {other:?}"),
    }
}

fn is_out_id(id: &str) -> bool {
    id.len() == 14
        && id.starts_with("out-")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------

pub async fn append_assigns_id_and_get_by_id(make: Make) {
    let store = make(DEFAULT_MAX_OUTPUT_RECORDS);
    assert_eq!(store.count().await.unwrap(), 0);
    assert_eq!(store.get("out-0000000000").await.unwrap(), None);

    let mut rec = record("T-1", 2, "writer", 7);
    rec.id = "out-caller-set".into(); // ignored: the store assigns ids
    rec.parent_refs = vec!["out-aaaaaaaaaa".into()];
    rec.event = OutputEvent::Progress {
        stage: "draft".into(),
        note: Some("n".into()),
    };
    let id = store.append(rec.clone()).await.unwrap();
    assert!(is_out_id(&id), "{id}");
    assert_eq!(store.count().await.unwrap(), 1);

    let got = store.get(&id).await.unwrap().expect("by id");
    assert_eq!(
        got,
        OutputRecord {
            id: id.clone(),
            ..rec
        }
    );
    assert_eq!(store.get("out-caller-set").await.unwrap(), None);
}

pub async fn ids_are_unique(make: Make) {
    let store = make(DEFAULT_MAX_OUTPUT_RECORDS);
    let mut ids = HashSet::new();
    for i in 0..2000 {
        let id = store.append(record("T-1", 1, "p", i)).await.unwrap();
        assert!(is_out_id(&id));
        assert!(ids.insert(id));
    }
    assert_eq!(store.count().await.unwrap(), 2000);
}

pub async fn get_by_name_returns_newest_across_tasks(make: Make) {
    let store = make(DEFAULT_MAX_OUTPUT_RECORDS);
    assert_eq!(store.get("writer").await.unwrap(), None);

    let first = store.append(record("T-1", 1, "writer", 1)).await.unwrap();
    store.append(record("T-1", 1, "critic", 2)).await.unwrap();
    assert_eq!(store.get("writer").await.unwrap().unwrap().id, first);

    // A newer record from another task (and attempt) wins.
    let second = store.append(record("T-2", 3, "writer", 3)).await.unwrap();
    let got = store.get("writer").await.unwrap().unwrap();
    assert_eq!(got.id, second);
    assert_eq!(got.task_id, "T-2");
    assert_eq!(got.attempt, 3);
    assert_eq!(value_of(&got), 3);

    // Back on the first task: the newest append wins, whatever the task.
    let third = store.append(record("T-1", 1, "writer", 4)).await.unwrap();
    assert_eq!(store.get("writer").await.unwrap().unwrap().id, third);

    // Older records stay reachable by id.
    assert_eq!(value_of(&store.get(&first).await.unwrap().unwrap()), 1);
    assert_eq!(value_of(&store.get("critic").await.unwrap().unwrap()), 2);
    assert_eq!(store.get("nobody").await.unwrap(), None);
}

pub async fn id_lookup_takes_precedence_over_name(make: Make) {
    let store = make(DEFAULT_MAX_OUTPUT_RECORDS);
    let id = store.append(record("T-1", 1, "a", 1)).await.unwrap();
    // A producer that happens to be named like an existing id.
    store.append(record("T-1", 1, &id, 2)).await.unwrap();
    let got = store.get(&id).await.unwrap().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(value_of(&got), 1);
}

pub async fn retention_drops_oldest_and_keeps_name_index_correct(make: Make) {
    let store = make(3);
    let a1 = store.append(record("T-1", 1, "a", 1)).await.unwrap();
    let b1 = store.append(record("T-1", 1, "b", 2)).await.unwrap();
    let a2 = store.append(record("T-1", 1, "a", 3)).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3);

    // Fourth record: a1 (not a's newest) is dropped; "a" still resolves to a2.
    let c1 = store.append(record("T-2", 1, "c", 4)).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3);
    assert_eq!(store.get(&a1).await.unwrap(), None);
    assert_eq!(store.get("a").await.unwrap().unwrap().id, a2);

    // Fifth: b1 was b's only record, so the name "b" no longer resolves.
    let c2 = store.append(record("T-2", 1, "c", 5)).await.unwrap();
    assert_eq!(store.get(&b1).await.unwrap(), None);
    assert_eq!(store.get("b").await.unwrap(), None);
    assert_eq!(store.get("a").await.unwrap().unwrap().id, a2);
    assert_eq!(store.get("c").await.unwrap().unwrap().id, c2);

    // Sixth: a2 goes, and with it the name "a"; c's older record stays by id.
    let d1 = store.append(record("T-3", 1, "d", 6)).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get(&a2).await.unwrap(), None);
    for id in [&c1, &c2, &d1] {
        assert!(store.get(id).await.unwrap().is_some());
    }
    assert_eq!(store.count().await.unwrap(), 3);

    // A name re-used after its records were dropped resolves again.
    let b2 = store.append(record("T-4", 1, "b", 7)).await.unwrap();
    assert_eq!(store.get("b").await.unwrap().unwrap().id, b2);
    assert_eq!(store.get(&c1).await.unwrap(), None);
    assert_eq!(store.get("c").await.unwrap().unwrap().id, c2);
}

pub async fn retention_under_sustained_load_stays_flat(make: Make) {
    let store = make(100);
    let mut last = None;
    for i in 0..5000 {
        let producer = format!("p{}", i % 7);
        last = Some(store.append(record("T-1", 1, &producer, i)).await.unwrap());
    }
    assert_eq!(store.count().await.unwrap(), 100);
    // Every producer has a record among the last 100, the newest being 4993..4999.
    for k in 0..7 {
        let got = store.get(&format!("p{k}")).await.unwrap().unwrap();
        assert_eq!(value_of(&got) % 7, k);
        assert!(value_of(&got) >= 4993, "{}", value_of(&got));
    }
    assert_eq!(
        value_of(&store.get(&last.unwrap()).await.unwrap().unwrap()),
        4999
    );
}

pub async fn zero_cap_is_clamped_to_one(make: Make) {
    let store = make(0);
    let first = store.append(record("T-1", 1, "a", 1)).await.unwrap();
    assert_eq!(store.get(&first).await.unwrap().unwrap().id, first);
    let second = store.append(record("T-1", 1, "b", 2)).await.unwrap();
    assert_eq!(store.get(&first).await.unwrap(), None);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get("b").await.unwrap().unwrap().id, second);
    assert_eq!(store.count().await.unwrap(), 1);
}

pub async fn concurrent_appends(make: Make) {
    let store = make(10_000);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..100 {
                ids.push(
                    store
                        .append(record(&format!("T-{t}"), 1, &format!("p{t}"), i))
                        .await
                        .unwrap(),
                );
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 800);
    assert_eq!(store.count().await.unwrap(), 800);
    for t in 0..8 {
        let got = store.get(&format!("p{t}")).await.unwrap().unwrap();
        assert_eq!(
            value_of(&got),
            99,
            "each producer's last append is its newest"
        );
    }
}

// ---------------------------------------------------------------------------
// Instantiation per backend
// ---------------------------------------------------------------------------

/// `output_store_suite!(module_name, constructor)` generates one `#[tokio::test]` per
/// suite function.
macro_rules! output_store_suite {
    ($module:ident, $make:path) => {
        mod $module {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$name($make).await;
                    }
                };
            }
            case!(append_assigns_id_and_get_by_id);
            case!(ids_are_unique);
            case!(get_by_name_returns_newest_across_tasks);
            case!(id_lookup_takes_precedence_over_name);
            case!(retention_drops_oldest_and_keeps_name_index_correct);
            case!(retention_under_sustained_load_stays_flat);
            case!(zero_cap_is_clamped_to_one);
            case!(concurrent_appends);
        }
    };
}

fn memory_store(max_records: usize) -> Arc<dyn OutputStore> {
    Arc::new(MemoryOutputStore::new(max_records))
}

output_store_suite!(memory, crate::memory_store);

#[tokio::test]
async fn memory_default_and_cap() {
    let store = MemoryOutputStore::default();
    assert_eq!(store.max_records(), DEFAULT_MAX_OUTPUT_RECORDS);
    assert_eq!(DEFAULT_MAX_OUTPUT_RECORDS, 100_000);
    assert_eq!(store.count().await.unwrap(), 0);
    assert_eq!(MemoryOutputStore::new(3).max_records(), 3);
    assert_eq!(MemoryOutputStore::new(0).max_records(), 1);
}

// ---------------------------------------------------------------------------
// SQLite backend
// ---------------------------------------------------------------------------

/// A store together with the temporary directory holding its database file; the
/// directory is removed when the store is dropped.
struct InTempDir<S> {
    store: S,
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl<S: OutputStore> OutputStore for InTempDir<S> {
    async fn append(&self, record: OutputRecord) -> Result<String, StoreError> {
        self.store.append(record).await
    }
    async fn get(&self, key: &str) -> Result<Option<OutputRecord>, StoreError> {
        self.store.get(key).await
    }
    async fn count(&self) -> Result<usize, StoreError> {
        self.store.count().await
    }
}

/// A fresh database file (not `in_memory`: WAL and file locking are exercised).
fn sqlite_store(max_records: usize) -> Arc<dyn OutputStore> {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    Arc::new(InTempDir {
        store: SqliteOutputStore::new(db, max_records),
        _dir: dir,
    })
}

output_store_suite!(sqlite, crate::sqlite_store);

#[tokio::test]
async fn sqlite_cap() {
    let db = Database::in_memory().unwrap();
    assert_eq!(SqliteOutputStore::new(db.clone(), 3).max_records(), 3);
    assert_eq!(SqliteOutputStore::new(db, 0).max_records(), 1);
}

/// Outputs and blueprints sharing one database file survive a reopen, and the
/// retention cap keeps applying to the persisted rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");

    let (ids, records, bp_meta) = {
        let db = Database::open(&path).unwrap();
        let outputs = SqliteOutputStore::new(db.clone(), 4);
        let blueprints = SqliteBlueprintStore::new(db);
        let mut ids = Vec::new();
        for (i, producer) in ["a", "b", "a", "c"].into_iter().enumerate() {
            let mut rec = record(&format!("T-{i}"), i as u32, producer, i as i64);
            rec.parent_refs = ids.clone();
            ids.push(outputs.append(rec).await.unwrap());
        }
        let mut records = Vec::new();
        for id in &ids {
            records.push(outputs.get(id).await.unwrap().unwrap());
        }
        let bp = mse_blueprint::Blueprint::from_value(json!({
            "id": "demo", "flow": { "kind": "seq", "children": [] }
        }))
        .unwrap();
        let (meta, _) = blueprints
            .write_new(Arc::new(bp), None, "seed", None, None)
            .await
            .unwrap();
        (ids, records, meta)
    };

    let db = Database::open(&path).unwrap();
    let outputs = SqliteOutputStore::new(db.clone(), 4);
    assert_eq!(outputs.count().await.unwrap(), 4);
    for (id, rec) in ids.iter().zip(&records) {
        assert_eq!(outputs.get(id).await.unwrap().as_ref(), Some(rec));
    }
    assert_eq!(records[3].parent_refs, ids[..3].to_vec());
    assert_eq!(outputs.get("a").await.unwrap().unwrap().id, ids[2]);
    assert_eq!(
        SqliteBlueprintStore::new(db)
            .read_head("demo")
            .await
            .unwrap()
            .meta,
        bp_meta
    );

    // The next append drops the oldest persisted record.
    let e = outputs.append(record("T-9", 1, "e", 9)).await.unwrap();
    assert_eq!(outputs.count().await.unwrap(), 4);
    assert_eq!(outputs.get(&ids[0]).await.unwrap(), None);
    assert_eq!(outputs.get("a").await.unwrap().unwrap().id, ids[2]);
    assert_eq!(outputs.get("e").await.unwrap().unwrap().id, e);

    // A smaller cap after a restart trims on the next append.
    let outputs = SqliteOutputStore::new(Database::open(&path).unwrap(), 2);
    let f = outputs.append(record("T-9", 1, "f", 10)).await.unwrap();
    assert_eq!(outputs.count().await.unwrap(), 2);
    assert_eq!(outputs.get("a").await.unwrap(), None);
    assert_eq!(outputs.get("e").await.unwrap().unwrap().id, e);
    assert_eq!(outputs.get("f").await.unwrap().unwrap().id, f);
}

/// Two handles on one file append concurrently; the cap holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_handles_share_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let stores: [Arc<dyn OutputStore>; 2] = [
        Arc::new(SqliteOutputStore::new(Database::open(&path).unwrap(), 50)),
        Arc::new(SqliteOutputStore::new(Database::open(&path).unwrap(), 50)),
    ];
    let mut tasks = Vec::new();
    for t in 0..4 {
        let store = Arc::clone(&stores[t % 2]);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                ids.push(
                    store
                        .append(record(&format!("T-{t}"), 1, &format!("p{t}"), i))
                        .await
                        .unwrap(),
                );
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 160);
    for store in &stores {
        assert_eq!(store.count().await.unwrap(), 50);
    }
    // The rows kept are the newest 50 of the 160, whichever handle wrote them.
    let db = Database::open(&path).unwrap();
    let (min, max, n): (i64, i64, i64) = db
        .call(|c| {
            c.query_row(
                "SELECT MIN(seq), MAX(seq), count(*) FROM outputs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(map_error)
        })
        .await
        .unwrap();
    assert_eq!((max - min + 1, n, max), (50, 50, 160));
    // A producer still present resolves to its last append (a producer that
    // finished early may have been pushed out by the others).
    for t in 0..4 {
        if let Some(got) = stores[(t + 1) % 2].get(&format!("p{t}")).await.unwrap() {
            assert_eq!(
                value_of(&got),
                39,
                "each producer's last append is its newest"
            );
        }
    }
}

/// A stored row that no longer parses is an `Unavailable` error, not a panic or a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_garbage_row_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    let store = SqliteOutputStore::new(db.clone(), 10);
    let id = store.append(record("T-1", 1, "p", 1)).await.unwrap();
    db.call(|c| {
        c.execute("UPDATE outputs SET event_json = '{\"type\": \"nope\"}'", [])
            .map_err(map_error)
    })
    .await
    .unwrap();
    for key in [id.as_str(), "p"] {
        match store.get(key).await.unwrap_err() {
            StoreError::Unavailable(m) => assert!(m.contains("corrupt stored output"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(store.count().await.unwrap(), 1);
}
