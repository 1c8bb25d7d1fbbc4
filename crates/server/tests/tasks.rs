//! `POST /v1/tasks`: success paths, TTL cascade, Blueprint resolution errors,
//! compile and flow failures, operator checks and the run limit.

mod common;

use common::*;
use mse_blueprint::{Blueprint, BlueprintVersion};
use serde_json::{json, Value};
use std::sync::Arc;

fn by_id(id: &str) -> Value {
    json!({"blueprint": {"kind": "id", "id": id}, "init_ctx": {}})
}

fn identity_bp(id: &str, label: Option<&str>, ttl: Option<u64>, echo: &str) -> Blueprint {
    let mut meta = json!({});
    if let Some(l) = label {
        meta["version_label"] = json!(l);
    }
    if let Some(t) = ttl {
        meta["default_run_ttl_secs"] = json!(t);
    }
    Blueprint::from_value(json!({
        "id": id,
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": echo},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "metadata": meta
    }))
    .unwrap()
}

async fn store(s: &TestServer, bp: Blueprint) -> BlueprintVersion {
    let (meta, _) = s
        .state
        .blueprints()
        .write_new(Arc::new(bp), None, "test", None, None)
        .await
        .unwrap();
    meta.version
}

#[tokio::test]
async fn seed_runs_with_server_default_ttl() {
    let s = start().await;
    let r = s
        .run_task(
            &json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {"ticket": "ABC-12"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["final_ctx"],
        json!({"ticket": "ABC-12", "out": {"by": "baseline-identity", "agent": "identity", "echoed": "hello"}})
    );
    let hex = v["bound_version"].as_str().unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(v["effective_ttl_secs"], 1800);
    assert_eq!(v["ttl_source"], "server_default");

    // The same version, selected explicitly (upper-case hex accepted too).
    for value in [hex.to_string(), hex.to_uppercase()] {
        let r = s
            .run_task(&json!({"blueprint": {"kind": "id", "id": "main",
                "version": {"kind": "fixed", "value": value}}, "init_ctx": null}))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["bound_version"], hex);
        assert_eq!(v["final_ctx"]["out"]["echoed"], "hello");
    }
}

#[tokio::test]
async fn ttl_cascade() {
    let s = start().await;
    store(&s, identity_bp("withttl", None, Some(120), "x")).await;

    let mut body = by_id("main");
    body["ttl_secs"] = json!(60);
    let v: Value = s.run_task(&body).await.json().await.unwrap();
    assert_eq!(
        (v["effective_ttl_secs"].clone(), v["ttl_source"].clone()),
        (json!(60), json!("request_body"))
    );

    let v: Value = s.run_task(&by_id("withttl")).await.json().await.unwrap();
    assert_eq!(
        (v["effective_ttl_secs"].clone(), v["ttl_source"].clone()),
        (json!(120), json!("bp_metadata"))
    );

    let mut body = by_id("withttl");
    body["ttl_secs"] = json!(30);
    let v: Value = s.run_task(&body).await.json().await.unwrap();
    assert_eq!(
        (v["effective_ttl_secs"].clone(), v["ttl_source"].clone()),
        (json!(30), json!("request_body"))
    );

    let v: Value = s.run_task(&by_id("main")).await.json().await.unwrap();
    assert_eq!(
        (v["effective_ttl_secs"].clone(), v["ttl_source"].clone()),
        (json!(1800), json!("server_default"))
    );

    // ttl 0: the run's token is born expired, so the first step fails.
    let mut body = by_id("main");
    body["ttl_secs"] = json!(0);
    let m = expect_error(s.run_task(&body).await, 400).await;
    assert!(m.starts_with("run: launch: "), "{m}");
    assert!(m.contains("expired"), "{m}");
}

#[tokio::test]
async fn run_exceeding_ttl_fails() {
    let s = start().await;
    let mut body = inline(lua_blueprint(
        "local t=os.clock() while os.clock()-t<3 do end return 1",
    ));
    body["ttl_secs"] = json!(1);
    let m = expect_error(s.run_task(&body).await, 400).await;
    assert!(m.starts_with("run: launch: run exceeded its TTL"), "{m}");
    s.healthy().await;
}

