//! The enhance consumer end to end: issue queue → bundled orchestrator through the
//! launcher → ledger. An in-process `OperatorBackend` registered as role
//! `patch-spawner` stands in for the operator. Every scenario runs on the memory
//! and the SQLite (tempdir file) stores.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mse_blueprint::{Blueprint, LaunchConfig, Launcher, SpawnerFactories};
use mse_engine::{Engine, EngineConfig, OperatorBackend, SpawnCtx};
use mse_enhance::{
    ConsumerConfig, EnhanceConsumer, EnhanceStores, Outcome, SeedOutcome, DEFAULT_BLUEPRINT_ID,
};
use mse_store::memory::{
    MemoryBlueprintStore, MemoryEnhanceLogStore, MemoryEnhanceSettingStore, MemoryIssueStore,
    MemoryLedger,
};
use mse_store::sqlite::{
    Database, SqliteBlueprintStore, SqliteEnhanceLogStore, SqliteEnhanceSettingStore,
    SqliteIssueStore, SqliteLedger,
};
use mse_store::{
    BlueprintStore, EnhanceLogEntry, EnhanceSetting, EnhanceSettingStore, IssueRecord, IssueStatus,
    StoreError, VersionMeta,
};
use mse_workers::lua::LuaFactory;
use mse_workers::rust_fn::RustFnRegistry;
use mse_workers::subprocess::{SubprocessConfig, SubprocessFactory};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Sqlite,
}

struct Fx {
    stores: EnhanceStores,
    db_path: Option<PathBuf>,
    engine: Engine,
    launcher: Launcher,
    _dir: Option<TempDir>,
}

fn memory_stores() -> EnhanceStores {
    let blueprints = Arc::new(MemoryBlueprintStore::new());
    let issues = Arc::new(MemoryIssueStore::new());
    let log = Arc::new(MemoryEnhanceLogStore::new());
    let ledger = Arc::new(MemoryLedger::new(
        Arc::clone(&blueprints),
        Arc::clone(&issues),
        Arc::clone(&log),
    ));
    EnhanceStores {
        blueprints,
        issues,
        settings: Arc::new(MemoryEnhanceSettingStore::new()),
        log,
        ledger,
    }
}

fn sqlite_stores(path: &std::path::Path) -> EnhanceStores {
    let db = Database::open(path).unwrap();
    EnhanceStores {
        blueprints: Arc::new(SqliteBlueprintStore::new(db.clone())),
        issues: Arc::new(SqliteIssueStore::new(db.clone())),
        settings: Arc::new(SqliteEnhanceSettingStore::new(db.clone())),
        log: Arc::new(SqliteEnhanceLogStore::new(db.clone())),
        ledger: Arc::new(SqliteLedger::new(db)),
    }
}

fn test_cfg() -> ConsumerConfig {
    ConsumerConfig {
        interval: Duration::from_millis(10),
        ..ConsumerConfig::default()
    }
}

