//! Backend-neutral `BlueprintStore` suite.
//!
//! Every behaviour is an `async fn(store: Arc<dyn BlueprintStore>)` taking a fresh,
//! empty store. [`blueprint_store_suite!`] turns the whole suite into `#[tokio::test]`s
//! for one backend given an `async fn() -> Arc<dyn BlueprintStore>` constructor; it runs
//! on the memory and the SQLite backends (invocations at the bottom of this file, with
//! the SQLite-only tests).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use mse_blueprint::{Blueprint, BlueprintVersion};
use mse_store::memory::MemoryBlueprintStore;
use mse_store::sqlite::{map_error, Database, SqliteBlueprintStore, SqliteOutputStore};
use mse_store::{
    BlueprintStore, HistoryEntry, OutputStore, StoreError, StoredBlueprint, VersionMeta,
    VersionSelector,
};
use serde_json::json;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A minimal Blueprint whose content differs by `desc`, optionally labelled.
fn bp(id: &str, desc: &str, label: Option<&str>) -> Arc<Blueprint> {
    let mut metadata = json!({ "description": desc });
    if let Some(label) = label {
        metadata["version_label"] = json!(label);
    }
    let value = json!({
        "id": id,
        "flow": { "kind": "seq", "children": [] },
        "metadata": metadata,
    });
    Arc::new(Blueprint::from_value(value).expect("test blueprint parses"))
}

fn ver(bp: &Blueprint) -> BlueprintVersion {
    BlueprintVersion::of(bp)
}

/// Plain write without an expected-head check.
async fn put(store: &dyn BlueprintStore, bp: &Arc<Blueprint>) -> (VersionMeta, bool) {
    store
        .write_new(Arc::clone(bp), None, "test", None, None)
        .await
        .expect("write_new")
}

fn versions(history: &[VersionMeta]) -> Vec<BlueprintVersion> {
    history.iter().map(|m| m.version).collect()
}

fn fixed(v: impl Into<String>) -> VersionSelector {
    VersionSelector::Fixed { value: v.into() }
}

fn semver(req: &str) -> VersionSelector {
    VersionSelector::SemverReq { req: req.into() }
}

// ---------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------

pub async fn first_write_then_read_head(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", Some("1.0.0"));
    let (meta, written) = store
        .write_new(
            Arc::clone(&a),
            None,
            "seed",
            Some("epoch-1".into()),
            Some("ab".repeat(32)),
        )
        .await
        .unwrap();
    assert!(written);
    assert_eq!(meta.version, ver(&a));
    assert!(meta.parents.is_empty(), "first version has no parent");
    assert_eq!(meta.rationale, "seed");
    assert_eq!(meta.epoch_id.as_deref(), Some("epoch-1"));
    assert_eq!(meta.patch_hash, Some("ab".repeat(32)));
    assert_eq!(meta.version_label.as_deref(), Some("1.0.0"));
    assert!(
        meta.created_at_ms > 1_600_000_000_000,
        "created_at_ms is now"
    );

    let head = store.read_head("demo").await.unwrap();
    assert_eq!(head.id, "demo");
    assert_eq!(head.meta, meta);
    assert_eq!(*head.blueprint, *a);

    // Unlabelled content has no label.
    let (meta, _) = put(&*store, &bp("demo", "b", None)).await;
    assert_eq!(meta.version_label, None);
    assert_eq!(meta.epoch_id, None);
    assert_eq!(meta.patch_hash, None);
}

pub async fn read_head_errors(store: Arc<dyn BlueprintStore>) {
    assert_eq!(
        store.read_head("nope").await.unwrap_err(),
        StoreError::NotFound("nope".into())
    );
    put(&*store, &bp("x", "a", None)).await;
    store.archive("x").await.unwrap();
    assert_eq!(
        store.read_head("x").await.unwrap_err(),
        StoreError::Archived("x".into())
    );
}