#[tokio::test]
async fn inline_blueprint_runs_with_null_bound_version() {
    let s = start().await;
    let r = s
        .run_task(&inline(lua_blueprint("return {n = 41 + 1}")))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["final_ctx"], json!({"out": {"n": 42}}));
    assert_eq!(v["bound_version"], Value::Null);
    // Unknown request keys are ignored; `application/*+json` is accepted.
    let mut body = inline(lua_blueprint("return 1"));
    body["extra"] = json!({"ignored": true});
    let r = s
        .client
        .post(s.url("/v1/tasks"))
        .header("content-type", "application/vnd.mse+json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn blueprint_resolution_errors() {
    let s = start().await;
    store(&s, identity_bp("lab", Some("1.2.0"), None, "one-two")).await;
    store(&s, identity_bp("lab", Some("2.0.0"), None, "two")).await;
    store(&s, identity_bp("lab", Some("not-semver"), None, "odd")).await;
    store(&s, identity_bp("gone", None, None, "x")).await;
    s.state.blueprints().archive("gone").await.unwrap();

    let sel = |id: &str, version: Value| json!({"blueprint": {"kind": "id", "id": id, "version": version}, "init_ctx": {}});
    let v: Value = s
        .run_task(&sel("lab", json!({"kind": "semver_req", "req": "^1"})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["final_ctx"]["out"]["echoed"], "one-two");
    let v: Value = s.run_task(&by_id("lab")).await.json().await.unwrap();
    assert_eq!(v["final_ctx"]["out"]["echoed"], "odd");

    expect_error(s.run_task(&by_id("nope")).await, 404).await;
    let m = expect_error(s.run_task(&by_id("gone")).await, 409).await;
    assert!(m.contains("archived"), "{m}");
    expect_error(s.run_task(&by_id("../etc")).await, 400).await;
    expect_error(
        s.run_task(&sel("lab", json!({"kind": "fixed", "value": "xyz"})))
            .await,
        400,
    )
    .await;
    expect_error(
        s.run_task(&sel(
            "lab",
            json!({"kind": "fixed", "value": "ab".repeat(32)}),
        ))
        .await,
        404,
    )
    .await;
    expect_error(
        s.run_task(&sel("lab", json!({"kind": "semver_req", "req": "^^1"})))
            .await,
        400,
    )
    .await;
    expect_error(
        s.run_task(&sel("lab", json!({"kind": "semver_req", "req": "^3"})))
            .await,
        404,
    )
    .await;
    expect_error(
        s.run_task(&sel("lab", json!({"kind": "newest"}))).await,
        422,
    )
    .await;
    // Shape problems of the reference itself.
    expect_error(
        s.run_task(&json!({"blueprint": {"kind": "id"}, "init_ctx": {}}))
            .await,
        422,
    )
    .await;
    expect_error(
        s.run_task(&json!({"blueprint": {"kind": "inline"}, "init_ctx": {}}))
            .await,
        422,
    )
    .await;
    expect_error(
        s.run_task(&json!({"blueprint": {"kind": "id", "id": "main"}}))
            .await,
        422,
    )
    .await;
}

#[tokio::test]
async fn compile_and_flow_failures() {
    let s = start().await;
    let mut bp = lua_blueprint("return 1");
    bp["agents"][0]["kind"] = json!("agent_block");
    let m = expect_error(s.run_task(&inline(bp)).await, 400).await;
    assert!(m.starts_with("run: launch: compile: "), "{m}");

    let bp = json!({"id": "sp", "flow": {"kind": "step", "ref": "sh",
        "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "sh", "kind": "subprocess", "spec": {"program": "true"}}]});
    let m = expect_error(s.run_task(&inline(bp)).await, 400).await;
    assert!(m.contains("allow-subprocess"), "{m}");

    let m = expect_error(
        s.run_task(&inline(lua_blueprint("error('boom')"))).await,
        400,
    )
    .await;
    assert!(m.starts_with("run: launch: flow eval: "), "{m}");
    assert!(m.contains("boom"), "{m}");

    let mut bp = lua_blueprint("return 1");
    bp["agents"][0]["spec"] = json!({"source": "return 1"});
    bp["flow"]["ref"] = json!("missing");
    let m = expect_error(s.run_task(&inline(bp)).await, 400).await;
    assert!(m.starts_with("run: launch: compile: "), "{m}");
}

#[tokio::test]
async fn operator_checks() {
    let s = start().await;
    let mut body = by_id("main");
    body["operator_sid"] = json!("nobody");
    let m = expect_error(s.run_task(&body).await, 400).await;
    assert_eq!(
        m,
        "operator_sid: no such registered operator session 'nobody'"
    );

    let mut body = by_id("main");
    body["operator"] = json!({"kind": "MainAi"});
    let m = expect_error(s.run_task(&body).await, 400).await;
    assert!(
        m.starts_with("operator kind: unknown value 'MainAi'"),
        "{m}"
    );

    let mut body = by_id("main");
    body["operator"] = json!({"per_agent_kinds": {"identity": "boss"}});
    expect_error(s.run_task(&body).await, 400).await;

    // Valid operator settings, and a registered operator_sid, run normally.
    let _op = register_operator(&s.state, "lead");
    let mut body = by_id("main");
    body["operator"] = json!({"kind": "main_ai", "id": "ci-bot",
        "per_agent_kinds": {"identity": "automate"}, "unknown": 1});
    body["operator_sid"] = json!("lead");
    let r = s.run_task(&body).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn too_many_runs_is_429() {
    let s = start_with(|c| c.limits.max_concurrent_runs = 1).await;
    let slow = spawn_run(
        &s,
        inline(lua_blueprint(
            "local t=os.clock() while os.clock()-t<0.5 do end return 1",
        )),
    );
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    expect_error(s.run_task(&by_id("main")).await, 429).await;
    let (status, _) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(s.run_task(&by_id("main")).await.status(), 200);
}

#[tokio::test]
async fn engine_state_is_reclaimed_after_runs() {
    let s = start_with(|c| c.limits.task_retention = std::time::Duration::from_millis(10)).await;
    for _ in 0..20 {
        assert_eq!(s.run_task(&by_id("main")).await.status(), 200);
    }
    // The sweeper runs every second; give it two ticks.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let stats = s.state.engine().stats();
    assert_eq!(stats.tasks, 0, "{stats:?}");
    assert_eq!(stats.sessions, 0, "{stats:?}");
    assert_eq!(stats.handles, 0, "{stats:?}");
}