impl Fx {
    /// Fresh stores and engine, no operator registered.
    fn new(b: Backend) -> Fx {
        let (stores, db_path, dir) = match b {
            Backend::Memory => (memory_stores(), None, None),
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("mse.db");
                (sqlite_stores(&path), Some(path), Some(dir))
            }
        };
        let engine = Engine::new(EngineConfig::default());
        let fns = RustFnRegistry::default();
        mse_enhance::register(&fns, None);
        let factories = SpawnerFactories::standard(
            &engine,
            fns,
            LuaFactory::default(),
            Some(SubprocessFactory::new(SubprocessConfig::default())),
        );
        let launcher = Launcher::new(engine.clone(), factories, LaunchConfig::default());
        Fx {
            stores,
            db_path,
            engine,
            launcher,
            _dir: dir,
        }
    }

    fn with_operator(self, op: impl OperatorBackend) -> Fx {
        self.engine
            .registries()
            .register_operator_backend("patch-spawner", Arc::new(op));
        self
    }

    /// The stores as a restarted process sees them (SQLite: the file reopened).
    fn reopened(&self) -> EnhanceStores {
        match &self.db_path {
            Some(path) => sqlite_stores(path),
            None => self.stores.clone(),
        }
    }

    fn consumer_on(&self, stores: EnhanceStores, cfg: ConsumerConfig) -> Arc<EnhanceConsumer> {
        Arc::new(EnhanceConsumer::new(stores, self.launcher.clone(), cfg))
    }

    /// A consumer with the test config, after its startup.
    async fn started(&self) -> Arc<EnhanceConsumer> {
        let c = self.consumer_on(self.stores.clone(), test_cfg());
        c.startup().await.unwrap();
        c
    }

    async fn edit_setting(&self, f: impl FnOnce(&mut EnhanceSetting)) {
        let mut s = self.stores.settings.get("default").await.unwrap().unwrap();
        f(&mut s);
        self.stores.settings.put(s).await.unwrap();
    }

    async fn seed_target(&self, id: &str) -> VersionMeta {
        let (meta, written) = self
            .stores
            .blueprints
            .write_new(Arc::new(target(id)), None, "seed", None, None)
            .await
            .unwrap();
        assert!(written);
        meta
    }

    async fn issue(&self, bp_id: &str, intent: &str) -> IssueRecord {
        self.stores.issues.create(bp_id, intent).await.unwrap()
    }

    async fn record(&self, id: &str) -> IssueRecord {
        self.stores.issues.get(id).await.unwrap().unwrap()
    }

    async fn log(&self) -> Vec<EnhanceLogEntry> {
        self.stores.log.list(None, None, 10_000).await.unwrap()
    }

    async fn history(&self, id: &str) -> Vec<VersionMeta> {
        self.stores.blueprints.history(id, 10_000).await.unwrap()
    }

    /// Versions of `demo` the enhance loop wrote (they carry an epoch id).
    async fn enhanced_versions(&self) -> usize {
        let history = self.history("demo").await;
        history.iter().filter(|m| m.epoch_id.is_some()).count()
    }

    /// Tick once, expecting an issue to be processed.
    async fn tick(&self, c: &EnhanceConsumer) -> Outcome {
        c.tick().await.unwrap().expect("an issue was queued")
    }

    /// Process `intent` on `demo` and check it was rejected with one log entry and
    /// no new version. Returns the reason and the log entry.
    async fn rejected(&self, c: &EnhanceConsumer, intent: &str) -> (String, EnhanceLogEntry) {
        let versions = self.enhanced_versions().await;
        let issue = self.issue("demo", intent).await;
        let out = self.tick(c).await;
        assert_eq!(out.issue_id, issue.id);
        assert_eq!(out.status, IssueStatus::Rejected, "{out:?}");
        assert_eq!(out.new_version, None);
        let reason = out.reason.clone().unwrap();
        let rec = self.record(&issue.id).await;
        assert_eq!(rec.status, IssueStatus::Rejected);
        assert_eq!(rec.reason.as_deref(), Some(reason.as_str()));
        assert_eq!(
            self.enhanced_versions().await,
            versions,
            "no version written"
        );
        let entries: Vec<_> = self
            .log()
            .await
            .into_iter()
            .filter(|e| e.issue_id == issue.id)
            .collect();
        assert_eq!(entries.len(), 1);
        let entry = entries.into_iter().next().unwrap();
        assert_eq!(entry.status, "rejected");
        assert_eq!(entry.new_hash, "");
        assert_eq!(entry.intent, intent);
        (reason, entry)
    }
}

/// The Blueprint the issues improve.
fn target(id: &str) -> Blueprint {
    Blueprint::from_value(json!({"id": id,
        "flow":{"kind":"step","ref":"echo","in":{"op":"path","at":"$.input"},"out":{"op":"path","at":"$.out"}},
        "agents":[{"name":"echo","kind":"rust_fn","spec":{"fn_id":"identity"}}],
        "metadata":{"description":"v0","version_label":"1.0.0"}}))
    .unwrap()
}

/// The patch the scripted operator proposes for an intent.
fn patch_for(intent: &str) -> Value {
    match intent {
        "broken-ref" => {
            json!({"ops":[{"op":"replace","path":"/flow/ref","value":"ghost"}],"bump":"patch","rationale":"r"})
        }
        "noop" => json!({"ops":[],"bump":"patch","rationale":"nothing"}),
        "invalid" => {
            json!({"ops":[{"op":"frobnicate","path":"/x"}],"bump":"patch","rationale":"r"})
        }
        "not-a-patch" => json!(42),
        _ => json!({"ops":[{"op":"replace","path":"/metadata/description","value":intent}],
                    "bump":"minor","rationale":format!("describe: {intent}")}),
    }
}

