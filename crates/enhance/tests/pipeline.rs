//! The bundled enhance Blueprint end to end through the launcher, with an
//! in-process operator backend standing in for the patch-spawner session.

use mse_blueprint::{
    Blueprint, BlueprintVersion, LaunchConfig, Launcher, RunRequest, SpawnerFactories,
};
use mse_engine::{Engine, EngineConfig, OperatorBackend, SpawnCtx};
use mse_workers::lua::LuaFactory;
use mse_workers::rust_fn::RustFnRegistry;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Replies to every spawn with a fixed patch.
struct Spawner(Value);

#[async_trait::async_trait]
impl OperatorBackend for Spawner {
    async fn execute(
        &self,
        _ctx: &SpawnCtx,
        _s: Option<&str>,
        _p: &str,
    ) -> Result<(Value, bool), String> {
        Ok((self.0.clone(), true))
    }
}

fn target() -> Blueprint {
    Blueprint::from_value(json!({"id":"demo",
        "flow":{"kind":"step","ref":"echo","in":{"op":"path","at":"$.input"},"out":{"op":"path","at":"$.out"}},
        "agents":[{"name":"echo","kind":"rust_fn","spec":{"fn_id":"identity"},"profile":{"system_prompt":"old"}}],
        "metadata":{"version_label":"1.0.0"}}))
    .unwrap()
}

async fn run(patch: Value, axes: Value) -> Result<Value, String> {
    let engine = Engine::new(EngineConfig::default());
    let fns = RustFnRegistry::default();
    let compile_engine = engine.clone();
    let compile_fns = fns.clone();
    let check: mse_enhance::CompileCheck = Arc::new(move |bp: &Blueprint| {
        let f = SpawnerFactories::standard(
            &compile_engine,
            compile_fns.clone(),
            LuaFactory::default(),
            None,
        );
        mse_blueprint::compile(&Arc::new(bp.clone()), &f)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    mse_enhance::register(&fns, Some(check));
    engine
        .registries()
        .register_operator_backend("patch-spawner", Arc::new(Spawner(patch)));
    let f = SpawnerFactories::standard(&engine, fns, LuaFactory::default(), None);
    let launcher = Launcher::new(engine, f, LaunchConfig::default());
    let orchestrator =
        Arc::new(Blueprint::from_json(mse_enhance::DEFAULT_BLUEPRINT.as_bytes()).unwrap());
    let t = target();
    let init = json!({
        "issue": {"issue_id": "h-1", "blueprint_id": "demo", "intent": "describe demo"},
        "prev_bp_json": t.to_value(),
        "prev_hash": BlueprintVersion::of(&t).to_hex(),
        "epoch_id": {"blueprint_id": "demo", "start_version": BlueprintVersion::of(&t).to_hex(), "started_at_ms": 1},
        "verifiers": axes,
    });
    launcher
        .run(
            &orchestrator,
            RunRequest::new(init, Duration::from_secs(30)),
        )
        .await
        .map(|o| o.final_ctx["commit"].clone())
        .map_err(|e| e.to_string())
}

const AXES: &str = r#"["des","canonical","noop","agent-ref","compile"]"#;

#[tokio::test]
async fn a_valid_patch_commits_with_a_bumped_label_and_rehashed_prompt() {
    let patch = json!({"ops":[
        {"op":"replace","path":"/metadata/description","value":"demo v2"},
        {"op":"add","path":"/metadata/tags/-","value":"x"},
        {"op":"replace","path":"/agents/0/profile/system_prompt","value":"new prompt"}],
        "bump":"minor","rationale":"describe demo"});
    let commit = run(patch, serde_json::from_str(AXES).unwrap())
        .await
        .unwrap();
    assert_eq!(commit["committed"], true, "{commit}");
    let bp = Blueprint::from_value(commit["new_bp_json"].clone()).unwrap();
    assert_eq!(bp.metadata.version_label.as_deref(), Some("1.1.0"));
    assert_eq!(bp.metadata.description.as_deref(), Some("demo v2"));
    assert_eq!(bp.metadata.tags, vec!["x".to_string()]);
    let profile = bp.agents[0].profile.as_ref().unwrap();
    assert_eq!(
        profile.version_hash.as_deref(),
        Some(mse_blueprint::version::content_hash(b"new prompt").as_str())
    );
    assert_eq!(
        commit["new_version"],
        json!(BlueprintVersion::of(&bp).to_hex())
    );
    let axes: Vec<&str> = commit["verdicts_summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["axis"].as_str().unwrap())
        .collect();
    assert_eq!(axes, ["des", "canonical", "noop", "agent-ref", "compile"]);
    assert_eq!(
        commit["verdicts_summary"][3]["evidence"],
        "all 1 step refs resolved"
    );
}

#[tokio::test]
async fn a_patch_given_as_a_json_string_is_accepted() {
    let patch = json!("{\"ops\":[{\"op\":\"replace\",\"path\":\"/metadata/description\",\"value\":\"s\"}],\"bump\":\"patch\",\"rationale\":\"r\"}");
    let commit = run(patch, json!([])).await.unwrap();
    assert_eq!(commit["committed"], true);
    assert_eq!(commit["verdicts_summary"], json!([]));
}

#[tokio::test]
async fn denials_name_their_axis() {
    let broken_ref = json!({"ops":[{"op":"replace","path":"/flow/ref","value":"ghost"}],"bump":"patch","rationale":"r"});
    let commit = run(broken_ref, serde_json::from_str(AXES).unwrap())
        .await
        .unwrap();
    assert_eq!(commit["committed"], false);
    let reasons = commit["reasons"].as_array().unwrap();
    assert!(
        reasons.contains(&json!("agent-ref: unresolved step refs: ghost")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .unwrap()
            .starts_with("compile: compile error: flow references agent 'ghost'")),
        "{reasons:?}"
    );

    let noop = json!({"ops":[],"bump":"patch","rationale":"nothing"});
    let commit = run(noop, json!(["noop"])).await.unwrap();
    assert_eq!(
        commit["reasons"],
        json!(["noop: patch is no-op (new_hash == prev_hash)"])
    );

    let valid = json!({"ops":[{"op":"replace","path":"/metadata/description","value":"d"}],"bump":"patch","rationale":"r"});
    let commit = run(valid, json!(["bogus"])).await.unwrap();
    assert_eq!(
        commit["reasons"],
        json!(["bogus: unknown verifier axis: bogus"])
    );
}

#[tokio::test]
async fn invalid_patches_fail_the_run() {
    let bad =
        json!({"ops":[{"op":"remove","path":"/metadata/nope"}],"bump":"patch","rationale":"r"});
    let err = run(bad, json!([])).await.unwrap_err();
    assert!(err.contains("patch failed"), "{err}");
    let not_ops = json!({"ops":[{"op":"frobnicate","path":"/x"}],"bump":"patch","rationale":"r"});
    let err = run(not_ops, json!([])).await.unwrap_err();
    assert!(err.contains("invalid RFC 6902 patch"), "{err}");
    let breaks_schema = json!({"ops":[{"op":"add","path":"/bogus_field","value":1}],"bump":"patch","rationale":"r"});
    let err = run(breaks_schema, json!([])).await.unwrap_err();
    assert!(err.contains("patched blueprint is invalid"), "{err}");
}
