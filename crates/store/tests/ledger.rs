//! Backend-neutral `EnhanceLedger` suite, run on the memory and SQLite backends:
//! each case gets a ledger and the standalone Blueprint, issue and log stores over
//! the same (fresh) state, and checks through those stores what a commit wrote.

use std::sync::Arc;

use mse_blueprint::{Blueprint, BlueprintVersion};
use mse_store::memory::{
    MemoryBlueprintStore, MemoryEnhanceLogStore, MemoryIssueStore, MemoryLedger,
};
use mse_store::sqlite::{
    Database, SqliteBlueprintStore, SqliteEnhanceLogStore, SqliteIssueStore, SqliteLedger,
};
use mse_store::{
    BlueprintStore, EnhanceLedger, EnhanceLogEntry, EnhanceLogStore, IssueRecord, IssueStatus,
    IssueStore, StoreError, VersionMeta,
};
use serde_json::json;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Fixture and helpers
// ---------------------------------------------------------------------------

pub struct Fixture {
    ledger: Arc<dyn EnhanceLedger>,
    blueprints: Arc<dyn BlueprintStore>,
    issues: Arc<dyn IssueStore>,
    log: Arc<dyn EnhanceLogStore>,
    _dir: Option<TempDir>,
}

/// A minimal Blueprint whose content differs by `desc`.
fn bp(id: &str, desc: &str, label: &str) -> Arc<Blueprint> {
    let value = json!({
        "id": id,
        "flow": { "kind": "seq", "children": [] },
        "metadata": { "description": desc, "version_label": label },
    });
    Arc::new(Blueprint::from_value(value).expect("test blueprint parses"))
}

fn ver(bp: &Blueprint) -> BlueprintVersion {
    BlueprintVersion::of(bp)
}

/// The entry the enhance loop would hand the ledger; the fields the ledger fills
/// in (`issue_id`, `status`, hashes) are deliberately wrong.
fn loop_entry(bp_id: &str, rationale: &str) -> EnhanceLogEntry {
    EnhanceLogEntry {
        issue_id: "wrong".into(),
        blueprint_id: bp_id.into(),
        prev_hash: "wrong".into(),
        new_hash: "wrong".into(),
        intent: "describe demo".into(),
        rationale: rationale.into(),
        verdicts: vec![json!({ "axis": "des", "status": "pass", "detail": "ok" })],
        status: "wrong".into(),
        reasons: vec![],
        ts_ms: 1_767_225_600_000,
    }
}

/// Seed `demo` with one version and queue + pop one issue against it.
async fn seeded(f: &Fixture) -> (VersionMeta, IssueRecord) {
    let (seed, written) = f
        .blueprints
        .write_new(bp("demo", "v1", "1.0.0"), None, "seed", None, None)
        .await
        .unwrap();
    assert!(written);
    let issue = f.issues.create("demo", "describe demo").await.unwrap();
    let popped = f.issues.pop_pending().await.unwrap().unwrap();
    assert_eq!(popped.id, issue.id);
    (seed, popped)
}

/// Nothing of a commit for `issue` is visible: the head is `head`, the history
/// has `versions` entries, no log entry, the issue still in flight.
async fn assert_nothing_written(f: &Fixture, issue: &str, head: BlueprintVersion, versions: usize) {
    assert_eq!(
        f.blueprints.read_head("demo").await.unwrap().meta.version,
        head
    );
    assert_eq!(
        f.blueprints.history("demo", 100).await.unwrap().len(),
        versions
    );
    assert_eq!(f.log.get(issue).await.unwrap(), None);
    let rec = f.issues.get(issue).await.unwrap().unwrap();
    assert_eq!(rec.status, IssueStatus::InFlight);
    assert_eq!((rec.reason, rec.new_version), (None, None));
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(m) if m.starts_with("ledger conflict:"))
}

// ---------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------