fn canonical_ops_hash(intent: &str) -> String {
    let ops = &patch_for(intent)["ops"];
    // Keys sorted: op, path, value.
    let text = format!(
        "[{{\"op\":{},\"path\":{},\"value\":{}}}]",
        ops[0]["op"], ops[0]["path"], ops[0]["value"]
    );
    mse_blueprint::version::content_hash(text.as_bytes())
}

/// Answers with [`patch_for`] the issue's intent and records the step inputs.
#[derive(Clone, Default)]
struct Scripted {
    seen: Arc<Mutex<Vec<Value>>>,
}

#[async_trait::async_trait]
impl OperatorBackend for Scripted {
    async fn execute(
        &self,
        _ctx: &SpawnCtx,
        _system: Option<&str>,
        prompt: &str,
    ) -> Result<(Value, bool), String> {
        let input: Value = serde_json::from_str(prompt).map_err(|e| e.to_string())?;
        let intent = input["issue"]["intent"].as_str().unwrap_or("").to_owned();
        self.seen.lock().push(input);
        Ok((patch_for(&intent), true))
    }
}

/// Never answers.
struct Silent;

#[async_trait::async_trait]
impl OperatorBackend for Silent {
    async fn execute(
        &self,
        _: &SpawnCtx,
        _: Option<&str>,
        _: &str,
    ) -> Result<(Value, bool), String> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Err("woke up".into())
    }
}

/// While "thinking", someone else writes a new head of `demo`.
struct HeadMover(Arc<dyn BlueprintStore>);

#[async_trait::async_trait]
impl OperatorBackend for HeadMover {
    async fn execute(
        &self,
        _: &SpawnCtx,
        _: Option<&str>,
        _: &str,
    ) -> Result<(Value, bool), String> {
        let head = self.0.read_head("demo").await.map_err(|e| e.to_string())?;
        let mut bp = (*head.blueprint).clone();
        bp.metadata.description = Some("edited by hand".into());
        self.0
            .write_new(Arc::new(bp), None, "manual", None, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok((patch_for("improve"), true))
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(super::Backend::Memory).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
        }
    )*};
}

on_both_backends!(
    startup_seeds_once,
    happy_path,
    denials,
    no_axes_commits,
    operator_never_answers,
    no_operator_registered,
    head_moved_is_a_conflict,
    pre_launch_failures_are_logged,
    interrupted_issue_is_requeued_and_applied_once,
    interrupted_issue_is_rejected_after_max_attempts,
    unavailable_store_requeues,
    subprocess_spawner,
    throughput,
    run_stops_promptly,
);

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn startup_seeds_once(b: Backend) {
    let fx = Fx::new(b);
    let c = fx.consumer_on(fx.stores.clone(), test_cfg());
    let bundled = mse_enhance::default_blueprint();
    let version = bundled.version().to_hex();

    let report = c.startup().await.unwrap();
    assert_eq!(
        report.seed,
        SeedOutcome::Created {
            version: version.clone()
        }
    );
    assert!(report.setting_created);
    assert!(report.requeued.is_empty() && report.rejected.is_empty());
    let setting = fx.stores.settings.get("default").await.unwrap().unwrap();
    assert_eq!(
        setting,
        EnhanceSetting::new("default", DEFAULT_BLUEPRINT_ID, 600)
    );
    let head = fx
        .stores
        .blueprints
        .read_head(DEFAULT_BLUEPRINT_ID)
        .await
        .unwrap();
    assert_eq!(head.meta.version.to_hex(), version);

    // Idempotent.
    let report = c.startup().await.unwrap();
    assert_eq!(report.seed, SeedOutcome::Unchanged);
    assert!(!report.setting_created);
    assert_eq!(fx.history(DEFAULT_BLUEPRINT_ID).await.len(), 1);

    // An older bundled seed is upgraded; an operator's edit is kept.
    let mut edited = bundled.clone();
    edited.metadata.description = Some("my own".into());
    let (meta, _) = fx
        .stores
        .blueprints
        .write_new(
            Arc::new(edited.clone()),
            None,
            "old bundled",
            Some(mse_enhance::startup::SEED_EPOCH.into()),
            None,
        )
        .await
        .unwrap();
    let report = c.startup().await.unwrap();
    assert_eq!(
        report.seed,
        SeedOutcome::Upgraded {
            from: meta.version.to_hex(),
            to: version.clone()
        }
    );
    edited.metadata.description = Some("operator edit".into());
    let (meta, _) = fx
        .stores
        .blueprints
        .write_new(Arc::new(edited), None, "edit", None, None)
        .await
        .unwrap();
    let report = c.startup().await.unwrap();
    assert_eq!(
        report.seed,
        SeedOutcome::Customized {
            head: meta.version.to_hex()
        }
    );
    assert_eq!(
        fx.stores
            .blueprints
            .read_head(DEFAULT_BLUEPRINT_ID)
            .await
            .unwrap()
            .meta
            .version,
        meta.version
    );

    // Archived counts as present.
    fx.stores
        .blueprints
        .archive(DEFAULT_BLUEPRINT_ID)
        .await
        .unwrap();
    assert_eq!(c.startup().await.unwrap().seed, SeedOutcome::Archived);
}

