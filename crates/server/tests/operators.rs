//! Operator sessions end to end over real sockets: the `/v1/operators` routes,
//! a multi-step Blueprint served by one WebSocket operator (verdict loop and
//! branch), spawn hooks, senior escalation and session-wide delegation.

mod common;

use common::ops::*;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn path(at: &str) -> Value {
    json!({"op": "path", "at": at})
}

fn lit(v: Value) -> Value {
    json!({"op": "lit", "value": v})
}

fn step(r: &str, input: Value, out: &str) -> Value {
    json!({"kind": "step", "ref": r, "in": input, "out": path(out)})
}

#[tokio::test]
async fn mint_validates_and_claims_roles() {
    let s = start().await;
    let r = s.post_json("/v1/operators", &json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let sid = v["sid"].as_str().unwrap();
    assert!(sid.starts_with("op-") && sid.len() == 39, "{sid}");
    assert_eq!(&sid[17..18], "4", "uuid v4: {sid}");
    let token = v["token"].as_str().unwrap();
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(v["roles"], json!([]));

    let first = s.mint(&["r1"]).await;
    let r = s
        .post_json("/v1/operators", &json!({"roles": ["r2", "r1"]}))
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "roles conflict", "conflicts": ["r1"]})
    );
    // Nothing was claimed by the failed mint.
    s.mint(&["r2"]).await;

    for bad in ["", "op-x", "a b", &"x".repeat(65)] {
        let r = s
            .post_json("/v1/operators", &json!({ "roles": [bad] }))
            .await;
        let m = expect_error(r, 400).await;
        assert!(m.contains("invalid role"), "{m}");
    }
    // Body rules: JSON required, roles must be strings.
    let r = s.client.post(s.url("/v1/operators")).send().await.unwrap();
    expect_error(r, 415).await;
    let r = s
        .client
        .post(s.url("/v1/operators"))
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    expect_error(r, 400).await;
    let r = s.post_json("/v1/operators", &json!({"roles": [1]})).await;
    expect_error(r, 422).await;

    // After DELETE the role is free again.
    let r = s.op_delete(&first.sid, &first.token).await;
    assert_eq!(r.status(), 204);
    s.mint(&["r1"]).await;

    let doctor: Value = s
        .client
        .get(s.url("/v1/doctor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doctor["operators"]["sessions"], 3);
    assert_eq!(doctor["operators"]["public_base_url"], s.base);
    assert_eq!(doctor["limits"]["operator_reconnect_grace_ms"], 30_000);
    assert_eq!(doctor["limits"]["operator_ping_interval_ms"], 30_000);
}

#[tokio::test]
async fn session_routes_check_bearer_then_sid_then_token() {
    let s = start().await;
    let login = s.mint(&[]).await;
    let unknown = "op-00000000-0000-4000-8000-000000000000";
    let info = format!("/v1/operators/{}", login.sid);

    // Missing, wrong scheme, empty: 401 (even for an unknown sid).
    for auth in [
        None,
        Some("bearer x"),
        Some("Basic x"),
        Some("Bearer "),
        Some("Bearer    "),
    ] {
        let mut req = s.client.get(s.url(&format!("/v1/operators/{unknown}")));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let m = expect_error(req.send().await.unwrap(), 401).await;
        assert_eq!(m, "missing or empty Bearer token");
    }
    let m = expect_error(s.op_get(unknown, &login.token).await, 404).await;
    assert_eq!(m, "unknown sid");
    let m = expect_error(s.op_get(&login.sid, "0123456789").await, 401).await;
    assert_eq!(m, "token mismatch");
    expect_error(s.op_delete(unknown, &login.token).await, 404).await;
    expect_error(s.op_delete(&login.sid, "nope").await, 401).await;
    let r = s.client.delete(s.url(&info)).send().await.unwrap();
    expect_error(r, 401).await;

    // The token is trimmed.
    let r = s
        .client
        .get(s.url(&info))
        .header("authorization", format!("Bearer  {} ", login.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"sid": login.sid, "roles": [], "connected": false})
    );

    // WebSocket: a plain GET fails the handshake check first, as JSON.
    let r = s
        .client
        .get(s.url(&format!("/v1/operators/{unknown}/ws")))
        .send()
        .await
        .unwrap();
    let (status, m) = error_of(r).await;
    assert!((400..500).contains(&status), "{status} {m}");
    assert!(m.contains("WebSocket"), "{m}");
    let r = s
        .client
        .post(s.url(&format!("/v1/operators/{}/ws", login.sid)))
        .send()
        .await
        .unwrap();
    expect_error(r, 405).await;
    // Then bearer, sid, token.
    let bearer = format!("Bearer {}", login.token);
    assert_eq!(s.try_ws(&login.sid, None).await.err().unwrap().0, 401);
    assert_eq!(
        s.try_ws(&login.sid, Some("Bearer ")).await.err().unwrap().0,
        401
    );
    let (status, body) = s.try_ws(unknown, Some(&bearer)).await.err().unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": "unknown sid"})
    );
    assert_eq!(
        s.try_ws(&login.sid, Some("Bearer wrong"))
            .await
            .err()
            .unwrap()
            .0,
        401
    );
    let _ws = s.connect(&login).await;

    // DELETE, then everything is 404.
    assert_eq!(s.op_delete(&login.sid, &login.token).await.status(), 204);
    expect_error(s.op_get(&login.sid, &login.token).await, 404).await;
    expect_error(s.op_delete(&login.sid, &login.token).await, 404).await;
    assert_eq!(
        s.try_ws(&login.sid, Some(&bearer)).await.err().unwrap().0,
        404
    );
}

