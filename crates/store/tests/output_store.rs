//! `MemoryOutputStore`: ids, lookups by id and producer name, retention.

use std::collections::HashSet;
use std::sync::Arc;

use mse_engine::OutputEvent;
use mse_store::memory::{MemoryOutputStore, DEFAULT_MAX_OUTPUT_RECORDS};
use mse_store::{OutputRecord, OutputStore};
use serde_json::json;

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

#[tokio::test]
async fn append_assigns_id_and_get_by_id() {
    let store = MemoryOutputStore::default();
    assert_eq!(store.max_records(), DEFAULT_MAX_OUTPUT_RECORDS);
    assert_eq!(DEFAULT_MAX_OUTPUT_RECORDS, 100_000);
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

#[tokio::test]
async fn ids_are_unique() {
    let store = MemoryOutputStore::default();
    let mut ids = HashSet::new();
    for i in 0..2000 {
        let id = store.append(record("T-1", 1, "p", i)).await.unwrap();
        assert!(is_out_id(&id));
        assert!(ids.insert(id));
    }
    assert_eq!(store.count().await.unwrap(), 2000);
}

#[tokio::test]
async fn get_by_name_returns_newest_across_tasks() {
    let store = MemoryOutputStore::default();
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

#[tokio::test]
async fn id_lookup_takes_precedence_over_name() {
    let store = MemoryOutputStore::default();
    let id = store.append(record("T-1", 1, "a", 1)).await.unwrap();
    // A producer that happens to be named like an existing id.
    store.append(record("T-1", 1, &id, 2)).await.unwrap();
    let got = store.get(&id).await.unwrap().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(value_of(&got), 1);
}

#[tokio::test]
async fn retention_drops_oldest_and_keeps_name_index_correct() {
    let store = MemoryOutputStore::new(3);
    assert_eq!(store.max_records(), 3);
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

#[tokio::test]
async fn retention_under_sustained_load_stays_flat() {
    let store = MemoryOutputStore::new(100);
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

#[tokio::test]
async fn zero_cap_is_clamped_to_one() {
    let store = MemoryOutputStore::new(0);
    assert_eq!(store.max_records(), 1);
    let first = store.append(record("T-1", 1, "a", 1)).await.unwrap();
    assert_eq!(store.get(&first).await.unwrap().unwrap().id, first);
    let second = store.append(record("T-1", 1, "b", 2)).await.unwrap();
    assert_eq!(store.get(&first).await.unwrap(), None);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get("b").await.unwrap().unwrap().id, second);
    assert_eq!(store.count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends() {
    let store: Arc<dyn OutputStore> = Arc::new(MemoryOutputStore::new(10_000));
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