async fn happy_path(b: Backend) {
    let op = Scripted::default();
    let fx = Fx::new(b).with_operator(op.clone());
    let seed = fx.seed_target("demo").await;
    let c = fx.started().await;
    assert_eq!(c.tick().await.unwrap(), None, "empty queue");

    let issue = fx.issue("demo", "describe demo").await;
    let out = fx.tick(&c).await;
    assert_eq!(out.issue_id, issue.id);
    assert_eq!(out.status, IssueStatus::Applied, "{out:?}");
    assert_eq!(out.reason, None);

    // The head is the new version on top of the old one, with a bumped label.
    let head = fx.stores.blueprints.read_head("demo").await.unwrap();
    let new_hex = head.meta.version.to_hex();
    assert_eq!(out.new_version.as_deref(), Some(new_hex.as_str()));
    assert_eq!(head.meta.parents, vec![seed.version]);
    assert_eq!(head.meta.version_label.as_deref(), Some("1.1.0"));
    assert_eq!(
        head.blueprint.metadata.description.as_deref(),
        Some("describe demo")
    );
    assert_eq!(head.meta.rationale, "describe: describe demo");
    assert_eq!(
        head.meta.patch_hash,
        Some(canonical_ops_hash("describe demo"))
    );
    let epoch = head.meta.epoch_id.clone().unwrap();
    assert!(
        epoch.starts_with(&format!("demo:{}:", seed.version.to_hex())),
        "{epoch}"
    );
    assert_eq!(head.meta.version, head.blueprint.version());

    // The issue and exactly one log entry.
    let rec = fx.record(&issue.id).await;
    assert_eq!(rec.status, IssueStatus::Applied);
    assert_eq!(rec.new_version.as_deref(), Some(new_hex.as_str()));
    assert_eq!(rec.attempts, 1);
    let log = fx.log().await;
    assert_eq!(log.len(), 1);
    let e = &log[0];
    assert_eq!(
        (
            e.issue_id.as_str(),
            e.blueprint_id.as_str(),
            e.status.as_str()
        ),
        (issue.id.as_str(), "demo", "applied")
    );
    assert_eq!(e.prev_hash, seed.version.to_hex());
    assert_eq!(e.new_hash, new_hex);
    assert_eq!(e.intent, "describe demo");
    assert_eq!(e.rationale, "describe: describe demo");
    assert!(e.reasons.is_empty());
    let axes: Vec<(&str, &str)> = e
        .verdicts
        .iter()
        .map(|v| (v["axis"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        axes,
        [
            ("des", "pass"),
            ("canonical", "pass"),
            ("noop", "pass"),
            ("agent-ref", "pass")
        ]
    );
    assert_eq!(e.verdicts[3]["detail"], "all 1 step refs resolved");

    // What the operator was given.
    let seen = op.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let input = &seen[0];
    assert_eq!(
        input["issue"],
        json!({"issue_id": issue.id, "blueprint_id": "demo", "intent": "describe demo"})
    );
    assert_eq!(input["prev_bp_json"], target("demo").to_value());
    assert_eq!(input["prev_hash"], json!(seed.version.to_hex()));
    assert_eq!(input["epoch_id"]["blueprint_id"], "demo");
    assert_eq!(
        input["epoch_id"]["start_version"],
        json!(seed.version.to_hex())
    );
    assert!(input["epoch_id"]["started_at_ms"].is_i64());
    assert_eq!(
        input["verifiers"],
        json!(["des", "canonical", "noop", "agent-ref"])
    );

    // A second issue builds on the new head.
    fx.issue("demo", "second").await;
    let out2 = fx.tick(&c).await;
    assert_eq!(out2.status, IssueStatus::Applied);
    let head2 = fx.stores.blueprints.read_head("demo").await.unwrap();
    assert_eq!(head2.meta.parents, vec![head.meta.version]);
    assert_eq!(head2.meta.version_label.as_deref(), Some("1.2.0"));
    assert_eq!(fx.log().await.len(), 2);
    assert_eq!(c.tick().await.unwrap(), None);
}

async fn denials(b: Backend) {
    let fx = Fx::new(b).with_operator(Scripted::default());
    fx.seed_target("demo").await;
    let c = fx.started().await;

    let (reason, entry) = fx.rejected(&c, "broken-ref").await;
    assert!(reason.starts_with("verifier deny: "), "{reason}");
    assert!(
        reason.contains("agent-ref: unresolved step refs: ghost"),
        "{reason}"
    );
    assert!(entry
        .reasons
        .contains(&"agent-ref: unresolved step refs: ghost".to_string()));
    assert!(entry.verdicts.contains(
        &json!({"axis":"agent-ref","status":"deny","detail":"unresolved step refs: ghost"})
    ));
    assert_eq!(entry.verdicts.len(), 4);
    assert_eq!(entry.rationale, "r");

    let (reason, _) = fx.rejected(&c, "noop").await;
    assert_eq!(
        reason,
        "verifier deny: noop: patch is no-op (new_hash == prev_hash)"
    );

    let (reason, entry) = fx.rejected(&c, "invalid").await;
    assert!(
        reason.starts_with("dispatch failed: launch: flow eval: "),
        "{reason}"
    );
    assert!(reason.contains("invalid RFC 6902 patch"), "{reason}");
    assert_eq!(entry.reasons, vec![reason.clone()]);
    assert!(entry.verdicts.is_empty());

    let (reason, _) = fx.rejected(&c, "not-a-patch").await;
    assert!(reason.contains("patch must be an object"), "{reason}");

    fx.edit_setting(|s| s.verifier_axes = vec!["des".into(), "bogus".into()])
        .await;
    let (reason, entry) = fx.rejected(&c, "fine").await;
    assert_eq!(reason, "verifier deny: bogus: unknown verifier axis: bogus");
    assert_eq!(entry.verdicts.len(), 2);

    assert_eq!(fx.history("demo").await.len(), 1);
    assert_eq!(fx.log().await.len(), 5);
}

async fn no_axes_commits(b: Backend) {
    let fx = Fx::new(b).with_operator(Scripted::default());
    let seed = fx.seed_target("demo").await;
    let c = fx.started().await;
    fx.edit_setting(|s| s.verifier_axes.clear()).await;
    fx.issue("demo", "no axes").await;
    let out = fx.tick(&c).await;
    assert_eq!(out.status, IssueStatus::Applied, "{out:?}");
    let log = fx.log().await;
    assert_eq!(log.len(), 1);
    assert!(log[0].verdicts.is_empty());
    assert_eq!(log[0].prev_hash, seed.version.to_hex());

    // Without the noop axis a no-op patch "commits" the unchanged head.
    fx.issue("demo", "noop").await;
    let out = fx.tick(&c).await;
    let head = fx.stores.blueprints.read_head("demo").await.unwrap();
    assert_eq!(out.status, IssueStatus::Applied);
    assert_eq!(out.new_version, Some(head.meta.version.to_hex()));
    assert_eq!(fx.history("demo").await.len(), 2);
}

async fn operator_never_answers(b: Backend) {
    let fx = Fx::new(b).with_operator(Silent);
    fx.seed_target("demo").await;
    let c = fx.started().await;
    fx.edit_setting(|s| s.ttl_secs = 1).await;
    let started = Instant::now();
    let (reason, entry) = fx.rejected(&c, "anything").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert_eq!(
        reason,
        "dispatch failed: launch: run exceeded its TTL of 1s"
    );
    assert!(!entry.prev_hash.is_empty());
}

async fn no_operator_registered(b: Backend) {
    let fx = Fx::new(b);
    fx.seed_target("demo").await;
    let c = fx.started().await;
    let (reason, _) = fx.rejected(&c, "anything").await;
    assert!(
        reason.starts_with("dispatch failed: launch: compile: "),
        "{reason}"
    );
    assert!(reason.contains("patch-spawner"), "{reason}");
}

async fn head_moved_is_a_conflict(b: Backend) {
    let fx = Fx::new(b);
    let fx = {
        let store = Arc::clone(&fx.stores.blueprints);
        fx.with_operator(HeadMover(store))
    };
    let seed = fx.seed_target("demo").await;
    let c = fx.started().await;
    let (reason, entry) = fx.rejected(&c, "improve").await;
    assert_eq!(reason, "conflict: head moved");
    assert!(
        entry.reasons[0].starts_with("conflict: head moved: id=demo"),
        "{:?}",
        entry.reasons
    );
    assert_eq!(entry.prev_hash, seed.version.to_hex());
    assert_eq!(entry.verdicts.len(), 4, "the verdicts are kept");
    // Only the manual edit was written; the issue wrote nothing.
    let history = fx.history("demo").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].rationale, "manual");
    assert_eq!(fx.log().await.len(), 1);
}

