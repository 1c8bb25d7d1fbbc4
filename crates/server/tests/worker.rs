//! Worker self-fetch end to end: an operator agent's backend hands the worker
//! credentials to the test, which fetches the prompt and posts the result over
//! HTTP; plus every credential failure of `/v1/worker/*`.

mod common;

use common::*;
use mse_engine::{now_unix, CapToken, Role};
use serde_json::{json, Value};

fn forged(token: &str) -> String {
    let mut t = CapToken::decode(token).unwrap();
    let mut sig: Vec<u8> = t.sig_hex.into_bytes();
    sig[0] = if sig[0] == b'0' { b'1' } else { b'0' };
    t.sig_hex = String::from_utf8(sig).unwrap();
    t.encode()
}

async fn prompt(s: &TestServer, task_id: &str, bearer: &str) -> reqwest::Response {
    s.client
        .get(s.url(&format!("/v1/worker/prompt?task_id={task_id}")))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

async fn submit(
    s: &TestServer,
    query: &str,
    bearer: &str,
    body: &'static str,
) -> reqwest::Response {
    s.client
        .post(s.url(&format!("/v1/worker/submit{query}")))
        .bearer_auth(bearer)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn result(s: &TestServer, bearer: &str, body: Value) -> reqwest::Response {
    s.client
        .post(s.url("/v1/worker/result"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn handle_fetch_and_submit() {
    let s = start().await;
    let mut op = register_operator(&s.state, "ext");
    let run = spawn_run(&s, inline(operator_blueprint("ext")));
    let w = next_spawn(&mut op).await;
    assert!(w.handle.starts_with("wh-"));
    assert_eq!(w.system.as_deref(), Some("You review rust."));

    let r = prompt(&s, &w.task_id, &w.handle).await;
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["task_id"], w.task_id);
    assert_eq!(p["attempt"], 1);
    assert_eq!(p["agent"], "rev");
    assert_eq!(p["system"], "You review rust.");
    assert_eq!(p["prompt"], r#"{"topic":"rust"}"#);
    assert_eq!(p["prompt"], w.prompt);

    // The token works too.
    let r = prompt(&s, &w.task_id, &w.token).await;
    assert_eq!(r.status(), 200);

    // A handle bound to another task, an unknown handle, a token for another task.
    let m = expect_error(prompt(&s, "T-0000000000000000", &w.handle).await, 403).await;
    assert!(
        m.contains(&w.task_id) && m.contains("T-0000000000000000"),
        "{m}"
    );
    expect_error(prompt(&s, &w.task_id, "wh-0000000000000000").await, 401).await;
    expect_error(prompt(&s, "T-0000000000000000", &w.token).await, 403).await;

    // A forged signature and an expired (but correctly signed) token.
    expect_error(prompt(&s, &w.task_id, &forged(&w.token)).await, 401).await;
    let expired = s.state.engine().signer().mint(
        &format!("worker-of-{}", w.task_id),
        Role::Worker,
        vec!["*".into()],
        1,
        None,
        now_unix() - 100,
    );
    expect_error(prompt(&s, &w.task_id, &expired.encode()).await, 401).await;
    expect_error(submit(&s, "", &expired.encode(), "x").await, 401).await;
    expect_error(submit(&s, "", &forged(&w.token), "x").await, 401).await;
    // Not a token at all.
    let m = expect_error(prompt(&s, &w.task_id, "not-a-token").await, 400).await;
    assert!(m.starts_with("invalid token: "), "{m}");
    // Bad `ok` before auth; missing task_id.
    expect_error(submit(&s, "?ok=maybe", "garbage", "x").await, 400).await;
    let r = s
        .client
        .get(s.url("/v1/worker/prompt"))
        .bearer_auth(&w.handle)
        .send()
        .await
        .unwrap();
    expect_error(r, 400).await;

    let r = submit(&s, "?ok=true", &w.handle, "  LGTM\n\n").await;
    assert_eq!(r.status(), 204);
    op.release.notify_one();
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["final_ctx"]["out"], "  LGTM");

    // The task ended: its handle and token are revoked.
    expect_error(prompt(&s, &w.task_id, &w.handle).await, 401).await;
    expect_error(submit(&s, "", &w.handle, "late").await, 401).await;
    expect_error(prompt(&s, &w.task_id, &w.token).await, 401).await;
}

#[tokio::test]
async fn token_result_and_submit() {
    let s = start().await;
    let mut op = register_operator(&s.state, "ext");

    // Run 1: /v1/worker/result with the token.
    let run = spawn_run(&s, inline(operator_blueprint("ext")));
    let w = next_spawn(&mut op).await;
    let m = expect_error(
        result(&s, &w.handle, json!({"task_id": w.task_id, "value": 1})).await,
        400,
    )
    .await;
    assert!(m.starts_with("invalid token"), "{m}");
    expect_error(
        result(
            &s,
            &w.token,
            json!({"task_id": "T-0000000000000000", "value": 1}),
        )
        .await,
        403,
    )
    .await;
    expect_error(
        result(
            &s,
            &forged(&w.token),
            json!({"task_id": w.task_id, "value": 1}),
        )
        .await,
        401,
    )
    .await;
    expect_error(
        result(
            &s,
            &w.token,
            json!({"task_id": w.task_id, "value": 1, "attempt": 2}),
        )
        .await,
        409,
    )
    .await;
    expect_error(
        result(&s, &w.token, json!({"task_id": w.task_id})).await,
        422,
    )
    .await;
    let r = s
        .client
        .post(s.url("/v1/worker/result"))
        .json(&json!({"task_id": w.task_id, "value": 1}))
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = result(
        &s,
        &w.token,
        json!({"task_id": w.task_id, "value": {"verdict": "ok"}, "extra": true}),
    )
    .await;
    assert_eq!(r.status(), 204);
    op.release.notify_one();
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["final_ctx"]["out"], json!({"verdict": "ok"}));

    // Run 2: /v1/worker/submit with the token and ok=false blocks the step.
    let run = spawn_run(&s, inline(operator_blueprint("ext")));
    let w = next_spawn(&mut op).await;
    assert_eq!(
        submit(&s, "?ok=false", &w.token, "BLOCKED\n")
            .await
            .status(),
        204
    );
    op.release.notify_one();
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 400, "{v}");
    let m = v["error"].as_str().unwrap();
    assert!(m.contains(r#"blocked: "BLOCKED""#), "{m}");

    // Run 3: without any HTTP result the backend's own value is used.
    let run = spawn_run(&s, inline(operator_blueprint("ext")));
    let _w = next_spawn(&mut op).await;
    op.release.notify_one();
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["final_ctx"]["out"], json!({"from": "backend"}));
}

#[tokio::test]
async fn unknown_credentials_without_runs() {
    let s = start().await;
    expect_error(prompt(&s, "T-0000000000000000", "wh-zz").await, 401).await;
    expect_error(submit(&s, "", "wh-zz", "x").await, 401).await;
    // A correctly signed token the engine never recorded (issued now).
    let t = s.state.engine().signer().mint(
        "worker-of-T-0000000000000000",
        Role::Worker,
        vec!["*".into()],
        60,
        None,
        now_unix(),
    );
    expect_error(prompt(&s, "T-0000000000000000", &t.encode()).await, 401).await;
    expect_error(
        result(
            &s,
            &t.encode(),
            json!({"task_id": "T-0000000000000000", "value": null}),
        )
        .await,
        401,
    )
    .await;
    // Padded base64 is not a token.
    let m = expect_error(prompt(&s, "T-1", &format!("{}=", t.encode())).await, 400).await;
    assert!(m.contains("base64"), "{m}");
}