pub async fn rewrite_of_head_is_noop(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", Some("1.0.0"));
    let (first, _) = put(&*store, &a).await;

    // Same content, different rationale/epoch: nothing is written.
    let (meta, written) = store
        .write_new(Arc::clone(&a), None, "again", Some("e2".into()), None)
        .await
        .unwrap();
    assert!(!written);
    assert_eq!(meta, first, "the existing head's meta is returned");

    // Equal content written differently (key order, explicit defaults) too.
    let same = Blueprint::from_value(json!({
        "metadata": { "version_label": "1.0.0", "tags": [], "description": "a" },
        "strategy": { "strict_kind": true, "strict_refs": true },
        "flow": { "children": [], "kind": "seq" },
        "id": "demo",
    }))
    .unwrap();
    let (meta, written) = store
        .write_new(Arc::new(same), None, "again", None, None)
        .await
        .unwrap();
    assert!(!written);
    assert_eq!(meta, first);

    // Also with a matching expected head.
    let (meta, written) = store
        .write_new(
            Arc::clone(&a),
            Some(Some(first.version)),
            "again",
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!written);
    assert_eq!(meta, first);

    let history = store.history("demo", 10).await.unwrap();
    assert_eq!(history, vec![first]);
}

pub async fn lineage_and_history(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", None);
    let b = bp("demo", "b", None);
    let c = bp("demo", "c", None);
    let (ma, _) = put(&*store, &a).await;
    let (mb, _) = put(&*store, &b).await;
    let (mc, _) = put(&*store, &c).await;
    assert_eq!(ma.parents, vec![]);
    assert_eq!(mb.parents, vec![ver(&a)]);
    assert_eq!(mc.parents, vec![ver(&b)]);
    assert!(ma.created_at_ms <= mb.created_at_ms && mb.created_at_ms <= mc.created_at_ms);

    let history = store.history("demo", 10).await.unwrap();
    assert_eq!(history, vec![mc.clone(), mb.clone(), ma.clone()]);
    assert_eq!(
        store.history("demo", 2).await.unwrap(),
        vec![mc.clone(), mb]
    );
    assert_eq!(store.history("demo", 1).await.unwrap(), vec![mc]);
    assert_eq!(store.history("demo", 0).await.unwrap(), vec![]);
    assert_eq!(store.history("unknown", 10).await.unwrap(), vec![]);

    let head = store.read_head("demo").await.unwrap();
    assert_eq!(head.meta.version, ver(&c));
    assert_eq!(*head.blueprint, *c);
}

pub async fn rewrite_of_older_version_appends(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", None);
    let b = bp("demo", "b", None);
    put(&*store, &a).await;
    put(&*store, &b).await;
    let (again, written) = put(&*store, &a).await;
    assert!(written, "A -> B -> A writes a new entry");
    assert_eq!(again.version, ver(&a));
    assert_eq!(again.parents, vec![ver(&b)]);

    let history = store.history("demo", 10).await.unwrap();
    assert_eq!(versions(&history), vec![ver(&a), ver(&b), ver(&a)]);
    assert_eq!(history[0], again);

    let head = store.read_head("demo").await.unwrap();
    assert_eq!(head.meta.version, ver(&a));
    let old = store.read_version("demo", &ver(&a)).await.unwrap();
    assert_eq!(old.meta.version, ver(&a));
    assert_eq!(*old.blueprint, *a);
}

pub async fn read_version_semantics(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", Some("0.1.0"));
    let b = bp("demo", "b", None);
    let (ma, _) = put(&*store, &a).await;
    put(&*store, &b).await;

    let got = store.read_version("demo", &ver(&a)).await.unwrap();
    assert_eq!(got.id, "demo");
    assert_eq!(got.meta, ma);
    assert_eq!(*got.blueprint, *a);

    let missing = ver(&bp("demo", "never written", None));
    assert_eq!(
        store.read_version("demo", &missing).await.unwrap_err(),
        StoreError::VersionNotFound {
            id: "demo".into(),
            version: missing.to_hex(),
        }
    );
    assert_eq!(
        store.read_version("nope", &ver(&a)).await.unwrap_err(),
        StoreError::NotFound("nope".into())
    );
    // A version of another id is not a version of this one.
    put(&*store, &bp("other", "o", None)).await;
    let other = ver(&bp("other", "o", None));
    assert!(matches!(
        store.read_version("demo", &other).await.unwrap_err(),
        StoreError::VersionNotFound { .. }
    ));

    // Archived ids stay readable by version.
    store.archive("demo").await.unwrap();
    let got = store.read_version("demo", &ver(&a)).await.unwrap();
    assert_eq!(got.meta, ma);
}