async fn pre_launch_failures_are_logged(b: Backend) {
    let fx = Fx::new(b).with_operator(Scripted::default());
    fx.seed_target("demo").await;
    fx.seed_target("old").await;
    fx.stores.blueprints.archive("old").await.unwrap();
    let c = fx.started().await;

    for (bp_id, expected) in [
        (
            "ghost",
            "dispatch failed: blueprint store: target: blueprint not found: id=ghost",
        ),
        (
            "old",
            "dispatch failed: blueprint store: target: blueprint is archived: id=old",
        ),
    ] {
        let issue = fx.issue(bp_id, "x").await;
        let out = fx.tick(&c).await;
        assert_eq!(out.status, IssueStatus::Rejected);
        assert_eq!(out.reason.as_deref(), Some(expected));
        let e = fx.stores.log.get(&issue.id).await.unwrap().unwrap();
        assert_eq!((e.status.as_str(), e.prev_hash.as_str()), ("rejected", ""));
        assert_eq!(e.reasons, vec![expected.to_string()]);
        assert!(e.verdicts.is_empty());
    }

    // Orchestrator missing.
    fx.edit_setting(|s| s.blueprint_id = "nope".into()).await;
    let (reason, entry) = fx.rejected(&c, "x").await;
    assert_eq!(
        reason,
        "dispatch failed: blueprint store: orchestrator: blueprint not found: id=nope"
    );
    assert!(entry.prev_hash.is_empty());

    // Subprocess override without permission.
    fx.edit_setting(|s| {
        s.blueprint_id = DEFAULT_BLUEPRINT_ID.into();
        s.meta = json!({"patch_spawner": {"program": "/bin/sh"}});
    })
    .await;
    let (reason, entry) = fx.rejected(&c, "x").await;
    assert!(
        reason.starts_with("dispatch failed: setting meta.patch_spawner"),
        "{reason}"
    );
    assert!(reason.contains("--allow-subprocess"), "{reason}");
    assert!(!entry.prev_hash.is_empty(), "the target head was known");

    // Setting missing.
    fx.stores.settings.delete("default").await.unwrap();
    let (reason, _) = fx.rejected(&c, "x").await;
    assert_eq!(reason, "dispatch failed: setting store: not found: default");
    assert_eq!(fx.log().await.len(), 5);
}

