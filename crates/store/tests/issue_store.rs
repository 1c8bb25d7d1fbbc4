//! Backend-neutral `IssueStore` suite, run on the memory and SQLite backends, plus
//! SQLite-only cases (persistence, two database handles on one file).
//!
//! Every behaviour is an `async fn(store: Arc<dyn IssueStore>)` taking a fresh, empty
//! store; [`issue_store_suite!`] turns the suite into `#[tokio::test]`s for one
//! backend given an async constructor returning the store and a guard that keeps
//! its files alive.

use std::collections::HashSet;
use std::sync::Arc;

use mse_store::memory::MemoryIssueStore;
use mse_store::sqlite::{Database, SqliteIssueStore};
use mse_store::{IssueRecord, IssueStatus, IssueStore, StoreError};
use serde_json::json;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn is_issue_id(id: &str) -> bool {
    let Some(u) = id.strip_prefix("h-") else {
        return false;
    };
    let lens: Vec<usize> = u.split('-').map(str::len).collect();
    lens == [8, 4, 4, 4, 12]
        && u.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && u.as_bytes()[14] == b'4'
}

async fn create_n(store: &dyn IssueStore, n: usize) -> Vec<IssueRecord> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(store.create("main", &format!("intent {i}")).await.unwrap());
    }
    out
}

fn ids(records: &[IssueRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

async fn status(store: &dyn IssueStore, id: &str) -> IssueStatus {
    store.get(id).await.unwrap().expect("issue exists").status
}

const V1: &str = "0d54b2eafbf77c3ded561eca16bb37617a42d39f730d9108336634a3672339bb";

// ---------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------

pub async fn create_and_get(store: Arc<dyn IssueStore>) {
    let rec = store.create("main", "add a lint step").await.unwrap();
    assert!(is_issue_id(&rec.id), "{}", rec.id);
    assert_eq!(rec.blueprint_id, "main");
    assert_eq!(rec.intent, "add a lint step");
    assert_eq!(rec.status, IssueStatus::Pending);
    assert_eq!(rec.reason, None);
    assert_eq!(rec.new_version, None);
    assert_eq!(rec.attempts, 0);
    assert!(rec.created_at_ms > 1_600_000_000_000);
    assert_eq!(rec.updated_at_ms, rec.created_at_ms);
    assert_eq!(store.get(&rec.id).await.unwrap(), Some(rec.clone()));

    let other = store.create("other", "x").await.unwrap();
    assert_ne!(other.id, rec.id);
    assert_eq!(store.get("h-unknown").await.unwrap(), None);

    let wire = serde_json::to_value(&rec).unwrap();
    assert_eq!(wire["issue_id"], json!(rec.id));
    assert_eq!(wire["status"], json!("pending"));
    assert_eq!(wire["reason"], json!(null));
    assert_eq!(wire["new_version"], json!(null));
}

pub async fn pop_is_fifo(store: Arc<dyn IssueStore>) {
    assert_eq!(store.pop_pending().await.unwrap(), None, "empty queue");
    let created = create_n(&*store, 5).await;
    let mut popped = Vec::new();
    while let Some(rec) = store.pop_pending().await.unwrap() {
        assert_eq!(rec.status, IssueStatus::InFlight);
        assert_eq!(rec.attempts, 1);
        assert!(rec.updated_at_ms >= rec.created_at_ms);
        assert_eq!(store.get(&rec.id).await.unwrap(), Some(rec.clone()));
        popped.push(rec);
    }
    assert_eq!(ids(&popped), ids(&created), "oldest first");
    assert_eq!(store.pop_pending().await.unwrap(), None);

    // Issues created later are popped after the remaining older ones.
    let a = store.create("main", "a").await.unwrap();
    let b = store.create("main", "b").await.unwrap();
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, a.id);
    let c = store.create("main", "c").await.unwrap();
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, b.id);
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, c.id);
}