pub async fn applied_writes_version_log_and_status(f: Fixture) {
    let (seed, issue) = seeded(&f).await;
    let v2 = bp("demo", "v2", "1.1.0");
    let meta = f
        .ledger
        .commit_applied(
            &issue.id,
            Arc::clone(&v2),
            seed.version,
            Some("epoch-1".into()),
            Some("ab".repeat(32)),
            loop_entry("demo", "describe demo"),
        )
        .await
        .unwrap();
    assert_eq!(meta.version, ver(&v2));
    assert_eq!(meta.parents, vec![seed.version]);
    assert_eq!(meta.rationale, "describe demo", "the entry's rationale");
    assert_eq!(meta.epoch_id.as_deref(), Some("epoch-1"));
    assert_eq!(meta.patch_hash, Some("ab".repeat(32)));
    assert_eq!(meta.version_label.as_deref(), Some("1.1.0"));

    // The version, readable through the standalone Blueprint store.
    let head = f.blueprints.read_head("demo").await.unwrap();
    assert_eq!(head.meta, meta);
    assert_eq!(*head.blueprint, *v2);
    assert_eq!(
        f.blueprints.history("demo", 10).await.unwrap(),
        vec![meta.clone(), seed.clone()]
    );
    assert_eq!(
        *f.blueprints
            .read_version("demo", &seed.version)
            .await
            .unwrap()
            .blueprint,
        *bp("demo", "v1", "1.0.0")
    );

    // The log entry, with the ledger's fields filled in.
    let logged = f.log.get(&issue.id).await.unwrap().expect("log entry");
    let expected = EnhanceLogEntry {
        issue_id: issue.id.clone(),
        status: "applied".into(),
        prev_hash: seed.version.to_hex(),
        new_hash: meta.version.to_hex(),
        ..loop_entry("demo", "describe demo")
    };
    assert_eq!(logged, expected);
    assert_eq!(
        f.log.list(Some("demo"), None, 10).await.unwrap(),
        vec![expected]
    );

    // The issue status.
    let rec = f.issues.get(&issue.id).await.unwrap().unwrap();
    assert_eq!(rec.status, IssueStatus::Applied);
    assert_eq!(rec.new_version, Some(meta.version.to_hex()));
    assert_eq!(rec.reason, None);
    assert_eq!(rec.attempts, 1);
}