async fn interrupted_issue_is_requeued_and_applied_once(b: Backend) {
    let fx = Fx::new(b).with_operator(Scripted::default());
    fx.seed_target("demo").await;
    fx.started().await;
    let issue = fx.issue("demo", "survive a crash").await;
    // A consumer popped it and died.
    let popped = fx.stores.issues.pop_pending().await.unwrap().unwrap();
    assert_eq!(popped.id, issue.id);

    let c = fx.consumer_on(fx.reopened(), test_cfg());
    let report = c.startup().await.unwrap();
    assert_eq!(report.requeued, vec![issue.id.clone()]);
    assert!(report.rejected.is_empty());
    let out = fx.tick(&c).await;
    assert_eq!(out.issue_id, issue.id);
    assert_eq!(out.status, IssueStatus::Applied);
    assert_eq!(c.tick().await.unwrap(), None);

    let fresh = fx.reopened();
    let rec = fresh.issues.get(&issue.id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (IssueStatus::Applied, 2));
    assert_eq!(fresh.log.list(None, None, 100).await.unwrap().len(), 1);
    assert_eq!(
        fresh.blueprints.history("demo", 100).await.unwrap().len(),
        2
    );
}

async fn interrupted_issue_is_rejected_after_max_attempts(b: Backend) {
    let fx = Fx::new(b).with_operator(Scripted::default());
    fx.seed_target("demo").await;
    let issue = fx.issue("demo", "keeps crashing").await;
    for attempt in 1..=3u32 {
        let popped = fx.stores.issues.pop_pending().await.unwrap().unwrap();
        assert_eq!(popped.attempts, attempt);
        let c = fx.consumer_on(fx.reopened(), test_cfg());
        let report = c.startup().await.unwrap();
        if attempt < 3 {
            assert_eq!(report.requeued, vec![issue.id.clone()]);
        } else {
            assert!(report.requeued.is_empty());
            assert_eq!(report.rejected, vec![issue.id.clone()]);
            assert_eq!(c.tick().await.unwrap(), None);
        }
    }
    let rec = fx.record(&issue.id).await;
    let reason = mse_store::issues::interrupted_reason(3);
    assert_eq!(rec.status, IssueStatus::Rejected);
    assert_eq!(rec.reason.as_deref(), Some(reason.as_str()));
    let log = fx.log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, "rejected");
    assert_eq!(log[0].reasons, vec![reason]);
    assert_eq!(fx.history("demo").await.len(), 1);
}

