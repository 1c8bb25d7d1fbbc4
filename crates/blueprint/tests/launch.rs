//! Task launch end to end: steps become engine tasks, errors carry the
//! reference's texts, TTLs bound runs, abandoned work is cancelled.

mod common;
use common::*;
use mse_blueprint::{LaunchError, RunRequest};
use mse_engine::{EngineConfig, TaskStatus};
use mse_workers::rust_fn::{Invocation, RustFn, SyncFn};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn step(r: &str, input: Value, out: &str) -> Value {
    json!({"kind":"step","ref":r,"in":input,"out":{"op":"path","at":out}})
}

fn agent(name: &str, fn_id: &str) -> Value {
    json!({"name": name, "kind": "rust_fn", "spec": {"fn_id": fn_id}})
}

#[tokio::test]
async fn identity_worked_example() {
    let h = harness();
    let bp = json!({"id":"hello","flow":step("greeter", json!({"op":"lit","value":{"name":"world"}}), "$.greeting"),
        "agents":[agent("greeter","identity")]});
    let out = h.run(bp, json!({})).await.unwrap();
    assert_eq!(
        out,
        json!({"greeting":{"agent":"greeter","by":"baseline-identity","echoed":"{\"name\":\"world\"}"}})
    );
}

#[tokio::test]
async fn string_inputs_are_used_verbatim_as_directive() {
    let h = harness();
    let bp = json!({"id":"s","flow":step("a", json!({"op":"lit","value":"plain text"}), "$.r"),"agents":[agent("a","identity")]});
    let out = h.run(bp, json!({})).await.unwrap();
    assert_eq!(out["r"]["echoed"], json!("plain text"));
}

#[tokio::test]
async fn blocked_step_has_the_double_prefix_and_try_catches_it() {
    let h = harness();
    h.register(
        "quota",
        Arc::new(SyncFn(|_: &Invocation<'_>| {
            Ok((json!({"reason":"quota"}), false))
        })),
    );
    let flow = json!({"kind":"try","err_at":{"op":"path","at":"$.error"},
        "body":{"kind":"seq","children":[
            {"kind":"assign","at":{"op":"path","at":"$.draft"},"value":{"op":"lit","value":"final text"}},
            step("publish", json!({"op":"path","at":"$.draft"}), "$.receipt")]},
        "catch":{"kind":"assign","at":{"op":"path","at":"$.status"},"value":{"op":"lit","value":"failed"}}});
    let bp = json!({"id":"p","flow":flow,"agents":[agent("publish","quota")]});
    let out = h.run(bp, json!({"status":"pending"})).await.unwrap();
    assert_eq!(
        out,
        json!({"error":"dispatcher error for ref 'publish': dispatcher error for ref 'publish': blocked: {\"reason\":\"quota\"}","status":"failed"})
    );
}