pub async fn archive_semantics(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", None);
    let (ma, _) = put(&*store, &a).await;

    assert_eq!(
        store.archive("nope").await.unwrap_err(),
        StoreError::NotFound("nope".into())
    );
    assert_eq!(
        store.unarchive("nope").await.unwrap_err(),
        StoreError::NotFound("nope".into())
    );

    // Unarchive of a live id is a no-op.
    store.unarchive("demo").await.unwrap();
    assert_eq!(store.read_head("demo").await.unwrap().meta, ma);

    store.archive("demo").await.unwrap();
    store.archive("demo").await.unwrap(); // idempotent
    assert_eq!(
        store.read_head("demo").await.unwrap_err(),
        StoreError::Archived("demo".into())
    );
    // Writes are refused, with or without an expected head, even of the head's content.
    let b = bp("demo", "b", None);
    for (content, expected) in [
        (&b, None),
        (&b, Some(Some(ma.version))),
        (&a, None),
        (&b, Some(None)),
    ] {
        assert_eq!(
            store
                .write_new(Arc::clone(content), expected, "x", None, None)
                .await
                .unwrap_err(),
            StoreError::Archived("demo".into())
        );
    }
    // History, versions and list still answer.
    assert_eq!(store.history("demo", 10).await.unwrap(), vec![ma.clone()]);
    store.read_version("demo", &ma.version).await.unwrap();
    assert_eq!(
        store.list().await.unwrap(),
        vec![("demo".to_string(), ma.clone(), true)]
    );

    store.unarchive("demo").await.unwrap();
    store.unarchive("demo").await.unwrap(); // idempotent
    assert_eq!(store.read_head("demo").await.unwrap().meta, ma);
    let (mb, written) = put(&*store, &b).await;
    assert!(written);
    assert_eq!(
        mb.parents,
        vec![ma.version],
        "history continues after unarchive"
    );
    assert_eq!(
        store.list().await.unwrap(),
        vec![("demo".to_string(), mb, false)]
    );
}

pub async fn expected_head_checks(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", None);
    let b = bp("demo", "b", None);
    let c = bp("demo", "c", None);

    // "No head yet" expected and true.
    let (ma, written) = store
        .write_new(Arc::clone(&a), Some(None), "seed", None, None)
        .await
        .unwrap();
    assert!(written);

    // "No head yet" expected but there is one.
    let err = store
        .write_new(Arc::clone(&b), Some(None), "x", None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::HeadMoved { id, expected, actual }
            if id == "demo" && *actual == ma.version.to_hex() && expected != actual),
        "{err:?}"
    );

    // A stale expected head.
    let stale = ver(&c);
    let err = store
        .write_new(Arc::clone(&b), Some(Some(stale)), "x", None, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::HeadMoved {
            id: "demo".into(),
            expected: stale.to_hex(),
            actual: ma.version.to_hex(),
        }
    );
    // Checked before the no-op comparison: stale + head's content still conflicts.
    assert!(matches!(
        store
            .write_new(Arc::clone(&a), Some(Some(stale)), "x", None, None)
            .await
            .unwrap_err(),
        StoreError::HeadMoved { .. }
    ));
    // Nothing was written by the failures.
    assert_eq!(store.history("demo", 10).await.unwrap(), vec![ma.clone()]);

    // The right expected head.
    let (mb, written) = store
        .write_new(Arc::clone(&b), Some(Some(ma.version)), "x", None, None)
        .await
        .unwrap();
    assert!(written);
    assert_eq!(mb.parents, vec![ma.version]);

    // An expected head on an id that has none.
    let err = store
        .write_new(
            bp("fresh", "f", None),
            Some(Some(ma.version)),
            "x",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::HeadMoved { id, expected, .. }
            if id == "fresh" && *expected == ma.version.to_hex()),
        "{err:?}"
    );
    assert_eq!(
        store.read_head("fresh").await.unwrap_err(),
        StoreError::NotFound("fresh".into())
    );
}