/// A setting store that is unavailable for its first `get`s.
struct Flaky {
    inner: Arc<dyn EnhanceSettingStore>,
    failures: Mutex<u32>,
}

#[async_trait::async_trait]
impl EnhanceSettingStore for Flaky {
    async fn get(&self, id: &str) -> Result<Option<EnhanceSetting>, StoreError> {
        {
            let mut f = self.failures.lock();
            if *f > 0 {
                *f -= 1;
                return Err(StoreError::Unavailable("database is locked".into()));
            }
        }
        self.inner.get(id).await
    }
    async fn put(&self, s: EnhanceSetting) -> Result<(), StoreError> {
        self.inner.put(s).await
    }
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list().await
    }
}

async fn unavailable_store_requeues(b: Backend) {
    let fx = Fx::new(b).with_operator(Scripted::default());
    fx.seed_target("demo").await;
    fx.started().await;
    let flaky = Arc::new(Flaky {
        inner: Arc::clone(&fx.stores.settings),
        failures: Mutex::new(u32::MAX),
    });
    let mut stores = fx.stores.clone();
    stores.settings = flaky.clone();
    let c = fx.consumer_on(stores, test_cfg());

    // Transient failures re-queue the issue until its attempts run out.
    *flaky.failures.lock() = 1;
    let issue = fx.issue("demo", "flaky").await;
    let err = c.tick().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let rec = fx.record(&issue.id).await;
    assert_eq!((rec.status, rec.attempts), (IssueStatus::Pending, 1));
    assert!(fx.log().await.is_empty());
    let out = fx.tick(&c).await;
    assert_eq!(out.status, IssueStatus::Applied);

    *flaky.failures.lock() = u32::MAX;
    let issue = fx.issue("demo", "never").await;
    for _ in 0..2 {
        assert!(c.tick().await.is_err());
    }
    let out = fx.tick(&c).await;
    assert_eq!(out.issue_id, issue.id);
    assert_eq!(
        out.reason.as_deref(),
        Some("dispatch failed: setting store: store unavailable: database is locked")
    );
    assert_eq!(fx.record(&issue.id).await.attempts, 3);
    assert_eq!(fx.log().await.len(), 2);
}

