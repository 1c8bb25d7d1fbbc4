//! The enhance loop end to end: a real server with the enhance consumer on, a real
//! WebSocket operator session holding the `patch-spawner` role, and only HTTP to
//! drive and observe it (issues, settings, the enhance log, Blueprint history).

mod common;

use common::ops::{ack, Http, Ws};
use common::{expect_error, start_with, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How the test operator answers a patch-spawner spawn.
enum Reply {
    /// Submit this patch over `/v1/worker/submit`, then ack with `{}`.
    Submit(Value),
    /// Ack with the patch as the `spawn_ack` value (no submit).
    Ack(Value),
    /// Never answer.
    Silent,
}

type Rule = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

async fn start_enhance() -> TestServer {
    start_with(|c| {
        c.enhance_enabled = true;
        c.enhance_interval = Duration::from_millis(20);
    })
    .await
}

/// The Blueprint the issues improve.
fn target(id: &str) -> Value {
    json!({"id": id,
        "flow": {"kind": "step", "ref": "echo", "in": {"op": "path", "at": "$.input"},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "echo", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "metadata": {"description": "v0", "version_label": "1.0.0"}})
}

/// The patch for an intent (as in the in-process consumer tests).
fn patch_for(intent: &str) -> Value {
    match intent {
        "broken-ref" => {
            json!({"ops":[{"op":"replace","path":"/flow/ref","value":"ghost"}],"bump":"patch","rationale":"r"})
        }
        "noop" => json!({"ops":[],"bump":"patch","rationale":"nothing"}),
        "invalid" => {
            json!({"ops":[{"op":"frobnicate","path":"/x"}],"bump":"patch","rationale":"r"})
        }
        _ => json!({"ops":[{"op":"replace","path":"/metadata/description","value":intent}],
                    "bump":"minor","rationale":format!("describe: {intent}")}),
    }
}

fn submit_rule() -> Rule {
    Arc::new(|intent: &str| Reply::Submit(patch_for(intent)))
}

/// Mint a `patch-spawner` session, connect it and serve spawns with `rule` in the
/// background. `seen` collects the prompts (parsed ctx JSON) it was given.
struct Op {
    seen: Seen,
    task: JoinHandle<()>,
}

type Seen = Arc<Mutex<Vec<Value>>>;

impl Drop for Op {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn operator(server: &TestServer, rule: Rule) -> Op {
    let login = server.mint(&["patch-spawner"]).await;
    let ws = server.connect(&login).await;
    server
        .wait_connected(&login, true, Duration::from_secs(5))
        .await;
    let seen = Seen::default();
    let task = tokio::spawn(serve(server.http(), ws, rule, seen.clone()));
    Op { seen, task }
}

async fn serve(http: Http, mut ws: Ws, rule: Rule, seen: Seen) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] != "spawn" {
            continue;
        }
        assert_eq!(v["agent"], "patch-spawner", "{v}");
        let handle = v["worker_handle"].as_str().unwrap();
        let task = v["task_id"].as_str().unwrap();
        let (_, prompt) = http.fetch_prompt(task, handle).await;
        let ctx: Value = serde_json::from_str(&prompt).expect("the prompt is the ctx JSON");
        let intent = ctx["issue"]["intent"].as_str().unwrap().to_string();
        seen.lock().unwrap().push(ctx);
        match rule(&intent) {
            Reply::Submit(p) => {
                http.submit(handle, p.to_string()).await;
                ack(&mut ws, &v, json!({})).await;
            }
            Reply::Ack(p) => ack(&mut ws, &v, p).await,
            Reply::Silent => {}
        }
    }
}

async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    let r = s.client.get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put(s: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    s.client.put(s.url(path)).json(body).send().await.unwrap()
}

/// Seed a target Blueprint (label 1.0.0) and return its version.
async fn seed(s: &TestServer, id: &str) -> String {
    let r = s
        .post_json(&format!("/v1/blueprints/{id}"), &target(id))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["version"].as_str().unwrap().to_string()
}