#[tokio::test]
async fn admin_token_guards_minting_only() {
    let s = start_with(|c| c.admin_token = Some("adm1n".into())).await;
    let r = s.post_json("/v1/operators", &json!({})).await;
    expect_error(r, 401).await;
    let r = s
        .client
        .post(s.url("/v1/operators"))
        .bearer_auth("adm1n")
        .json(&json!({"roles": ["main-ai"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let login = Login {
        sid: v["sid"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    };
    // The session's own routes take its login token, not the admin token.
    assert_eq!(s.op_get(&login.sid, &login.token).await.status(), 200);
    expect_error(s.op_get(&login.sid, "adm1n").await, 401).await;
    let _ws = s.connect(&login).await;
    assert!(s.connected(&login).await);
}

/// writer → reviewer in a loop until the verdict is PASS, then a branch that
/// publishes. Every agent is an operator agent of role `main-ai`; the system
/// prompts tell the operator's SubAgent what to do.
fn review_blueprint() -> Value {
    let agent = |name: &str, system: &str| {
        json!({"name": name, "kind": "operator", "spec": {"operator_ref": "main-ai"},
               "profile": {"system_prompt": system}})
    };
    json!({
        "id": "review-loop",
        "operators": [{"name": "main-ai"}],
        "agents": [
            agent("writer", "ROLE=writer TOPIC={{ topic }} ROUND={{ round }}"),
            agent("reviewer", "ROLE=reviewer Give a verdict on: {{ draft }}"),
            agent("publisher", "ROLE=publisher {{ directive }}"),
            agent("archiver", "ROLE=archiver {{ directive }}"),
        ],
        "flow": {"kind": "seq", "children": [
            {"kind": "assign", "at": path("$.verdict"), "value": lit(json!("none"))},
            {"kind": "loop", "counter": path("$.round"), "max": 5,
             "cond": {"op": "ne", "lhs": path("$.verdict"), "rhs": lit(json!("PASS"))},
             "body": {"kind": "seq", "children": [
                 step("writer", path("$"), "$.draft"),
                 step("reviewer", path("$"), "$.verdict"),
             ]}},
            {"kind": "branch",
             "cond": {"op": "eq", "lhs": path("$.verdict"), "rhs": lit(json!("PASS"))},
             "then": step("publisher", path("$.draft"), "$.published"),
             "else": step("archiver", path("$.draft"), "$.published")},
        ]}
    })
}

/// The SubAgent's behaviour, read off its system prompt.
fn subagent(system: Option<&str>, prompt: &str) -> String {
    let system = system.expect("operator agents have a system prompt");
    let field = |key: &str| {
        system
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap()
            .to_string()
    };
    match field("ROLE=").as_str() {
        "writer" => format!("draft-v{} about {}", field("ROUND="), field("TOPIC=")),
        // Two rounds of RETRY, then PASS.
        "reviewer" => {
            let ctx: Value = serde_json::from_str(prompt).unwrap();
            if ctx["draft"].as_str().unwrap().starts_with("draft-v2") {
                "PASS".into()
            } else {
                "RETRY".into()
            }
        }
        "publisher" => format!("PUBLISHED {prompt}"),
        other => panic!("unexpected role {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_serves_a_verdict_loop_and_a_branch() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    let ws = s.connect(&login).await;
    let operator = tokio::spawn(serve_spawns(s.http(), ws, subagent));

    let mut body = inline(review_blueprint());
    body["init_ctx"] = json!({"topic": "rust"});
    let r = s.run_task(&body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["final_ctx"],
        json!({
            "topic": "rust",
            "verdict": "PASS",
            "round": 3,
            "draft": "draft-v2 about rust",
            "published": "PUBLISHED draft-v2 about rust"
        })
    );

    assert_eq!(s.op_delete(&login.sid, &login.token).await.status(), 204);
    let served = operator.await.unwrap();
    let agents: Vec<&str> = served
        .iter()
        .map(|v| v["agent"].as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        [
            "writer",
            "reviewer",
            "writer",
            "reviewer",
            "writer",
            "reviewer",
            "publisher"
        ]
    );
    for v in &served {
        let req_id = v["req_id"].as_str().unwrap();
        assert!(
            req_id.starts_with(&format!("{}-spawn-", login.sid)),
            "{req_id}"
        );
        assert_eq!(v["attempt"], 1);
        assert!(v["capability_token"].as_str().unwrap().len() > 20);
        assert!(v.get("parent_req_id").is_none());
        let d = v["directive"].as_str().unwrap();
        assert!(d.starts_with(&format!(
            "[agent_primitive dispatch=@{}]",
            v["agent"].as_str().unwrap()
        )));
        assert!(d.contains(v["task_id"].as_str().unwrap()));
        // The directive names this server's real address.
        assert!(d.contains(&format!("{}/v1/worker/prompt", s.base)), "{d}");
        assert!(d.contains("/v1/worker/submit"));
    }
}

#[tokio::test]
async fn inline_acks_and_ack_errors() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;
    let bp = json!({"id": "one", "operators": [{"name": "main-ai"}],
        "agents": [{"name": "rev", "kind": "operator", "spec": {"operator_ref": "main-ai"}}],
        "flow": step("rev", lit(json!("x")), "$.out")});

    let run = spawn_run(&s, inline(bp.clone()));
    let spawn = expect(&mut ws, "spawn").await;
    ack(&mut ws, &spawn, json!({"x": 1})).await;
    assert_eq!(
        run.await.unwrap(),
        (
            200,
            json!({"final_ctx": {"out": {"x": 1}}, "bound_version": null, "effective_ttl_secs": 1800, "ttl_source": "server_default"})
        )
    );

    let run = spawn_run(&s, inline(bp));
    let spawn = expect(&mut ws, "spawn").await;
    send_json(
        &mut ws,
        json!({"type": "spawn_ack", "req_id": spawn["req_id"], "error": "boom"}),
    )
    .await;
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 400);
    let m = v["error"].as_str().unwrap();
    assert!(m.contains("boom") && m.contains(&login.sid), "{m}");
}

#[tokio::test]
async fn directives_name_the_configured_public_url() {
    let s = start_with(|c| c.public_base_url = Some("https://mse.example.org/".into())).await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;
    let bp = json!({"id": "one", "operators": [{"name": "main-ai"}],
        "agents": [{"name": "rev", "kind": "operator", "spec": {"operator_ref": "main-ai"}}],
        "flow": step("rev", lit(json!("x")), "$.out")});
    let run = spawn_run(&s, inline(bp));
    let spawn = expect(&mut ws, "spawn").await;
    let d = spawn["directive"].as_str().unwrap();
    assert!(
        d.contains("GET https://mse.example.org/v1/worker/prompt?task_id="),
        "{d}"
    );
    assert!(
        d.contains("POST https://mse.example.org/v1/worker/submit"),
        "{d}"
    );
    ack(&mut ws, &spawn, json!(1)).await;
    assert_eq!(run.await.unwrap().0, 200);
}

fn lua_step(source: &str, layers: &[&str]) -> Value {
    let mut bp = lua_blueprint(source);
    bp["spawner_hints"] = json!({ "layers": layers });
    bp
}

#[tokio::test]
async fn hooks_gate_and_observe_steps() {
    let s = start().await;
    let login = s.mint(&[]).await;
    let mut ws = s.connect(&login).await;
    let body = |bp: Value| {
        let mut b = inline(bp);
        b["operator"] = json!({"kind": "main_ai", "spawn_hook_id": login.sid});
        b
    };
    let bp = lua_step("return {ok=true, value='fine'}", &["main_ai"]);

    let run = spawn_run(&s, body(bp.clone()));
    let hb = expect(&mut ws, "hook_before").await;
    assert_eq!(hb["agent"], "s");
    assert_eq!(hb["attempt"], 1);
    assert!(hb["task_id"].as_str().unwrap().starts_with("T-"));
    assert!(hb["req_id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}-hb-", login.sid)));
    send_json(
        &mut ws,
        json!({"type": "hook_ack", "req_id": hb["req_id"], "ok": true}),
    )
    .await;
    let ha = expect(&mut ws, "hook_after").await;
    assert_eq!(ha["task_id"], hb["task_id"]);
    assert_eq!(ha["result"], "fine");
    assert!(ha["req_id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}-ha-", login.sid)));
    let (status, v) = run.await.unwrap();
    assert_eq!((status, &v["final_ctx"]), (200, &json!({"out": "fine"})));

    // Rejection: 400 with the reason, no hook_after.
    let run = spawn_run(&s, body(bp.clone()));
    let hb = expect(&mut ws, "hook_before").await;
    send_json(
        &mut ws,
        json!({"type": "hook_ack", "req_id": hb["req_id"], "ok": false, "reason": "frozen today"}),
    )
    .await;
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("frozen today"), "{v}");

    // The next frame belongs to the next run: no hook_after was sent.
    let run = spawn_run(&s, body(bp));
    let hb = expect(&mut ws, "hook_before").await;
    send_json(
        &mut ws,
        json!({"type": "hook_ack", "req_id": hb["req_id"], "ok": true}),
    )
    .await;
    expect(&mut ws, "hook_after").await;
    assert_eq!(run.await.unwrap().0, 200);
}

#[tokio::test]
async fn senior_escalation_answers_become_the_result() {
    let s = start().await;
    let login = s.mint(&["senior"]).await;
    let mut ws = s.connect(&login).await;
    let mut body = inline(lua_step(
        "return {ok=false, value='unsure'}",
        &["senior_escalation"],
    ));
    body["operator"] = json!({"senior_bridge_id": login.sid});
    let run = spawn_run(&s, body);
    let ask = expect(&mut ws, "ask").await;
    assert_eq!(
        ask["question"],
        json!({"reason": "worker reported ok=false", "value": "unsure"})
    );
    assert!(ask["req_id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}-ask-", login.sid)));
    send_json(
        &mut ws,
        json!({"type": "answer", "req_id": ask["req_id"], "value": {"advice": "ship it"}}),
    )
    .await;
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["final_ctx"],
        json!({"out": {"original": "unsure", "senior_answer": {"advice": "ship it"}}})
    );

    // A role alias is not a senior bridge id: no escalation, the step is blocked.
    let mut body = inline(lua_step(
        "return {ok=false, value='unsure'}",
        &["senior_escalation"],
    ));
    body["operator"] = json!({"senior_bridge_id": "senior"});
    let (status, v) = spawn_run(&s, body).await.unwrap();
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("blocked"), "{v}");
}

