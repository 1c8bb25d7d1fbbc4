//! Every compile error of blueprint.md section 7, in check order.

use mse_blueprint::factories::SUBPROCESS_DISABLED;
use mse_blueprint::{Blueprint, CompileError, LaunchConfig, Launcher, SpawnerFactories};
use mse_engine::{Engine, EngineConfig};
use mse_workers::lua::{LuaConfig, LuaFactory};
use mse_workers::rust_fn::RustFnRegistry;
use serde_json::{json, Value};
use std::sync::Arc;

fn launcher() -> Launcher {
    let engine = Engine::new(EngineConfig::default());
    let f = SpawnerFactories::standard(
        &engine,
        RustFnRegistry::default(),
        LuaFactory::new(LuaConfig::default()),
        None,
    );
    Launcher::new(engine, f, LaunchConfig::default())
}

fn compile(v: Value) -> Result<(), CompileError> {
    let bp = Arc::new(Blueprint::from_value(v).unwrap());
    launcher().compile(&bp).map(|_| ())
}

fn step(r: &str) -> Value {
    json!({"kind":"step","ref":r,"in":{"op":"lit","value":null},"out":{"op":"path","at":"$.x"}})
}

fn identity(name: &str) -> Value {
    json!({"name": name, "kind": "rust_fn", "spec": {"fn_id": "identity"}})
}

#[test]
fn unresolved_operator_ref_is_first() {
    let err = compile(json!({"id":"b","flow":step("a"),
        "operators":[{"name":"r1"},{"name":"r2"}],
        "agents":[identity("a"), identity("a"), {"name":"o","kind":"operator","spec":{"operator_ref":"nope"}}]}))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"agent 'o' operator_ref 'nope' does not match any OperatorDef.name in Blueprint.operators (defined: ["r1", "r2"])"#
    );
}

#[test]
fn duplicate_agent() {
    let err = compile(json!({"id":"b","flow":step("a"),"agents":[identity("a"), identity("a")]}))
        .unwrap_err();
    assert_eq!(err.to_string(), "duplicate AgentDef name: a");
}

#[test]
fn duplicate_counts_skipped_agents() {
    let err = compile(
        json!({"id":"b","flow":{"kind":"seq","children":[]},"strategy":{"strict_kind":false},
        "agents":[{"name":"a","kind":"agent_block"}, identity("a")]}),
    )
    .unwrap_err();
    assert_eq!(err, CompileError::DuplicateAgent("a".into()));
}

#[test]
fn unknown_kind_and_non_strict_skip() {
    let err =
        compile(json!({"id":"b","flow":step("a"),"agents":[{"name":"a","kind":"agent_block"}]}))
            .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown agent kind in SpawnerRegistry: AgentBlock"),
        "{err}"
    );
    // strict_kind:false drops the agent; strict_refs then reports the step.
    let err = compile(
        json!({"id":"b","flow":step("a"),"strategy":{"strict_kind":false},
        "agents":[{"name":"a","kind":"agent_block"}]}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow references agent 'a' but no AgentDef matches"
    );
}

#[test]
fn invalid_specs() {
    let cases = [
        (
            json!({"name":"a","kind":"rust_fn","spec":{}}),
            "agent 'a' spec invalid: rust_fn spec: 'fn_id' (string) required",
        ),
        (
            json!({"name":"a","kind":"rust_fn","spec":{"fn_id":"nope"}}),
            "agent 'a' spec invalid: fn_id 'nope' not registered in factory",
        ),
        (
            json!({"name":"a","kind":"lua","spec":{"fn_id":"nope"}}),
            "agent 'a' spec invalid: fn_id 'nope' not registered in factory",
        ),
        (
            json!({"name":"a","kind":"lua","spec":{}}),
            "agent 'a' spec invalid: lua spec: 'fn_id' (string) required",
        ),
        (
            json!({"name":"a","kind":"operator","spec":{}}),
            "agent 'a' spec invalid: operator spec: 'operator_ref' (string) required",
        ),
    ];
    for (agent, msg) in cases {
        let err = compile(json!({"id":"b","flow":step("a"),"agents":[agent]})).unwrap_err();
        assert_eq!(err.to_string(), msg);
    }
}

#[test]
fn operator_without_live_backend() {
    let err = compile(
        json!({"id":"b","flow":step("a"),"operators":[{"name":"main-ai"}],
        "agents":[{"name":"a","kind":"operator","spec":{"operator_ref":"main-ai"}}]}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent 'a' spec invalid: operator_ref 'main-ai' not registered in factory. Registered sids: [<none>]. \
         Hint: call mse_operator_join(roles=[...]) to mint the sid first."
    );
}

#[test]
fn subprocess_is_disabled_unless_allowed() {
    let err = compile(json!({"id":"b","flow":step("a"),"agents":[{"name":"a","kind":"subprocess","spec":{"program":"true"}}]}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("agent 'a' spec invalid: {SUBPROCESS_DISABLED}")
    );
}

#[test]
fn unresolved_ref_in_dead_branch_and_strict_refs_off() {
    let flow = json!({"kind":"branch","cond":{"op":"lit","value":true},"then":step("a"),"else":step("ghost")});
    let err = compile(json!({"id":"b","flow":flow.clone(),"agents":[identity("a")]})).unwrap_err();
    assert_eq!(err, CompileError::UnresolvedRef("ghost".into()));
    compile(
        json!({"id":"b","flow":flow,"strategy":{"strict_refs":false},"agents":[identity("a")]}),
    )
    .unwrap();
}

#[test]
fn unused_agents_and_operators_are_fine() {
    compile(json!({"id":"b","flow":{"kind":"seq","children":[]},"operators":[{"name":"r"}],"agents":[identity("a")]})).unwrap();
}