#[tokio::test]
async fn worker_errors_and_unregistered_refs() {
    let h = harness();
    h.register(
        "broken",
        Arc::new(SyncFn(|_: &Invocation<'_>| Err("parse error".to_string()))),
    );
    let bp = json!({"id":"e","flow":step("lint", json!({"op":"lit","value":1}), "$.r"),"agents":[agent("lint","broken")]});
    let err = h.run(bp, json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow eval: dispatcher error for ref 'lint': dispatcher error for ref 'lint': dispatch_attempt: dispatch failed: worker fn returned error: parse error"
    );
    let bp = json!({"id":"g","flow":step("ghost", json!({"op":"lit","value":1}), "$.r"),"strategy":{"strict_refs":false}});
    let err = h.run(bp, json!({})).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("dispatch failed: worker not registered: ghost"),
        "{err}"
    );
}

#[tokio::test]
async fn compile_errors_surface_as_launch_errors() {
    let h = harness();
    let bp = json!({"id":"c","flow":step("nobody", json!({"op":"lit","value":1}), "$.r")});
    let err = h.run(bp, json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "compile: flow references agent 'nobody' but no AgentDef matches"
    );
}

struct Sleepy {
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RustFn for Sleepy {
    async fn call(&self, inv: Invocation<'_>) -> Result<(Value, bool), String> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let ms: u64 = inv.prompt().parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok((json!(ms), true))
    }
}

#[tokio::test]
async fn ttl_bounds_the_run_and_cancels_its_task() {
    let h = harness();
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    h.register(
        "sleep",
        Arc::new(Sleepy {
            started: started.clone(),
            finished: finished.clone(),
        }),
    );
    let bp = json!({"id":"t","flow":step("s", json!({"op":"lit","value":"5000"}), "$.r"),"agents":[agent("s","sleep")]});
    let t0 = std::time::Instant::now();
    let err = h
        .run_req(bp, RunRequest::new(json!({}), Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert_eq!(err, LaunchError::Timeout(Duration::from_millis(200)));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(
        (
            started.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    let tasks: Vec<_> = h
        .launcher
        .engine()
        .event_tail()
        .into_iter()
        .filter_map(|e| match e {
            mse_engine::Event::TaskCancelled { task_id } => Some(task_id),
            _ => None,
        })
        .collect();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        h.launcher.engine().task_snapshot(&tasks[0]).unwrap().status,
        TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn race_cancels_the_losers() {
    let h = harness();
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    h.register(
        "sleep",
        Arc::new(Sleepy {
            started: started.clone(),
            finished: finished.clone(),
        }),
    );
    let flow = json!({"kind":"fanout","items":{"op":"path","at":"$.waits"},"bind":{"op":"path","at":"$.w"},
        "join":"race","out":{"op":"path","at":"$.winner"},
        "body":step("s", json!({"op":"path","at":"$.w"}), "$.slept")});
    let bp = json!({"id":"r","flow":flow,"agents":[agent("s","sleep")]});
    let out = h
        .run(bp, json!({"waits":["2000","20","3000"]}))
        .await
        .unwrap();
    assert_eq!(out["winner"]["slept"], json!(20));
    assert_eq!(started.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the losers were cancelled"
    );
    let cancelled = h
        .launcher
        .engine()
        .event_tail()
        .into_iter()
        .filter(|e| matches!(e, mse_engine::Event::TaskCancelled { .. }))
        .count();
    assert_eq!(cancelled, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_runs_and_memory_returns_to_baseline() {
    let h = harness_with(EngineConfig {
        task_retention: Duration::ZERO,
        ..Default::default()
    });
    let bp = json!({"id":"c","flow":{"kind":"seq","children":[
        step("a", json!({"op":"path","at":"$.n"}), "$.first"),
        step("a", json!({"op":"path","at":"$.first.echoed"}), "$.second")]},
        "agents":[agent("a","identity")]});
    let bp = Arc::new(mse_blueprint::Blueprint::from_value(bp).unwrap());
    let mut joins = Vec::new();
    for i in 0..1000 {
        let l = h.launcher.clone();
        let bp = bp.clone();
        joins.push(tokio::spawn(async move {
            l.run(
                &bp,
                RunRequest::new(json!({"n": i}), Duration::from_secs(60)),
            )
            .await
        }));
    }
    for (i, j) in joins.into_iter().enumerate() {
        let out = j.await.unwrap().unwrap().final_ctx;
        assert_eq!(out["second"]["echoed"], json!(i.to_string()));
    }
    let engine = h.launcher.engine();
    assert_eq!(engine.stats().tasks, 2000);
    engine.sweep();
    assert_eq!(engine.stats(), mse_engine::EngineStats::default());
}

#[tokio::test]
async fn lua_and_subprocess_steps() {
    let h = harness();
    let flow = json!({"kind":"seq","children":[
        step("double", json!({"op":"path","at":"$.n"}), "$.doubled"),
        step("shell", json!({"op":"path","at":"$.doubled"}), "$.echoed")]});
    let bp = json!({"id":"w","flow":flow,"agents":[
        {"name":"double","kind":"lua","spec":{"source":"return _CTX * 2"}},
        {"name":"shell","kind":"subprocess","spec":{"program":"sh","args":["-c","read x; echo \"{\\\"got\\\": $x}\""]}}]});
    let out = h.run(bp, json!({"n": 21})).await.unwrap();
    assert_eq!(out, json!({"n":21,"doubled":42,"echoed":{"got":42}}));
}