pub async fn list_filters_newest_first(store: Arc<dyn IssueStore>) {
    assert!(store.list(None, 10).await.unwrap().is_empty());
    let created = create_n(&*store, 6).await;
    let newest_first: Vec<String> = ids(&created).into_iter().rev().collect();
    assert_eq!(ids(&store.list(None, 100).await.unwrap()), newest_first);
    assert_eq!(ids(&store.list(None, 2).await.unwrap()), newest_first[..2]);
    assert!(store.list(None, 0).await.unwrap().is_empty());

    // 0, 1, 2 popped; 1 applied, 2 rejected; 3, 4, 5 pending.
    for _ in 0..3 {
        store.pop_pending().await.unwrap().unwrap();
    }
    assert!(store
        .set_status(&created[1].id, IssueStatus::Applied, None, Some(V1.into()))
        .await
        .unwrap());
    assert!(store
        .set_status(
            &created[2].id,
            IssueStatus::Rejected,
            Some("no".into()),
            None
        )
        .await
        .unwrap());

    let by = |s| {
        let store = Arc::clone(&store);
        async move { ids(&store.list(Some(s), 100).await.unwrap()) }
    };
    assert_eq!(
        by(IssueStatus::Pending).await,
        [
            created[5].id.as_str(),
            created[4].id.as_str(),
            created[3].id.as_str()
        ]
    );
    assert_eq!(by(IssueStatus::InFlight).await, [created[0].id.as_str()]);
    assert_eq!(by(IssueStatus::Applied).await, [created[1].id.as_str()]);
    assert_eq!(by(IssueStatus::Rejected).await, [created[2].id.as_str()]);
    assert_eq!(
        ids(&store.list(Some(IssueStatus::Pending), 2).await.unwrap()),
        [created[5].id.as_str(), created[4].id.as_str()]
    );
    let all = store.list(None, 100).await.unwrap();
    assert_eq!(
        ids(&all),
        newest_first,
        "status changes keep creation order"
    );
    let applied = &all[4];
    assert_eq!(applied.new_version.as_deref(), Some(V1));
}

pub async fn set_status_semantics(store: Arc<dyn IssueStore>) {
    assert!(!store
        .set_status("h-unknown", IssueStatus::Rejected, Some("x".into()), None)
        .await
        .unwrap());

    let a = store.create("main", "a").await.unwrap();
    let b = store.create("main", "b").await.unwrap();
    let c = store.create("main", "c").await.unwrap();

    // Applied: the version is normalised to lowercase, a reason is dropped.
    assert!(store
        .set_status(
            &a.id,
            IssueStatus::Applied,
            Some("ignored".into()),
            Some(V1.to_uppercase())
        )
        .await
        .unwrap());
    let got = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(got.status, IssueStatus::Applied);
    assert_eq!(got.new_version.as_deref(), Some(V1));
    assert_eq!(got.reason, None);
    assert_eq!(got.attempts, 0, "set_status never counts attempts");
    assert!(got.updated_at_ms >= got.created_at_ms);

    // A malformed version is refused and nothing changes.
    assert_eq!(
        store
            .set_status(&b.id, IssueStatus::Applied, None, Some("abc".into()))
            .await
            .unwrap_err(),
        StoreError::BadVersion("abc".into())
    );
    assert_eq!(status(&*store, &b.id).await, IssueStatus::Pending);

    // Rejected: the reason is kept, a version dropped; the issue leaves the queue.
    assert!(store
        .set_status(
            &b.id,
            IssueStatus::Rejected,
            Some("verifier deny: des: drift".into()),
            Some(V1.into())
        )
        .await
        .unwrap());
    let got = store.get(&b.id).await.unwrap().unwrap();
    assert_eq!(got.reason.as_deref(), Some("verifier deny: des: drift"));
    assert_eq!(got.new_version, None);
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, c.id);
    assert_eq!(store.pop_pending().await.unwrap(), None);

    // Back to pending: details cleared, re-queued at its creation position
    // (before newer pending issues).
    let d = store.create("main", "d").await.unwrap();
    assert!(store
        .set_status(&b.id, IssueStatus::Pending, Some("x".into()), None)
        .await
        .unwrap());
    let got = store.get(&b.id).await.unwrap().unwrap();
    assert_eq!((got.reason, got.new_version), (None, None));
    let popped = store.pop_pending().await.unwrap().unwrap();
    assert_eq!(popped.id, b.id);
    assert_eq!(popped.attempts, 1);
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, d.id);
}