pub async fn id_validation(store: Arc<dyn BlueprintStore>) {
    let long = "x".repeat(129);
    let bad = [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        long.as_str(),
        "é",
        "a b",
        "a\0b",
    ];
    let some_version = ver(&bp("ok", "a", None));
    for id in bad {
        let invalid = StoreError::InvalidId(id.to_string());
        assert_eq!(store.read_head(id).await.unwrap_err(), invalid, "{id:?}");
        assert_eq!(
            store.read_version(id, &some_version).await.unwrap_err(),
            invalid
        );
        assert_eq!(store.history(id, 10).await.unwrap_err(), invalid);
        assert_eq!(store.archive(id).await.unwrap_err(), invalid);
        assert_eq!(store.unarchive(id).await.unwrap_err(), invalid);
        assert_eq!(
            store
                .write_new(bp(id, "a", None), None, "x", None, None)
                .await
                .unwrap_err(),
            invalid
        );
        for selector in [VersionSelector::Latest, fixed("zz"), semver("bad req")] {
            assert_eq!(
                store.resolve(id, &selector).await.unwrap_err(),
                invalid,
                "{id:?} {selector:?}"
            );
        }
    }
    assert!(
        store.list().await.unwrap().is_empty(),
        "nothing was written"
    );

    for id in ["a.b-c_1", &"x".repeat(128), "A", "..."] {
        let (meta, written) = put(&*store, &bp(id, "a", None)).await;
        assert!(written);
        assert_eq!(store.read_head(id).await.unwrap().meta, meta);
    }
}

pub async fn list_sorted(store: Arc<dyn BlueprintStore>) {
    assert!(store.list().await.unwrap().is_empty());
    let (mb, _) = put(&*store, &bp("b", "1", None)).await;
    put(&*store, &bp("c", "1", None)).await;
    let (mc, _) = put(&*store, &bp("c", "2", None)).await;
    let (ma, _) = put(&*store, &bp("a", "1", None)).await;
    let (m_upper, _) = put(&*store, &bp("B", "1", None)).await;
    store.archive("b").await.unwrap();

    let list = store.list().await.unwrap();
    assert_eq!(
        list,
        vec![
            ("B".to_string(), m_upper, false),
            ("a".to_string(), ma, false),
            ("b".to_string(), mb, true),
            ("c".to_string(), mc, false),
        ]
    );
}

pub async fn resolve_latest(store: Arc<dyn BlueprintStore>) {
    assert_eq!(
        store
            .resolve("demo", &VersionSelector::Latest)
            .await
            .unwrap_err(),
        StoreError::NotFound("demo".into())
    );
    put(&*store, &bp("demo", "a", None)).await;
    let b = bp("demo", "b", None);
    put(&*store, &b).await;
    let got = store
        .resolve("demo", &VersionSelector::default())
        .await
        .unwrap();
    assert_eq!(got.meta.version, ver(&b));
    assert_eq!(*got.blueprint, *b);

    store.archive("demo").await.unwrap();
    assert_eq!(
        store
            .resolve("demo", &VersionSelector::Latest)
            .await
            .unwrap_err(),
        StoreError::Archived("demo".into())
    );
}

pub async fn resolve_fixed(store: Arc<dyn BlueprintStore>) {
    let a = bp("demo", "a", None);
    let b = bp("demo", "b", None);
    let hex = ver(&a).to_hex();
    assert_eq!(
        store
            .resolve("demo", &fixed(hex.clone()))
            .await
            .unwrap_err(),
        StoreError::NotFound("demo".into())
    );
    put(&*store, &a).await;
    put(&*store, &b).await;

    // An older version, in lower or upper case.
    for value in [hex.clone(), hex.to_uppercase()] {
        let got = store.resolve("demo", &fixed(value)).await.unwrap();
        assert_eq!(got.meta.version, ver(&a));
        assert_eq!(*got.blueprint, *a);
    }

    // Malformed hex.
    for value in [
        "".to_string(),
        "zz".to_string(),
        hex[..63].to_string(),
        format!("{hex}0"),
        format!("0x{}", &hex[2..]),
        format!(" {}", &hex[1..]),
        "g".repeat(64),
    ] {
        assert_eq!(
            store
                .resolve("demo", &fixed(value.clone()))
                .await
                .unwrap_err(),
            StoreError::BadVersion(value)
        );
    }

    // Well-formed but never written.
    let missing = ver(&bp("demo", "c", None));
    assert_eq!(
        store
            .resolve("demo", &fixed(missing.to_hex()))
            .await
            .unwrap_err(),
        StoreError::VersionNotFound {
            id: "demo".into(),
            version: missing.to_hex(),
        }
    );

    // The default resolve refuses archived ids for every selector.
    store.archive("demo").await.unwrap();
    assert_eq!(
        store.resolve("demo", &fixed(hex)).await.unwrap_err(),
        StoreError::Archived("demo".into())
    );
}