async fn new_issue(s: &TestServer, bp: &str, intent: &str) -> String {
    let r = s
        .post_json("/v1/issues", &json!({"blueprint_id": bp, "intent": intent}))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "pending", "{v}");
    v["issue_id"].as_str().unwrap().to_string()
}

/// Poll the issue until it is applied or rejected (bounded).
async fn terminal(s: &TestServer, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, v) = get(s, &format!("/v1/issues/{id}")).await;
        assert_eq!(status, 200, "{v}");
        if v["status"] == "applied" || v["status"] == "rejected" {
            return v;
        }
        assert!(Instant::now() < deadline, "issue not terminal: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn log_of(s: &TestServer, issue: &str) -> Value {
    let (status, v) = get(s, &format!("/v1/enhance/log/{issue}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn history_count(s: &TestServer, bp: &str) -> u64 {
    let (status, h) = get(s, &format!("/v1/blueprints/{bp}/history")).await;
    assert_eq!(status, 200, "{h}");
    h["count"].as_u64().unwrap()
}

/// Submit `intent` and expect a rejection with no new version; returns the issue's
/// reason and its log entry.
async fn rejected(s: &TestServer, bp: &str, intent: &str) -> (String, Value) {
    let before = history_count(s, bp).await;
    let id = new_issue(s, bp, intent).await;
    let rec = terminal(s, &id, Duration::from_secs(10)).await;
    assert_eq!(rec["status"], "rejected", "{rec}");
    assert_eq!(rec["new_version"], Value::Null);
    let entry = log_of(s, &id).await;
    assert_eq!(entry["status"], "rejected");
    assert_eq!(entry["new_hash"], "");
    assert_eq!(entry["intent"], intent);
    assert_eq!(history_count(s, bp).await, before, "no version written");
    (rec["reason"].as_str().unwrap().to_string(), entry)
}

/// Submit `intent`, expect it applied; returns (issue, head).
async fn applied(s: &TestServer, bp: &str, intent: &str) -> (Value, Value) {
    let id = new_issue(s, bp, intent).await;
    let rec = terminal(s, &id, Duration::from_secs(10)).await;
    assert_eq!(rec["status"], "applied", "{rec}");
    let (_, head) = get(s, &format!("/v1/blueprints/{bp}/head")).await;
    assert_eq!(rec["new_version"], head["version"], "{rec} {head}");
    (rec, head)
}

#[tokio::test]
async fn happy_path() {
    let s = start_enhance().await;
    let op = operator(&s, submit_rule()).await;
    let v0 = seed(&s, "demo").await;

    let (rec, head) = applied(&s, "demo", "describe demo").await;
    let issue = rec["issue_id"].as_str().unwrap();
    let new_hex = rec["new_version"].as_str().unwrap();
    assert_eq!(new_hex.len(), 64);
    assert!(new_hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(new_hex, v0);
    assert_eq!(rec["attempts"], 1);
    assert_eq!(rec["reason"], Value::Null);
    assert_eq!(head["parents"], json!([v0]));
    assert_eq!(head["version_label"], "1.1.0", "minor bump");
    assert_eq!(history_count(&s, "demo").await, 2);
    let (_, one) = get(&s, &format!("/v1/blueprints/demo/versions/{new_hex}")).await;
    assert_eq!(
        one["blueprint"]["metadata"]["description"], "describe demo",
        "{one}"
    );

    let entry = log_of(&s, issue).await;
    assert_eq!(entry["status"], "applied");
    assert_eq!(entry["prev_hash"], v0);
    assert_eq!(entry["new_hash"], new_hex);
    assert_eq!(entry["intent"], "describe demo");
    assert_eq!(entry["rationale"], "describe: describe demo");
    assert_eq!(entry["reasons"], json!([]));
    assert_eq!(entry["verdicts"].as_array().unwrap().len(), 4);
    let (status, list) = get(&s, "/v1/enhance/log?blueprint_id=demo&status=applied").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["issue_id"], issue);
    let (_, list) = get(&s, "/v1/enhance/log?status=rejected").await;
    assert_eq!(list, json!([]));
    let (_, list) = get(&s, "/v1/enhance/log").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // A second issue builds on the new head.
    let (_, head2) = applied(&s, "demo", "again").await;
    assert_eq!(head2["parents"], json!([new_hex]));
    assert_eq!(head2["version_label"], "1.2.0");

    // The issue listing shows both, newest first; status filter works.
    let (_, issues) = get(&s, "/v1/issues?status=applied").await;
    assert_eq!(issues.as_array().unwrap().len(), 2);
    assert_eq!(issues[1]["issue_id"], issue);
    let (status, _) = get(&s, "/v1/issues?status=bogus").await;
    assert_eq!(status, 400);

    // The operator saw the whole ctx: issue, target, verifiers.
    let seen = op.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["issue"]["intent"], "describe demo");
    assert_eq!(seen[0]["issue"]["blueprint_id"], "demo");
    assert_eq!(seen[0]["prev_hash"], v0);
    assert_eq!(seen[0]["prev_bp_json"]["metadata"]["description"], "v0");
    assert_eq!(
        seen[0]["verifiers"],
        json!(["des", "canonical", "noop", "agent-ref"])
    );
}

#[tokio::test]
async fn patch_in_spawn_ack_value() {
    let s = start_enhance().await;
    let _op = operator(&s, Arc::new(|i: &str| Reply::Ack(patch_for(i)))).await;
    let v0 = seed(&s, "demo").await;
    let (rec, head) = applied(&s, "demo", "via ack").await;
    assert_eq!(head["parents"], json!([v0]));
    assert_eq!(head["version_label"], "1.1.0");
    let entry = log_of(&s, rec["issue_id"].as_str().unwrap()).await;
    assert_eq!(entry["status"], "applied");
}

#[tokio::test]
async fn denials() {
    let s = start_enhance().await;
    let _op = operator(&s, submit_rule()).await;
    seed(&s, "demo").await;

    let (reason, entry) = rejected(&s, "demo", "broken-ref").await;
    assert!(reason.starts_with("verifier deny: "), "{reason}");
    assert!(
        reason.contains("agent-ref: unresolved step refs: ghost"),
        "{reason}"
    );
    assert!(entry["verdicts"].as_array().unwrap().contains(
        &json!({"axis":"agent-ref","status":"deny","detail":"unresolved step refs: ghost"})
    ));

    let (reason, _) = rejected(&s, "demo", "noop").await;
    assert_eq!(
        reason,
        "verifier deny: noop: patch is no-op (new_hash == prev_hash)"
    );

    let (reason, entry) = rejected(&s, "demo", "invalid").await;
    assert!(reason.contains("invalid RFC 6902 patch"), "{reason}");
    assert_eq!(entry["reasons"], json!([reason]));

    let r = put(
        &s,
        "/v1/enhance-settings/default",
        &json!({"id": "default", "blueprint_id": "enhance-default", "ttl_secs": 600,
                "verifier_axes": ["des", "bogus"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (reason, entry) = rejected(&s, "demo", "fine").await;
    assert_eq!(reason, "verifier deny: bogus: unknown verifier axis: bogus");
    assert_eq!(entry["verdicts"].as_array().unwrap().len(), 2);

    assert_eq!(history_count(&s, "demo").await, 1);
    let (_, log) = get(&s, "/v1/enhance/log?blueprint_id=demo&status=rejected").await;
    assert_eq!(log.as_array().unwrap().len(), 4);
    let (_, log) = get(&s, "/v1/enhance/log?status=applied").await;
    assert_eq!(log, json!([]));
}

#[tokio::test]
async fn issue_errors() {
    let s = start_enhance().await;
    seed(&s, "demo").await;
    let post = |body: Value| {
        let s = &s;
        async move { s.post_json("/v1/issues", &body).await }
    };
    expect_error(
        post(json!({"blueprint_id": "demo", "intent": "  "})).await,
        400,
    )
    .await;
    expect_error(
        post(json!({"blueprint_id": "nope", "intent": "x"})).await,
        404,
    )
    .await;
    expect_error(
        post(json!({"blueprint_id": "Bad Id!", "intent": "x"})).await,
        400,
    )
    .await;
    let r = s
        .client
        .delete(s.url("/v1/blueprints/demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    expect_error(
        post(json!({"blueprint_id": "demo", "intent": "x"})).await,
        409,
    )
    .await;
    let (status, _) = get(&s, "/v1/issues/h-unknown").await;
    assert_eq!(status, 404);
    let (status, _) = get(&s, "/v1/enhance/log/h-unknown").await;
    assert_eq!(status, 404);
    let (status, _) = get(&s, "/v1/enhance/log?status=pending").await;
    assert_eq!(status, 400);
    let (_, issues) = get(&s, "/v1/issues").await;
    assert_eq!(issues, json!([]), "no issue was created");
}

#[tokio::test]
async fn settings_crud() {
    let s = start_enhance().await;
    let (status, ids) = get(&s, "/v1/enhance-settings").await;
    assert_eq!(status, 200);
    assert_eq!(ids, json!(["default"]), "seeded at bind");
    let (_, d) = get(&s, "/v1/enhance-settings/default").await;
    assert_eq!(d["blueprint_id"], "enhance-default");
    assert_eq!(d["ttl_secs"], 600);
    assert_eq!(
        d["verifier_axes"],
        json!(["des", "canonical", "noop", "agent-ref"])
    );

    let r = s
        .post_json(
            "/v1/enhance-settings",
            &json!({"id": "alt", "blueprint_id": "enhance-default", "ttl_secs": 5,
                    "verifier_axes": ["noop"], "meta": {"k": 1}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "alt");
    assert_eq!(v["verifier_axes"], json!(["noop"]));
    assert_eq!(v["meta"], json!({"k": 1}));
    let (_, ids) = get(&s, "/v1/enhance-settings").await;
    assert_eq!(ids, json!(["alt", "default"]));

    let r = put(
        &s,
        "/v1/enhance-settings/alt",
        &json!({"id": "alt", "blueprint_id": "enhance-default", "ttl_secs": 9}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (_, v) = get(&s, "/v1/enhance-settings/alt").await;
    assert_eq!(v["ttl_secs"], 9);
    assert_eq!(
        v["verifier_axes"],
        json!(["des", "canonical", "noop", "agent-ref"]),
        "a PUT replaces the whole setting"
    );

    let r = put(
        &s,
        "/v1/enhance-settings/alt",
        &json!({"id": "other", "blueprint_id": "enhance-default", "ttl_secs": 9}),
    )
    .await;
    expect_error(r, 400).await;
    let r = s
        .post_json("/v1/enhance-settings", &json!({"id": "x", "ttl_secs": 1}))
        .await;
    expect_error(r, 400).await;
    let r = s
        .post_json(
            "/v1/enhance-settings",
            &json!({"id": "x", "blueprint_id": "missing", "ttl_secs": 1}),
        )
        .await;
    expect_error(r, 404).await;

    let del = |id: &str| {
        s.client
            .delete(s.url(&format!("/v1/enhance-settings/{id}")))
            .send()
    };
    assert_eq!(del("alt").await.unwrap().status(), 204);
    expect_error(del("alt").await.unwrap(), 404).await;
    let (status, _) = get(&s, "/v1/enhance-settings/alt").await;
    assert_eq!(status, 404);
    let (_, ids) = get(&s, "/v1/enhance-settings").await;
    assert_eq!(ids, json!(["default"]));
}

#[tokio::test]
async fn operator_never_answers() {
    let s = start_enhance().await;
    let _op = operator(&s, Arc::new(|_: &str| Reply::Silent)).await;
    seed(&s, "demo").await;
    let r = put(
        &s,
        "/v1/enhance-settings/default",
        &json!({"id": "default", "blueprint_id": "enhance-default", "ttl_secs": 2}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let (reason, entry) = rejected(&s, "demo", "anything").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(took >= Duration::from_millis(1900), "took {took:?}");
    assert_eq!(
        reason,
        "dispatch failed: launch: run exceeded its TTL of 2s"
    );
    assert_eq!(entry["reasons"], json!([reason]));
}

/// 100 issues queued at once over 10 targets; every 5th is a no-op. Each ends
/// exactly once: 100 log entries, 80 new versions.
#[tokio::test]
async fn throughput() {
    let s = start_enhance().await;
    let _op = operator(
        &s,
        Arc::new(|i: &str| {
            if i.ends_with("-noop") {
                Reply::Submit(patch_for("noop"))
            } else {
                Reply::Submit(patch_for(i))
            }
        }),
    )
    .await;
    let targets: Vec<String> = (0..10).map(|t| format!("t{t}")).collect();
    for t in &targets {
        seed(&s, t).await;
    }
    let mut ids = Vec::new();
    for n in 0..100 {
        let intent = if n % 5 == 4 {
            format!("issue {n}-noop")
        } else {
            format!("issue {n}")
        };
        ids.push((new_issue(&s, &targets[n % 10], &intent).await, n % 5 == 4));
    }
    let started = Instant::now();
    for (id, noop) in &ids {
        let rec = terminal(&s, id, Duration::from_secs(180)).await;
        let want = if *noop { "rejected" } else { "applied" };
        assert_eq!(rec["status"], want, "{rec}");
        assert_eq!(rec["attempts"], 1, "{rec}");
    }
    eprintln!("100 issues in {:?}", started.elapsed());
    let (_, log) = get(&s, "/v1/enhance/log?limit=1000").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 100);
    let mut logged: Vec<&str> = log
        .iter()
        .map(|e| e["issue_id"].as_str().unwrap())
        .collect();
    logged.sort_unstable();
    logged.dedup();
    assert_eq!(logged.len(), 100, "one entry per issue");
    let (_, applied) = get(&s, "/v1/enhance/log?status=applied").await;
    assert_eq!(applied.as_array().unwrap().len(), 80);
    let mut versions = 0;
    for t in &targets {
        versions += history_count(&s, t).await - 1;
    }
    assert_eq!(versions, 80, "versions written == issues applied");
    let (_, pending) = get(&s, "/v1/issues?status=pending").await;
    assert_eq!(pending, json!([]));
    let (_, inflight) = get(&s, "/v1/issues?status=in_flight").await;
    assert_eq!(inflight, json!([]));
}

/// An issue taken while no operator holds `patch-spawner` waits (within the TTL)
/// for one to connect instead of being rejected at once; with none at all it is
/// rejected once the TTL is spent, naming the missing role.
#[tokio::test]
async fn waits_for_the_patch_spawner() {
    let s = start_enhance().await;
    let v0 = seed(&s, "demo").await;
    let id = new_issue(&s, "demo", "late operator").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, rec) = get(&s, &format!("/v1/issues/{id}")).await;
    assert_eq!(rec["status"], "in_flight", "{rec}");
    let _op = operator(&s, submit_rule()).await;
    let rec = terminal(&s, &id, Duration::from_secs(10)).await;
    assert_eq!(rec["status"], "applied", "{rec}");
    let (_, head) = get(&s, "/v1/blueprints/demo/head").await;
    assert_eq!(head["parents"], json!([v0]));
    drop(_op);

    let s = start_enhance().await;
    seed(&s, "demo").await;
    let r = put(
        &s,
        "/v1/enhance-settings/default",
        &json!({"id": "default", "blueprint_id": "enhance-default", "ttl_secs": 1}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let (reason, _) = rejected(&s, "demo", "nobody").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        reason.contains("operator_ref 'patch-spawner' not registered"),
        "{reason}"
    );
}