pub async fn recover_in_flight_both_branches(store: Arc<dyn IssueStore>) {
    assert_eq!(
        store.recover_in_flight(3).await.unwrap(),
        (vec![], vec![]),
        "nothing in flight"
    );
    let a = store.create("main", "a").await.unwrap();
    let b = store.create("main", "b").await.unwrap();
    let c = store.create("main", "c").await.unwrap();
    let done = store.create("main", "done").await.unwrap();
    let waiting = store.create("main", "waiting").await.unwrap();

    // a: popped once. b: popped three times (re-queued by hand in between).
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, a.id);
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, b.id);
    for _ in 0..2 {
        store
            .set_status(&b.id, IssueStatus::Pending, None, None)
            .await
            .unwrap();
        let rec = store.pop_pending().await.unwrap().unwrap();
        assert_eq!(rec.id, b.id);
    }
    assert_eq!(store.get(&b.id).await.unwrap().unwrap().attempts, 3);
    // c: popped twice.
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, c.id);
    store
        .set_status(&c.id, IssueStatus::Pending, None, None)
        .await
        .unwrap();
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, c.id);
    // done: finished, not touched by recovery.
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, done.id);
    store
        .set_status(&done.id, IssueStatus::Applied, None, Some(V1.into()))
        .await
        .unwrap();

    let (requeued, rejected) = store.recover_in_flight(3).await.unwrap();
    assert_eq!(requeued, vec![a.id.clone(), c.id.clone()]);
    assert_eq!(rejected, vec![b.id.clone()]);

    let got = store.get(&b.id).await.unwrap().unwrap();
    assert_eq!(got.status, IssueStatus::Rejected);
    assert_eq!(
        got.reason.as_deref(),
        Some("interrupted: gave up after 3 attempts")
    );
    assert_eq!(got.attempts, 3);
    let got = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.attempts), (IssueStatus::Pending, 1));
    assert_eq!(status(&*store, &done.id).await, IssueStatus::Applied);
    assert_eq!(status(&*store, &waiting.id).await, IssueStatus::Pending);

    // Re-queued issues keep their place: a, c (older) before `waiting`.
    let order: Vec<(String, u32)> = {
        let mut v = Vec::new();
        while let Some(r) = store.pop_pending().await.unwrap() {
            v.push((r.id, r.attempts));
        }
        v
    };
    assert_eq!(
        order,
        vec![
            (a.id.clone(), 2),
            (c.id.clone(), 3),
            (waiting.id.clone(), 1)
        ]
    );

    // max_attempts 0 rejects everything in flight.
    let (requeued, rejected) = store.recover_in_flight(0).await.unwrap();
    assert!(requeued.is_empty());
    assert_eq!(
        rejected,
        vec![a.id.clone(), c.id.clone(), waiting.id.clone()]
    );
    assert_eq!(
        store.get(&a.id).await.unwrap().unwrap().reason.as_deref(),
        Some("interrupted: gave up after 2 attempts")
    );
    assert!(store
        .list(Some(IssueStatus::InFlight), 10)
        .await
        .unwrap()
        .is_empty());
}