#[tokio::test]
async fn operator_delegate_by_role_or_sid() {
    let s = start().await;
    let login = s.mint(&["delegate"]).await;
    let mut ws = s.connect(&login).await;
    let bp = json!({"id": "deleg", "spawner_hints": {"layers": ["operator_delegate"]},
        "agents": [{"name": "id", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "flow": step("id", lit(json!("hello")), "$.out")});

    for target in ["delegate", login.sid.as_str()] {
        let mut body = inline(bp.clone());
        body["operator_sid"] = json!(target);
        let run = spawn_run(&s, body);
        let spawn = expect(&mut ws, "spawn").await;
        assert_eq!(spawn["agent"], "id");
        // The SubAgent reads the step's prompt with the handle and submits.
        let http = s.http();
        let handle = spawn["worker_handle"].as_str().unwrap();
        let (system, prompt) = http
            .fetch_prompt(spawn["task_id"].as_str().unwrap(), handle)
            .await;
        assert_eq!((system, prompt.as_str()), (None, "hello"));
        http.submit(handle, format!("delegated via {target}")).await;
        ack(&mut ws, &spawn, json!({})).await;
        let (status, v) = run.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["final_ctx"]["out"], format!("delegated via {target}"));
    }

    // Without the delegation target the rust_fn runs as usual.
    let (status, v) = spawn_run(&s, inline(bp.clone())).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["final_ctx"]["out"]["by"], "baseline-identity");

    // Unknown sid or role, and a minted but never connected session: 400.
    let fresh = s.mint(&["fresh"]).await;
    for unknown in [
        "op-00000000-0000-4000-8000-000000000000",
        "nobody",
        fresh.sid.as_str(),
        "fresh",
    ] {
        let mut body = inline(bp.clone());
        body["operator_sid"] = json!(unknown);
        let m = expect_error(s.run_task(&body).await, 400).await;
        assert!(
            m.contains("no such registered operator session") && m.contains(unknown),
            "{m}"
        );
    }
    // A delegated step while disconnected fails at once.
    drop(ws);
    s.wait_connected(&login, false, Duration::from_secs(5))
        .await;
    let mut body = inline(bp);
    body["operator_sid"] = json!("delegate");
    let m = expect_error(s.run_task(&body).await, 400).await;
    assert!(m.contains("disconnected"), "{m}");
}