pub async fn resolve_semver(store: Arc<dyn BlueprintStore>) {
    assert_eq!(
        store.resolve("demo", &semver("^1")).await.unwrap_err(),
        StoreError::NotFound("demo".into())
    );

    let labelled = [
        ("v100", Some("1.0.0")),
        ("unlabelled", None),
        ("v120", Some("1.2.0")),
        ("junk", Some("not-semver")),
        ("loose", Some("v1.9.0")),
        ("v1100", Some("1.10.0")),
        ("pre", Some("2.0.0-rc.1")),
        ("v030", Some("0.3.0")),
        ("head-unlabelled", None),
    ];
    for (desc, label) in labelled {
        put(&*store, &bp("demo", desc, label)).await;
    }
    let pick = |desc: &str| {
        let label = labelled.iter().find(|(d, _)| *d == desc).unwrap().1;
        ver(&bp("demo", desc, label))
    };

    let cases = [
        ("^1", "v1100"),
        ("1", "v1100"),
        ("1.2", "v1100"), // bare 1.2 means ^1.2
        ("=1.2.0", "v120"),
        ("~1.2", "v120"),
        ("<1.2.0, >=1.0.0", "v100"),
        (">=1.0.0", "v1100"), // pre-releases need a comparator naming them
        (">=2.0.0-rc.0", "pre"),
        ("*", "v1100"),
        ("^0.3", "v030"),
    ];
    for (req, want) in cases {
        let got = store.resolve("demo", &semver(req)).await.unwrap();
        assert_eq!(got.meta.version, pick(want), "req {req}");
        assert_eq!(got.blueprint.metadata.description.as_deref(), Some(want));
    }

    for req in [">=3", "=1.9.0", "^0.4"] {
        assert_eq!(
            store.resolve("demo", &semver(req)).await.unwrap_err(),
            StoreError::NoSemverMatch {
                id: "demo".into(),
                req: req.into(),
            },
            "req {req}"
        );
    }

    for req in ["not a req", "", ">>1", "1.2.3.4"] {
        assert!(
            matches!(
                store.resolve("demo", &semver(req)).await.unwrap_err(),
                StoreError::BadSemver { req: r, .. } if r == req
            ),
            "req {req:?}"
        );
    }

    // Only unlabelled/invalid labels: no match rather than an error.
    put(&*store, &bp("bare", "a", None)).await;
    put(&*store, &bp("bare", "b", Some("latest"))).await;
    assert_eq!(
        store.resolve("bare", &semver("*")).await.unwrap_err(),
        StoreError::NoSemverMatch {
            id: "bare".into(),
            req: "*".into(),
        }
    );

    store.archive("demo").await.unwrap();
    assert_eq!(
        store.resolve("demo", &semver("^1")).await.unwrap_err(),
        StoreError::Archived("demo".into())
    );
}

/// 50 concurrent unconditional writers of different content: every write lands,
/// and the history is one linear chain.
pub async fn concurrent_writes_form_linear_history(store: Arc<dyn BlueprintStore>) {
    const N: usize = 50;
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let content = bp("hot", &format!("writer {i}"), None);
            let (meta, written) = store
                .write_new(Arc::clone(&content), None, "w", None, None)
                .await
                .unwrap();
            assert!(written);
            assert_eq!(meta.version, ver(&content));
            meta
        }));
    }
    let mut written = HashSet::new();
    for task in tasks {
        written.insert(task.await.unwrap().version);
    }
    assert_eq!(written.len(), N);

    let history = store.history("hot", 1000).await.unwrap();
    assert_eq!(history.len(), N, "no write lost");
    assert_eq!(
        versions(&history).into_iter().collect::<HashSet<_>>(),
        written
    );
    for pair in history.windows(2) {
        assert_eq!(pair[0].parents, vec![pair[1].version], "linear chain");
        assert!(pair[0].created_at_ms >= pair[1].created_at_ms);
    }
    assert!(history[N - 1].parents.is_empty());
    assert_eq!(
        store.read_head("hot").await.unwrap().meta.version,
        history[0].version
    );
}