/// Pop until empty from one task per store handle, all at once; the ids each
/// task popped.
async fn drain_concurrently(stores: Vec<Arc<dyn IssueStore>>) -> Vec<Vec<String>> {
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(rec) = store.pop_pending().await.unwrap() {
                    assert_eq!(rec.status, IssueStatus::InFlight);
                    assert_eq!(rec.attempts, 1, "{} popped twice", rec.id);
                    got.push(rec.id);
                    // Memory pops never suspend: yield so the consumers interleave.
                    tokio::task::yield_now().await;
                }
                got
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Every created issue popped exactly once, each consumer in FIFO order.
async fn assert_each_once(created: &[IssueRecord], popped: &[Vec<String>]) {
    let position: std::collections::HashMap<&str, usize> = created
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut seen = HashSet::new();
    for consumer in popped {
        let positions: Vec<usize> = consumer.iter().map(|id| position[id.as_str()]).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "each consumer sees FIFO order"
        );
        for id in consumer {
            assert!(seen.insert(id.clone()), "{id} popped twice");
        }
    }
    assert_eq!(seen.len(), created.len(), "none lost");
}

pub async fn two_consumers_take_each_issue_once(store: Arc<dyn IssueStore>) {
    const N: usize = 1000;
    let created = create_n(&*store, N).await;
    let popped = drain_concurrently(vec![Arc::clone(&store), Arc::clone(&store)]).await;
    assert_each_once(&created, &popped).await;
    assert_eq!(
        store
            .list(Some(IssueStatus::InFlight), N + 1)
            .await
            .unwrap()
            .len(),
        N
    );
    assert!(store.pop_pending().await.unwrap().is_none());
}

// ---------------------------------------------------------------------------
// Instantiation per backend
// ---------------------------------------------------------------------------

/// `issue_store_suite!(module_name, async_constructor)`: one `#[tokio::test]` per
/// suite function, each on a fresh store.
macro_rules! issue_store_suite {
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
            case!(create_and_get);
            case!(pop_is_fifo);
            case!(list_filters_newest_first);
            case!(set_status_semantics);
            case!(recover_in_flight_both_branches);
            case!(two_consumers_take_each_issue_once);
        }
    };
}

async fn memory_store() -> (Arc<dyn IssueStore>, Option<TempDir>) {
    (Arc::new(MemoryIssueStore::new()), None)
}

async fn sqlite_store() -> (Arc<dyn IssueStore>, Option<TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    (Arc::new(SqliteIssueStore::new(db)), Some(dir))
}

issue_store_suite!(memory, crate::memory_store);
issue_store_suite!(sqlite, crate::sqlite_store);

// ---------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_database_handles_take_each_issue_once() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let first: Arc<dyn IssueStore> =
        Arc::new(SqliteIssueStore::new(Database::open(&path).unwrap()));
    let second: Arc<dyn IssueStore> =
        Arc::new(SqliteIssueStore::new(Database::open(&path).unwrap()));
    let created = create_n(&*first, N).await;
    let popped = drain_concurrently(vec![Arc::clone(&first), Arc::clone(&second)]).await;
    assert_each_once(&created, &popped).await;
    assert!(second.pop_pending().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_issues_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let (a, b, c) = {
        let store = SqliteIssueStore::new(Database::open(&path).unwrap());
        let a = store.create("main", "a").await.unwrap();
        let b = store.create("main", "b").await.unwrap();
        let c = store.create("other", "c").await.unwrap();
        store.pop_pending().await.unwrap().unwrap();
        store
            .set_status(&c.id, IssueStatus::Applied, None, Some(V1.into()))
            .await
            .unwrap();
        (a, b, c)
    };
    let store = SqliteIssueStore::new(Database::open(&path).unwrap());
    let got_a = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!((got_a.status, got_a.attempts), (IssueStatus::InFlight, 1));
    assert_eq!(store.get(&b.id).await.unwrap().unwrap(), b);
    let got_c = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(got_c.status, IssueStatus::Applied);
    assert_eq!(got_c.new_version.as_deref(), Some(V1));
    assert_eq!(
        ids(&store.list(None, 10).await.unwrap()),
        [c.id.as_str(), b.id.as_str(), a.id.as_str()]
    );
    // The crash left `a` in flight: recovery re-queues it ahead of `b`.
    assert_eq!(
        store.recover_in_flight(3).await.unwrap(),
        (vec![a.id.clone()], vec![])
    );
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, a.id);
    assert_eq!(store.pop_pending().await.unwrap().unwrap().id, b.id);
}