async fn subprocess_spawner(b: Backend) {
    let fx = Fx::new(b);
    fx.seed_target("demo").await;
    let mut cfg = test_cfg();
    cfg.allow_subprocess_spawner = true;
    let c = fx.consumer_on(fx.stores.clone(), cfg);
    c.startup().await.unwrap();
    // The child checks that stdin carries the issue and the target, then prints a patch.
    let script = r#"input=$(cat); case "$input" in
        *'"intent":"from a child"'*'"prev_bp_json"'*|*'"prev_bp_json"'*'"intent":"from a child"'*)
          printf '%s' '{"ops":[{"op":"replace","path":"/metadata/description","value":"child"}],"bump":"major","rationale":"sub"}';;
        *) echo "unexpected input"; exit 1;;
      esac"#;
    fx.edit_setting(|s| {
        s.meta = json!({"patch_spawner": {"program": "/bin/sh", "args": ["-c", script]}});
    })
    .await;
    fx.issue("demo", "from a child").await;
    let out = fx.tick(&c).await;
    assert_eq!(out.status, IssueStatus::Applied, "{out:?}");
    let head = fx.stores.blueprints.read_head("demo").await.unwrap();
    assert_eq!(
        head.blueprint.metadata.description.as_deref(),
        Some("child")
    );
    assert_eq!(head.meta.version_label.as_deref(), Some("2.0.0"));
}

async fn throughput(b: Backend) {
    const N: usize = 100;
    let fx = Fx::new(b).with_operator(Scripted::default());
    fx.seed_target("demo").await;
    let c = fx.started().await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(fx.issue("demo", &format!("step {i}")).await.id);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(Arc::clone(&c).run(async move {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(120);
    while fx.stores.log.list(None, None, 10_000).await.unwrap().len() < N {
        assert!(
            Instant::now() < deadline,
            "not all issues processed in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();

    let log = fx.log().await;
    assert_eq!(log.len(), N);
    let mut logged: Vec<&str> = log.iter().map(|e| e.issue_id.as_str()).collect();
    logged.sort_unstable();
    logged.dedup();
    assert_eq!(logged.len(), N, "one entry per issue");
    assert!(log.iter().all(|e| e.status == "applied"));
    for id in &ids {
        let rec = fx.record(id).await;
        assert_eq!((rec.status, rec.attempts), (IssueStatus::Applied, 1));
    }
    // Serial patches on one series: each built on the previous head.
    let history = fx.history("demo").await;
    assert_eq!(history.len(), N + 1);
    for w in history.windows(2) {
        assert_eq!(w[0].parents, vec![w[1].version]);
    }
    let head = fx.stores.blueprints.read_head("demo").await.unwrap();
    assert_eq!(head.meta.version_label.as_deref(), Some("1.100.0"));
    assert_eq!(
        head.blueprint.metadata.description.as_deref(),
        Some(format!("step {}", N - 1).as_str())
    );
}

async fn run_stops_promptly(b: Backend) {
    // Idle loop.
    let fx = Fx::new(b).with_operator(Silent);
    fx.seed_target("demo").await;
    let c = fx.started().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(Arc::clone(&c).run(async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_millis(500), runner)
        .await
        .expect("run stops while idle")
        .unwrap();

    // In the middle of a run whose operator never answers: the issue stays in
    // flight and the next startup re-queues it.
    let issue = fx.issue("demo", "slow").await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(Arc::clone(&c).run(async move {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while fx.record(&issue.id).await.status != IssueStatus::InFlight {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_millis(500), runner)
        .await
        .expect("run stops during a run")
        .unwrap();
    assert_eq!(fx.record(&issue.id).await.status, IssueStatus::InFlight);
    assert!(fx.log().await.is_empty());
    let report = fx
        .consumer_on(fx.reopened(), test_cfg())
        .startup()
        .await
        .unwrap();
    assert_eq!(report.requeued, vec![issue.id]);
}