/// 50 concurrent writers starting from the same head: exactly one wins.
pub async fn concurrent_expected_head_single_winner(store: Arc<dyn BlueprintStore>) {
    const N: usize = 50;
    let (base, _) = put(&*store, &bp("hot", "base", None)).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = Arc::clone(&store);
        let expected = base.version;
        tasks.push(tokio::spawn(async move {
            store
                .write_new(
                    bp("hot", &format!("writer {i}"), None),
                    Some(Some(expected)),
                    "w",
                    None,
                    None,
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok((meta, true)) => winners.push(meta),
            Ok((_, false)) => panic!("distinct content cannot be a no-op"),
            Err(StoreError::HeadMoved {
                id,
                expected,
                actual,
            }) => {
                assert_eq!(id, "hot");
                assert_eq!(expected, base.version.to_hex());
                assert_ne!(actual, expected);
                conflicts += 1;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    assert_eq!(conflicts, N - 1);
    let winner = &winners[0];
    assert_eq!(winner.parents, vec![base.version]);
    assert_eq!(
        store.history("hot", 1000).await.unwrap(),
        vec![winner.clone(), base]
    );
}

// ---------------------------------------------------------------------------
// Instantiation per backend
// ---------------------------------------------------------------------------

/// `blueprint_store_suite!(module_name, async_constructor)` generates one
/// `#[tokio::test]` per suite function, each on a fresh store.
pub async fn semver_tie_picks_newest(store: Arc<dyn BlueprintStore>) {
    let old = bp("tie", "old", Some("1.0.0"));
    let new = bp("tie", "new", Some("1.0.0"));
    put(store.as_ref(), &old).await;
    put(store.as_ref(), &new).await;
    let got = store.resolve("tie", &semver("^1")).await.unwrap();
    assert_eq!(got.meta.version, ver(&new));
}

macro_rules! blueprint_store_suite {
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
            case!(first_write_then_read_head);
            case!(read_head_errors);
            case!(rewrite_of_head_is_noop);
            case!(lineage_and_history);
            case!(rewrite_of_older_version_appends);
            case!(read_version_semantics);
            case!(archive_semantics);
            case!(expected_head_checks);
            case!(id_validation);
            case!(list_sorted);
            case!(resolve_latest);
            case!(resolve_fixed);
            case!(resolve_semver);
            case!(semver_tie_picks_newest);
            case!(concurrent_writes_form_linear_history);
            case!(concurrent_expected_head_single_winner);
        }
    };
}

async fn memory_store() -> Arc<dyn BlueprintStore> {
    Arc::new(MemoryBlueprintStore::new())
}

blueprint_store_suite!(memory, crate::memory_store);

#[tokio::test]
async fn memory_store_default_is_empty() {
    let store = MemoryBlueprintStore::default();
    assert!(store.list().await.unwrap().is_empty());
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
impl<S: BlueprintStore> BlueprintStore for InTempDir<S> {
    async fn read_head(&self, id: &str) -> Result<StoredBlueprint, StoreError> {
        self.store.read_head(id).await
    }
    async fn read_version(
        &self,
        id: &str,
        version: &BlueprintVersion,
    ) -> Result<StoredBlueprint, StoreError> {
        self.store.read_version(id, version).await
    }
    async fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.store.history(id, limit).await
    }
    async fn write_new(
        &self,
        bp: Arc<Blueprint>,
        expected_head: Option<Option<BlueprintVersion>>,
        rationale: &str,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
    ) -> Result<(VersionMeta, bool), StoreError> {
        self.store
            .write_new(bp, expected_head, rationale, epoch_id, patch_hash)
            .await
    }
    async fn archive(&self, id: &str) -> Result<(), StoreError> {
        self.store.archive(id).await
    }
    async fn unarchive(&self, id: &str) -> Result<(), StoreError> {
        self.store.unarchive(id).await
    }
    async fn list(&self) -> Result<Vec<(String, VersionMeta, bool)>, StoreError> {
        self.store.list().await
    }
}

/// A fresh database file (not `in_memory`: WAL and file locking are exercised).
async fn sqlite_store() -> Arc<dyn BlueprintStore> {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    Arc::new(InTempDir {
        store: SqliteBlueprintStore::new(db),
        _dir: dir,
    })
}

blueprint_store_suite!(sqlite, crate::sqlite_store);

fn open_store(path: &Path) -> Arc<SqliteBlueprintStore> {
    Arc::new(SqliteBlueprintStore::new(Database::open(path).unwrap()))
}

fn unavailable_message(err: StoreError) -> String {
    match err {
        StoreError::Unavailable(m) => m,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");

    let (written, list) = {
        let store = open_store(&path);
        let mut written = Vec::new();
        for (desc, label) in [("a", Some("1.0.0")), ("b", None), ("a", Some("1.0.0"))] {
            let (meta, ok) = store
                .write_new(
                    bp("demo", desc, label),
                    None,
                    &format!("write {desc}"),
                    Some(format!("epoch-{desc}")),
                    Some("cd".repeat(32)),
                )
                .await
                .unwrap();
            assert!(ok);
            written.push(meta);
        }
        put(&*store, &bp("gone", "x", None)).await;
        put(&*store, &bp("gone", "y", None)).await;
        store.archive("gone").await.unwrap();
        (written, store.list().await.unwrap())
    };

    let store = open_store(&path);
    assert_eq!(store.list().await.unwrap(), list);
    let mut newest_first = written.clone();
    newest_first.reverse();
    assert_eq!(store.history("demo", 10).await.unwrap(), newest_first);
    assert_eq!(written[1].parents, vec![written[0].version]);
    assert_eq!(written[2].parents, vec![written[1].version]);
    let head = store.read_head("demo").await.unwrap();
    assert_eq!(head.meta, written[2]);
    assert_eq!(*head.blueprint, *bp("demo", "a", Some("1.0.0")));
    let b = store
        .read_version("demo", &written[1].version)
        .await
        .unwrap();
    assert_eq!(b.meta, written[1]);
    assert_eq!(*b.blueprint, *bp("demo", "b", None));
    // The newest entry of content written twice.
    assert_eq!(
        store
            .read_version("demo", &written[0].version)
            .await
            .unwrap()
            .meta,
        written[2]
    );
    assert_eq!(
        store.read_head("gone").await.unwrap_err(),
        StoreError::Archived("gone".into())
    );
    assert_eq!(store.history("gone", 10).await.unwrap().len(), 2);

    // History continues from the persisted head.
    let (next, ok) = put(&*store, &bp("demo", "c", None)).await;
    assert!(ok);
    assert_eq!(next.parents, vec![written[2].version]);
    assert!(next.created_at_ms >= written[2].created_at_ms);
    store.unarchive("gone").await.unwrap();
    assert_eq!(
        store.read_head("gone").await.unwrap().meta.version,
        ver(&bp("gone", "y", None))
    );
}

/// Two `Database` handles (two connections, as two processes would have) on one
/// file: exactly one of the writers starting from the same head wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_handles_single_winner() {
    const N: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let stores = [open_store(&path), open_store(&path)];
    let (base, _) = put(&*stores[0], &bp("hot", "base", None)).await;

    let mut tasks = Vec::new();
    for i in 0..N {
        let store = Arc::clone(&stores[i % 2]);
        let expected = base.version;
        tasks.push(tokio::spawn(async move {
            store
                .write_new(
                    bp("hot", &format!("writer {i}"), None),
                    Some(Some(expected)),
                    "w",
                    None,
                    None,
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok((meta, true)) => winners.push(meta),
            Ok((_, false)) => panic!("distinct content cannot be a no-op"),
            Err(StoreError::HeadMoved { expected, .. }) => {
                assert_eq!(expected, base.version.to_hex())
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let want = vec![winners[0].clone(), base];
    for store in &stores {
        assert_eq!(store.history("hot", 100).await.unwrap(), want);
        assert_eq!(store.read_head("hot").await.unwrap().meta, want[0]);
    }
}

/// Unconditional writers on two handles: every write lands on one linear chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_handles_linear_history() {
    const N: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    let stores = [open_store(&path), open_store(&path)];
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = Arc::clone(&stores[i % 2]);
        tasks.push(tokio::spawn(async move {
            let (meta, ok) = put(&*store, &bp("hot", &format!("writer {i}"), None)).await;
            assert!(ok);
            meta.version
        }));
    }
    let mut written = HashSet::new();
    for task in tasks {
        written.insert(task.await.unwrap());
    }
    let history = stores[1].history("hot", 1000).await.unwrap();
    assert_eq!(history.len(), N);
    assert_eq!(
        versions(&history).into_iter().collect::<HashSet<_>>(),
        written
    );
    for pair in history.windows(2) {
        assert_eq!(pair[0].parents, vec![pair[1].version]);
    }
    assert!(history[N - 1].parents.is_empty());
}

/// Restores a directory's permissions when dropped (so the temp dir can be removed).
struct RestoreMode<'a>(&'a Path);

impl Drop for RestoreMode<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
    }
}

fn output(producer: &str) -> mse_store::OutputRecord {
    mse_store::OutputRecord {
        id: String::new(),
        task_id: "T-1".into(),
        attempt: 1,
        producer_agent: producer.into(),
        event: mse_engine::OutputEvent::final_inline(json!(1), true),
        parent_refs: vec![],
    }
}

/// A database file the process may not write: opening fails, or reads work and
/// writes fail, always with `Unavailable` saying read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_only_file_refuses_writes() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));

    let dir = tempfile::tempdir().unwrap();
    let _restore = RestoreMode(dir.path());
    let path = dir.path().join("mse.db");
    let (ma, _) = put(&*open_store(&path), &bp("demo", "a", None)).await;
    SqliteOutputStore::new(Database::open(&path).unwrap(), 10)
        .append(output("p"))
        .await
        .unwrap();

    mode(&path, 0o444).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        eprintln!(
            "note: sqlite_read_only_file_refuses_writes skipped: file permissions are not \
             enforced for this user (running as root?)"
        );
        return;
    }

    // File and directory read-only, closed cleanly (no -wal/-shm): WAL cannot be
    // set up, so the open itself fails.
    mode(dir.path(), 0o555).unwrap();
    let msg = unavailable_message(Database::open(&path).unwrap_err());
    assert!(msg.contains("read-only"), "{msg}");

    // File read-only in a writable directory, then in a read-only one with the
    // -wal/-shm files present: reads work, every write fails.
    for dir_mode in [0o755, 0o555] {
        mode(dir.path(), dir_mode).unwrap();
        let db = Database::open(&path).unwrap();
        let store = SqliteBlueprintStore::new(db.clone());
        assert_eq!(store.read_head("demo").await.unwrap().meta, ma);
        assert_eq!(store.history("demo", 10).await.unwrap(), vec![ma.clone()]);
        let err = store
            .write_new(bp("demo", "b", None), None, "x", None, None)
            .await
            .unwrap_err();
        let msg = unavailable_message(err);
        assert!(msg.contains("read-only"), "{msg}");
        let msg = unavailable_message(store.archive("demo").await.unwrap_err());
        assert!(msg.contains("read-only"), "{msg}");

        let outputs = SqliteOutputStore::new(db, 10);
        assert!(outputs.get("p").await.unwrap().is_some());
        let msg = unavailable_message(outputs.append(output("p")).await.unwrap_err());
        assert!(msg.contains("read-only"), "{msg}");
        assert_eq!(outputs.count().await.unwrap(), 1);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "mse.db, -wal and -shm"
    );
}

/// The same error path without file permissions (works as root too): a connection
/// in `query_only` mode is refused writes as read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_query_only_connection_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    let store = SqliteBlueprintStore::new(db.clone());
    let (ma, _) = put(&store, &bp("demo", "a", None)).await;
    db.call(|c| c.execute_batch("PRAGMA query_only = ON").map_err(map_error))
        .await
        .unwrap();
    let err = store
        .write_new(bp("demo", "b", None), None, "x", None, None)
        .await
        .unwrap_err();
    let msg = unavailable_message(err);
    assert!(msg.contains("read-only"), "{msg}");
    assert_eq!(store.read_head("demo").await.unwrap().meta, ma);
}

/// A damaged file is reported as corrupt (at open or on first use), never as a
/// missing blueprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.db");
    {
        let store = open_store(&path);
        for i in 0..50 {
            put(
                &*store,
                &bp("demo", &format!("{i} {}", "x".repeat(2000)), None),
            )
            .await;
        }
    }
    // Keep only the first page (header and schema): the tables' pages are gone.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(4096).unwrap();
    drop(file);

    let msg = match Database::open(&path) {
        Err(e) => unavailable_message(e),
        Ok(db) => unavailable_message(
            SqliteBlueprintStore::new(db)
                .read_head("demo")
                .await
                .unwrap_err(),
        ),
    };
    assert!(msg.contains("corrupt"), "{msg}");
}

/// A stored document that no longer parses is an `Unavailable` error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_garbage_row_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("mse.db")).unwrap();
    let store = SqliteBlueprintStore::new(db.clone());
    let (ma, _) = put(&store, &bp("demo", "a", None)).await;
    db.call(|c| {
        c.execute("UPDATE blueprint_versions SET body = '{\"id\": 1}'", [])
            .map_err(map_error)
    })
    .await
    .unwrap();
    let msg = unavailable_message(store.read_head("demo").await.unwrap_err());
    assert!(msg.contains("corrupt stored blueprint"), "{msg}");
    // Metadata does not need the document.
    assert_eq!(store.history("demo", 10).await.unwrap(), vec![ma]);
}