pub async fn head_moved_writes_nothing(f: Fixture) {
    let (seed, issue) = seeded(&f).await;
    // Someone else moves the head after the run started.
    let (moved, _) = f
        .blueprints
        .write_new(bp("demo", "other", "1.0.1"), None, "manual", None, None)
        .await
        .unwrap();
    let err = f
        .ledger
        .commit_applied(
            &issue.id,
            bp("demo", "v2", "1.1.0"),
            seed.version,
            None,
            None,
            loop_entry("demo", "r"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::HeadMoved {
            id: "demo".into(),
            expected: seed.version.to_hex(),
            actual: moved.version.to_hex(),
        }
    );
    assert_nothing_written(&f, &issue.id, moved.version, 2).await;

    // The issue can still be finished afterwards (here: rejected).
    f.ledger
        .commit_rejected(&issue.id, "conflict: head moved", loop_entry("demo", "r"))
        .await
        .unwrap();
    assert_eq!(
        f.issues.get(&issue.id).await.unwrap().unwrap().status,
        IssueStatus::Rejected
    );

    // A series without a head also counts as moved.
    let issue2 = f.issues.create("fresh", "x").await.unwrap();
    f.issues.pop_pending().await.unwrap().unwrap();
    let err = f
        .ledger
        .commit_applied(
            &issue2.id,
            bp("fresh", "v", "1.0.0"),
            seed.version,
            None,
            None,
            loop_entry("fresh", "r"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::HeadMoved { ref actual, .. } if actual == "none"),
        "{err:?}"
    );
    assert!(f.blueprints.history("fresh", 10).await.unwrap().is_empty());
    assert_eq!(f.log.get(&issue2.id).await.unwrap(), None);
}

pub async fn rejected_writes_log_and_status(f: Fixture) {
    let (seed, issue) = seeded(&f).await;
    let mut entry = loop_entry("demo", "denied by des");
    entry.prev_hash = seed.version.to_hex();
    entry.reasons = vec!["des: schema drift".into()];
    f.ledger
        .commit_rejected(&issue.id, "verifier deny: des: schema drift", entry.clone())
        .await
        .unwrap();

    let logged = f.log.get(&issue.id).await.unwrap().expect("log entry");
    assert_eq!(
        logged,
        EnhanceLogEntry {
            issue_id: issue.id.clone(),
            status: "rejected".into(),
            new_hash: String::new(),
            ..entry
        }
    );
    let rec = f.issues.get(&issue.id).await.unwrap().unwrap();
    assert_eq!(rec.status, IssueStatus::Rejected);
    assert_eq!(
        rec.reason.as_deref(),
        Some("verifier deny: des: schema drift")
    );
    assert_eq!(rec.new_version, None);
    // No version written.
    assert_eq!(f.blueprints.history("demo", 10).await.unwrap(), vec![seed]);
}

pub async fn preconditions_write_nothing(f: Fixture) {
    let (seed, issue) = seeded(&f).await;
    let v2 = bp("demo", "v2", "1.1.0");
    let apply = |id: String| {
        let ledger = Arc::clone(&f.ledger);
        let v2 = Arc::clone(&v2);
        async move {
            ledger
                .commit_applied(&id, v2, seed.version, None, None, loop_entry("demo", "r"))
                .await
        }
    };

    // Unknown issue.
    let err = apply("h-unknown".into()).await.unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    let err = f
        .ledger
        .commit_rejected("h-unknown", "x", loop_entry("demo", "r"))
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert_eq!(f.log.get("h-unknown").await.unwrap(), None);

    // A pending (not popped) issue.
    let pending = f.issues.create("demo", "later").await.unwrap();
    let err = apply(pending.id.clone()).await.unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    let err = f
        .ledger
        .commit_rejected(&pending.id, "x", loop_entry("demo", "r"))
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert_eq!(
        f.issues.get(&pending.id).await.unwrap().unwrap().status,
        IssueStatus::Pending
    );
    assert_nothing_written(&f, &issue.id, seed.version, 1).await;

    // An in-flight issue that somehow already has a log entry.
    assert!(f
        .log
        .append(EnhanceLogEntry {
            issue_id: issue.id.clone(),
            ..loop_entry("demo", "stray")
        })
        .await
        .unwrap());
    let err = apply(issue.id.clone()).await.unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert_eq!(
        f.blueprints.history("demo", 10).await.unwrap(),
        vec![seed.clone()]
    );
    assert_eq!(
        f.log.get(&issue.id).await.unwrap().unwrap().rationale,
        "stray"
    );
    assert_eq!(
        f.issues.get(&issue.id).await.unwrap().unwrap().status,
        IssueStatus::InFlight
    );

    // An issue already finished cannot be committed again.
    let second = f.issues.pop_pending().await.unwrap().unwrap();
    assert_eq!(second.id, pending.id);
    let meta = apply(second.id.clone()).await.unwrap();
    let v3 = bp("demo", "v3", "1.2.0");
    let err = f
        .ledger
        .commit_applied(
            &second.id,
            v3,
            meta.version,
            None,
            None,
            loop_entry("demo", "r"),
        )
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    let err = f
        .ledger
        .commit_rejected(&second.id, "x", loop_entry("demo", "r"))
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert_eq!(f.blueprints.history("demo", 10).await.unwrap().len(), 2);
    let rec = f.issues.get(&second.id).await.unwrap().unwrap();
    assert_eq!(rec.status, IssueStatus::Applied);
    assert_eq!(
        f.log.get(&second.id).await.unwrap().unwrap().status,
        "applied"
    );
}

pub async fn archived_target_writes_nothing(f: Fixture) {
    let (seed, issue) = seeded(&f).await;
    f.blueprints.archive("demo").await.unwrap();
    let err = f
        .ledger
        .commit_applied(
            &issue.id,
            bp("demo", "v2", "1.1.0"),
            seed.version,
            None,
            None,
            loop_entry("demo", "r"),
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::Archived("demo".into()));
    f.blueprints.unarchive("demo").await.unwrap();
    assert_nothing_written(&f, &issue.id, seed.version, 1).await;
}

pub async fn unchanged_content_applies_without_new_version(f: Fixture) {
    let (seed, issue) = seeded(&f).await;
    let meta = f
        .ledger
        .commit_applied(
            &issue.id,
            bp("demo", "v1", "1.0.0"),
            seed.version,
            None,
            None,
            loop_entry("demo", "noop"),
        )
        .await
        .unwrap();
    assert_eq!(meta, seed, "the head's meta");
    assert_eq!(
        f.blueprints.history("demo", 10).await.unwrap(),
        vec![seed.clone()]
    );
    let logged = f.log.get(&issue.id).await.unwrap().unwrap();
    assert_eq!(logged.new_hash, seed.version.to_hex());
    assert_eq!(logged.prev_hash, seed.version.to_hex());
    assert_eq!(
        f.issues.get(&issue.id).await.unwrap().unwrap().new_version,
        Some(seed.version.to_hex())
    );
}

pub async fn concurrent_commits_on_one_head_single_winner(f: Fixture) {
    const N: usize = 8;
    let (seed, first) = seeded(&f).await;
    let mut issues = vec![first];
    for i in 1..N {
        f.issues.create("demo", &format!("i{i}")).await.unwrap();
        issues.push(f.issues.pop_pending().await.unwrap().unwrap());
    }
    let tasks: Vec<_> = issues
        .iter()
        .enumerate()
        .map(|(i, issue)| {
            let ledger = Arc::clone(&f.ledger);
            let id = issue.id.clone();
            tokio::spawn(async move {
                let r = ledger
                    .commit_applied(
                        &id,
                        bp("demo", &format!("candidate {i}"), "1.1.0"),
                        seed.version,
                        None,
                        None,
                        loop_entry("demo", &format!("r{i}")),
                    )
                    .await;
                (id, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        match r {
            Ok(meta) => winners.push((id, meta)),
            Err(StoreError::HeadMoved { .. }) => {
                assert_eq!(f.log.get(&id).await.unwrap(), None);
                assert_eq!(
                    f.issues.get(&id).await.unwrap().unwrap().status,
                    IssueStatus::InFlight
                );
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one commit on the same head wins");
    let (id, meta) = &winners[0];
    assert_eq!(f.blueprints.read_head("demo").await.unwrap().meta, *meta);
    assert_eq!(f.blueprints.history("demo", 100).await.unwrap().len(), 2);
    assert_eq!(f.log.list(None, None, 100).await.unwrap().len(), 1);
    assert_eq!(
        f.log.get(id).await.unwrap().unwrap().new_hash,
        meta.version.to_hex()
    );
    assert_eq!(
        f.issues
            .list(Some(IssueStatus::Applied), 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

// ---------------------------------------------------------------------------
// Instantiation per backend
// ---------------------------------------------------------------------------

macro_rules! ledger_suite {
    ($module:ident, $make:path) => {
        mod $module {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$name($make().await).await;
                    }
                };
            }
            case!(applied_writes_version_log_and_status);
            case!(head_moved_writes_nothing);
            case!(rejected_writes_log_and_status);
            case!(preconditions_write_nothing);
            case!(archived_target_writes_nothing);
            case!(unchanged_content_applies_without_new_version);
            case!(concurrent_commits_on_one_head_single_winner);
        }
    };
}

async fn memory_fixture() -> Fixture {
    let blueprints = Arc::new(MemoryBlueprintStore::new());
    let issues = Arc::new(MemoryIssueStore::new());
    let log = Arc::new(MemoryEnhanceLogStore::new());
    Fixture {
        ledger: Arc::new(MemoryLedger::new(
            Arc::clone(&blueprints),
            Arc::clone(&issues),
            Arc::clone(&log),
        )),
        blueprints,
        issues,
        log,
        _dir: None,
    }
}

fn sqlite_fixture_at(db: Database, dir: Option<TempDir>) -> Fixture {
    Fixture {
        ledger: Arc::new(SqliteLedger::new(db.clone())),
        blueprints: Arc::new(SqliteBlueprintStore::new(db.clone())),
        issues: Arc::new(SqliteIssueStore::new(db.clone())),
        log: Arc::new(SqliteEnhanceLogStore::new(db)),
        _dir: dir,
    }
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    sqlite_fixture_at(db, Some(dir))
}

/// The ledger on its own database handle, the stores on another (same file): what
/// two processes sharing the file see.
async fn sqlite_two_handles_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let stores = Database::open(&path).unwrap();
    let mut f = sqlite_fixture_at(stores, None);
    f.ledger = Arc::new(SqliteLedger::new(Database::open(&path).unwrap()));
    f._dir = Some(dir);
    f
}

ledger_suite!(memory, crate::memory_fixture);
ledger_suite!(sqlite, crate::sqlite_fixture);
ledger_suite!(sqlite_two_handles, crate::sqlite_two_handles_fixture);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_commits_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let (seed, applied, rejected, meta) = {
        let f = sqlite_fixture_at(Database::open(&path).unwrap(), None);
        let (seed, applied) = seeded(&f).await;
        let meta = f
            .ledger
            .commit_applied(
                &applied.id,
                bp("demo", "v2", "1.1.0"),
                seed.version,
                None,
                Some("cd".repeat(32)),
                loop_entry("demo", "r"),
            )
            .await
            .unwrap();
        f.issues.create("demo", "second").await.unwrap();
        let rejected = f.issues.pop_pending().await.unwrap().unwrap();
        f.ledger
            .commit_rejected(&rejected.id, "verifier deny: x", loop_entry("demo", "r2"))
            .await
            .unwrap();
        (seed, applied, rejected, meta)
    };
    let f = sqlite_fixture_at(Database::open(&path).unwrap(), None);
    assert_eq!(f.blueprints.read_head("demo").await.unwrap().meta, meta);
    assert_eq!(
        f.blueprints.history("demo", 10).await.unwrap(),
        vec![meta.clone(), seed]
    );
    assert_eq!(
        f.issues
            .get(&applied.id)
            .await
            .unwrap()
            .unwrap()
            .new_version,
        Some(meta.version.to_hex())
    );
    assert_eq!(
        f.issues
            .get(&rejected.id)
            .await
            .unwrap()
            .unwrap()
            .reason
            .as_deref(),
        Some("verifier deny: x")
    );
    let log = f.log.list(Some("demo"), None, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.status.as_str()).collect::<Vec<_>>(),
        ["applied", "rejected"]
    );
    assert_eq!(
        f.issues.recover_in_flight(3).await.unwrap(),
        (vec![], vec![])
    );
}

/// A failure in a late step of the SQLite transaction (injected with a trigger)
/// rolls back the earlier ones: no version, no log entry, issue still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_late_failure_rolls_back_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    let f = sqlite_fixture_at(db.clone(), None);
    let (seed, issue) = seeded(&f).await;
    let inject = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.call(move |c| c.execute_batch(sql).map_err(mse_store::sqlite::map_error))
                .await
                .unwrap()
        }
    };

    // The log insert (after the version write) fails.
    inject(
        "CREATE TRIGGER fail_log BEFORE INSERT ON enhance_log \
         BEGIN SELECT RAISE(ABORT, 'injected log failure'); END;",
    )
    .await;
    let err = f
        .ledger
        .commit_applied(
            &issue.id,
            bp("demo", "v2", "1.1.0"),
            seed.version,
            None,
            None,
            loop_entry("demo", "r"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected log failure"), "{err}");
    assert_nothing_written(&f, &issue.id, seed.version, 1).await;
    let err = f
        .ledger
        .commit_rejected(&issue.id, "x", loop_entry("demo", "r"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected log failure"), "{err}");
    assert_nothing_written(&f, &issue.id, seed.version, 1).await;
    inject("DROP TRIGGER fail_log;").await;

    // The issue update (the last step) fails.
    inject(
        "CREATE TRIGGER fail_issue BEFORE UPDATE ON issues \
         BEGIN SELECT RAISE(ABORT, 'injected issue failure'); END;",
    )
    .await;
    let err = f
        .ledger
        .commit_applied(
            &issue.id,
            bp("demo", "v2", "1.1.0"),
            seed.version,
            None,
            None,
            loop_entry("demo", "r"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected issue failure"), "{err}");
    assert_nothing_written(&f, &issue.id, seed.version, 1).await;
    let err = f
        .ledger
        .commit_rejected(&issue.id, "x", loop_entry("demo", "r"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected issue failure"), "{err}");
    assert_nothing_written(&f, &issue.id, seed.version, 1).await;
    inject("DROP TRIGGER fail_issue;").await;

    // With the faults gone the same commit goes through.
    let meta = f
        .ledger
        .commit_applied(
            &issue.id,
            bp("demo", "v2", "1.1.0"),
            seed.version,
            None,
            None,
            loop_entry("demo", "r"),
        )
        .await
        .unwrap();
    assert_eq!(f.blueprints.read_head("demo").await.unwrap().meta, meta);
    drop(dir);
}
