//! Hint layers and operator agents with in-process collaborators.

mod common;
use common::*;
use mse_blueprint::RunRequest;
use mse_engine::{OperatorBackend, OperatorKind, SeniorBridge, SpawnCtx, SpawnHook, TaskId};
use mse_workers::rust_fn::{Invocation, SyncFn};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn step(r: &str, input: Value) -> Value {
    json!({"kind":"step","ref":r,"in":input,"out":{"op":"path","at":"$.out"}})
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl SeniorBridge for Recorder {
    async fn ask(&self, task: &TaskId, question: Value) -> Result<Value, String> {
        self.0
            .lock()
            .push(format!("ask {} {question}", task.as_str().len()));
        Ok(json!("looks fine"))
    }
}

#[async_trait::async_trait]
impl SpawnHook for Recorder {
    async fn before(&self, ctx: &SpawnCtx) -> Result<(), String> {
        self.0.lock().push(format!("before {}", ctx.agent));
        if ctx.prompt.contains("forbidden") {
            return Err("not today".into());
        }
        Ok(())
    }
    async fn after(&self, ctx: &SpawnCtx, result: &Value) {
        self.0.lock().push(format!("after {} {result}", ctx.agent));
    }
}

#[async_trait::async_trait]
impl OperatorBackend for Recorder {
    async fn execute(
        &self,
        ctx: &SpawnCtx,
        system: Option<&str>,
        prompt: &str,
    ) -> Result<(Value, bool), String> {
        self.0.lock().push(format!(
            "execute {} system={system:?} prompt={prompt}",
            ctx.agent
        ));
        let meta = ctx.meta_json();
        Ok((
            json!({"handled": prompt, "alias": meta["runtime"]["project_name_alias"]}),
            true,
        ))
    }
}

#[tokio::test]
async fn senior_escalation_turns_a_blocked_worker_into_a_pass() {
    let h = harness();
    h.register(
        "nope",
        Arc::new(SyncFn(|_: &Invocation<'_>| {
            Ok((json!({"why":"unsure"}), false))
        })),
    );
    let rec = Arc::new(Recorder::default());
    h.launcher
        .engine()
        .registries()
        .register_senior_bridge("sb-1", rec.clone());
    let bp = json!({"id":"s","flow":step("w", json!({"op":"lit","value":"x"})),
        "spawner_hints":{"layers":["senior_escalation"]},
        "agents":[{"name":"w","kind":"rust_fn","spec":{"fn_id":"nope"}}]});
    let mut req = RunRequest::new(json!({}), Duration::from_secs(30));
    req.senior_bridge_id = Some("sb-1".into());
    let out = h.run_req(bp.clone(), req).await.unwrap();
    assert_eq!(
        out["out"],
        json!({"original":{"why":"unsure"},"senior_answer":"looks fine"})
    );
    assert_eq!(rec.0.lock().len(), 1);
    // Without a bridge the step stays blocked.
    let err = h.run(bp, json!({})).await.unwrap_err();
    assert!(
        err.to_string().contains("blocked: {\"why\":\"unsure\"}"),
        "{err}"
    );
}

#[tokio::test]
async fn main_ai_hook_vetoes_and_observes_by_kind() {
    let h = harness();
    let rec = Arc::new(Recorder::default());
    h.launcher
        .engine()
        .registries()
        .register_spawn_hook("hk-1", rec.clone());
    let bp = |input: &str| {
        json!({"id":"m","flow":step("w", json!({"op":"lit","value":input})),
        "spawner_hints":{"layers":["main_ai"]},
        "agents":[{"name":"w","kind":"rust_fn","spec":{"fn_id":"identity"}}]})
    };
    let req = |kind: Option<OperatorKind>| {
        let mut r = RunRequest::new(json!({}), Duration::from_secs(30));
        r.spawn_hook_id = Some("hk-1".into());
        r.operator_kind = kind;
        r
    };
    // automate (the fallback): the hook is not consulted.
    h.run_req(bp("forbidden"), req(None)).await.unwrap();
    assert!(rec.0.lock().is_empty());
    // main_ai: vetoed.
    let err = h
        .run_req(bp("forbidden"), req(Some(OperatorKind::MainAi)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("dispatch failed: spawn rejected by middleware: not today"),
        "{err}"
    );
    // composite: allowed, and `after` sees the final value.
    h.run_req(bp("fine"), req(Some(OperatorKind::Composite)))
        .await
        .unwrap();
    let log = rec.0.lock().clone();
    assert_eq!(log.len(), 3);
    assert!(log[2].starts_with("after w {\"agent\":\"w\""), "{log:?}");
}

#[tokio::test]
async fn operator_delegate_and_operator_agents() {
    let h = harness();
    let rec = Arc::new(Recorder::default());
    h.launcher
        .engine()
        .registries()
        .register_operator_backend("main-ai", rec.clone());
    // operator_delegate hands an identity agent's spawn to the session's backend.
    let bp = json!({"id":"d","flow":step("w", json!({"op":"lit","value":"do it"})),
        "spawner_hints":{"layers":["operator_delegate"]},
        "metadata":{"project_name_alias":"acme"},
        "agents":[{"name":"w","kind":"rust_fn","spec":{"fn_id":"identity"}}]});
    let mut req = RunRequest::new(json!({}), Duration::from_secs(30));
    req.operator_backend_id = Some("main-ai".into());
    let out = h.run_req(bp, req).await.unwrap();
    assert_eq!(out["out"], json!({"handled":"do it","alias":"acme"}));
    // An operator agent renders its system prompt from the directive.
    let bp = json!({"id":"o","flow":step("rev", json!({"op":"lit","value":{"file":"a.rs"}})),
        "operators":[{"name":"main-ai"}],
        "agents":[{"name":"rev","kind":"operator","spec":{"operator_ref":"main-ai"},
                   "profile":{"system_prompt":"Review {{ file }}"}}]});
    let out = h.run(bp, json!({})).await.unwrap();
    assert_eq!(out["out"]["handled"], json!("{\"file\":\"a.rs\"}"));
    let log = rec.0.lock().clone();
    assert_eq!(
        log[1],
        "execute rev system=Some(\"Review a.rs\") prompt={\"file\":\"a.rs\"}"
    );
    // A template that cannot render fails the step at dispatch.
    let bp = json!({"id":"o","flow":step("rev", json!({"op":"lit","value":"x"})),
        "operators":[{"name":"main-ai"}],
        "agents":[{"name":"rev","kind":"operator","spec":{"operator_ref":"main-ai"},
                   "profile":{"system_prompt":"{{ missing }}"}}]});
    let err = h.run(bp, json!({})).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("internal: render system_prompt: template render failed"),
        "{err}"
    );
}
