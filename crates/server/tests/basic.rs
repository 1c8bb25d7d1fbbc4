//! Health, doctor, sessions, routing fallbacks and the optional admin token.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn healthz_and_head() {
    let s = start().await;
    let r = s.client.get(s.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = s.client.head(s.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn doctor_redacts_secrets() {
    let s = start_with(|c| c.admin_token = Some("very-secret-admin".into())).await;
    let r = s.client.get(s.url("/v1/doctor")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("very-secret-admin"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["token_secret"], "<redacted>");
    assert_eq!(v["admin_token"], "<redacted>");
    assert_eq!(v["bind"], s.base.trim_start_matches("http://"));
    assert_eq!(v["registered_blueprint_ids"], json!(["main"]));
    assert_eq!(v["registered_blueprint_count"], 1);
    assert_eq!(v["stores"]["blueprints"], "memory");
    assert_eq!(v["allow_subprocess"], false);
    assert_eq!(v["limits"]["max_body_bytes"], 16 * 1024 * 1024);
    assert!(v["engine"]["tasks"].is_u64());
    assert!(v["version"].is_string());

    let s = start().await;
    let v: Value = s
        .client
        .get(s.url("/v1/doctor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["admin_token"], Value::Null);
}

#[tokio::test]
async fn sessions_attach_and_detach() {
    let s = start().await;
    let r = s
        .post_json(
            "/v1/sessions",
            &json!({"agent_id": "cli", "role": "Operator", "ttl_secs": 60}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["role"], "Operator");
    let sid = v["session_id"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()));

    let r = s
        .post_json(
            "/v1/sessions",
            &json!({"agent_id": "cli", "role": "observer", "ttl_secs": 60}),
        )
        .await;
    assert_eq!(r.status(), 200);

    for role in ["senior", "worker", "WORKER"] {
        let r = s
            .post_json(
                "/v1/sessions",
                &json!({"agent_id": "x", "role": role, "ttl_secs": 60}),
            )
            .await;
        expect_error(r, 403).await;
    }
    let r = s
        .post_json(
            "/v1/sessions",
            &json!({"agent_id": "x", "role": "Boss", "ttl_secs": 60}),
        )
        .await;
    assert_eq!(expect_error(r, 400).await, "unknown role: boss");
    let r = s
        .post_json(
            "/v1/sessions",
            &json!({"agent_id": "x", "role": "operator"}),
        )
        .await;
    expect_error(r, 422).await;

    let del = |sid: &str| {
        s.client
            .delete(s.url("/v1/sessions"))
            .bearer_auth(sid)
            .send()
    };
    assert_eq!(del(&sid).await.unwrap().status(), 204);
    expect_error(del(&sid).await.unwrap(), 404).await;
    expect_error(del("0123456789abcdef0123456789abcdef").await.unwrap(), 404).await;
    let r = s.client.delete(s.url("/v1/sessions")).send().await.unwrap();
    expect_error(r, 401).await;

    // An already-expired session is consumed and reported as expired.
    let v: Value = s
        .post_json(
            "/v1/sessions",
            &json!({"agent_id": "cli", "role": "operator", "ttl_secs": 0}),
        )
        .await
        .json()
        .await
        .unwrap();
    let sid = v["session_id"].as_str().unwrap();
    expect_error(del(sid).await.unwrap(), 401).await;
    expect_error(del(sid).await.unwrap(), 404).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let s = start().await;
    for path in ["/nope", "/v1/healthz/", "/v1/tasks/x", "/"] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        expect_error(r, 404).await;
    }
    let r = s.client.get(s.url("/v1/tasks")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    expect_error(r, 405).await;
    let r = s.client.get(s.url("/v1/data/emit")).send().await.unwrap();
    expect_error(r, 405).await;
    let r = s.client.put(s.url("/v1/sessions")).send().await.unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    assert!(
        allow.contains("POST") && allow.contains("DELETE"),
        "{allow}"
    );
    expect_error(r, 405).await;
    let r = s.client.post(s.url("/v1/healthz")).send().await.unwrap();
    expect_error(r, 405).await;
}

#[tokio::test]
async fn admin_token_guards_state_changing_routes() {
    const ADMIN: &str = "admin-0123456789";
    let s = start_with(|c| c.admin_token = Some(ADMIN.into())).await;
    let seed = json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {}});

    // /v1/tasks
    expect_error(s.run_task(&seed).await, 401).await;
    let r = s
        .client
        .post(s.url("/v1/tasks"))
        .bearer_auth("wrong")
        .json(&seed)
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = s
        .client
        .post(s.url("/v1/tasks"))
        .bearer_auth(ADMIN)
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .post(s.url("/v1/tasks"))
        .header("x-admin-token", ADMIN)
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The admin check comes before the body.
    let r = s
        .client
        .post(s.url("/v1/tasks"))
        .body("not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;

    // /v1/sessions
    let attach = json!({"agent_id": "a", "role": "operator", "ttl_secs": 60});
    expect_error(s.post_json("/v1/sessions", &attach).await, 401).await;
    let v: Value = s
        .client
        .post(s.url("/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&attach)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = v["session_id"].as_str().unwrap();
    let r = s
        .client
        .delete(s.url("/v1/sessions"))
        .bearer_auth(sid)
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = s
        .client
        .delete(s.url("/v1/sessions"))
        .bearer_auth(sid)
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Data reads need a credential; health and doctor stay open.
    let r = s
        .client
        .get(s.url("/v1/data/out-0000000000"))
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = s
        .client
        .get(s.url("/v1/data/out-0000000000"))
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap();
    expect_error(r, 404).await;
    s.healthy().await;
    let r = s.client.get(s.url("/v1/doctor")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn without_admin_token_everything_is_open() {
    let s = start().await;
    let seed = json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {}});
    assert_eq!(s.run_task(&seed).await.status(), 200);
    let r = s
        .client
        .get(s.url("/v1/data/nothing"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404).await;
}
