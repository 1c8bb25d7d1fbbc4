//! A sweep of hostile and malformed requests: every answer is a 4xx with a JSON
//! `error` string, and the server keeps answering afterwards.

mod common;

use common::*;
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::json;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    auth: Option<HeaderValue>,
    body: Vec<u8>,
    expect: u16,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    expect: u16,
) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        content_type: Some("application/json"),
        auth: None,
        body: body.into(),
        expect,
    }
}

fn with_auth(mut c: Case, v: &[u8]) -> Case {
    c.auth = Some(HeaderValue::from_bytes(v).unwrap());
    c
}

#[tokio::test]
async fn every_bad_request_is_a_json_4xx() {
    let s = start().await;
    let post = Method::POST;
    let seed = json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {}}).to_string();
    let deep = format!(
        r#"{{"blueprint": {{"kind": "id", "id": "main"}}, "init_ctx": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut unknown_bp_field = serde_json::to_value(inline(lua_blueprint("return 1"))).unwrap();
    unknown_bp_field["blueprint"]["value"]["agents"][0]["colour"] = json!("red");
    let mut unknown_top_field = inline(lua_blueprint("return 1"));
    unknown_top_field["blueprint"]["value"]["extra"] = json!(1);
    let mut bad_flow = inline(lua_blueprint("return 1"));
    bad_flow["blueprint"]["value"]["flow"]["kind"] = json!("jump");

    let mut cases = vec![
        case("invalid json", post.clone(), "/v1/tasks", "{not json", 400),
        case("empty body", post.clone(), "/v1/tasks", "", 400),
        case(
            "trailing garbage",
            post.clone(),
            "/v1/tasks",
            format!("{seed} x"),
            400,
        ),
        case("json array", post.clone(), "/v1/tasks", "[]", 422),
        case(
            "wrong types",
            post.clone(),
            "/v1/tasks",
            r#"{"blueprint": {"kind": "id", "id": 5}, "init_ctx": {}}"#,
            422,
        ),
        case(
            "ttl negative",
            post.clone(),
            "/v1/tasks",
            r#"{"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {}, "ttl_secs": -1}"#,
            422,
        ),
        case(
            "unknown ref kind",
            post.clone(),
            "/v1/tasks",
            r#"{"blueprint": {"kind": "url", "id": "main"}, "init_ctx": {}}"#,
            422,
        ),
        case(
            "unknown blueprint field",
            post.clone(),
            "/v1/tasks",
            unknown_bp_field.to_string(),
            422,
        ),
        case(
            "unknown top-level blueprint field",
            post.clone(),
            "/v1/tasks",
            unknown_top_field.to_string(),
            422,
        ),
        case(
            "bad flow node",
            post.clone(),
            "/v1/tasks",
            bad_flow.to_string(),
            422,
        ),
        case("deep nesting", post.clone(), "/v1/tasks", deep.clone(), 400),
        case(
            "deep nesting in result",
            post.clone(),
            "/v1/worker/result",
            deep,
            400,
        ),
        case(
            "huge body",
            post.clone(),
            "/v1/tasks",
            vec![b' '; 32 * 1024 * 1024],
            413,
        ),
        case(
            "huge submit",
            post.clone(),
            "/v1/worker/submit",
            vec![b'x'; 32 * 1024 * 1024],
            413,
        ),
        case(
            "unknown blueprint id",
            post.clone(),
            "/v1/tasks",
            r#"{"blueprint": {"kind": "id", "id": "no-such"}, "init_ctx": {}}"#,
            404,
        ),
        case(
            "sessions wrong type",
            post.clone(),
            "/v1/sessions",
            r#"{"agent_id": 1, "role": "operator", "ttl_secs": 1}"#,
            422,
        ),
        case(
            "unknown task prompt",
            Method::GET,
            "/v1/worker/prompt?task_id=T-0000000000000000",
            "",
            401,
        ),
        case(
            "prompt without task_id",
            Method::GET,
            "/v1/worker/prompt",
            "",
            400,
        ),
        case(
            "data emit bad body",
            post.clone(),
            "/v1/data/emit",
            r#"{"task_id": 1}"#,
            422,
        ),
        case(
            "data unknown key",
            Method::GET,
            "/v1/data/out-0123456789",
            "",
            404,
        ),
        case("percent garbage", Method::GET, "/v1/data/%ff%fe", "", 400),
    ];
    let mut wrong_ct = case(
        "wrong content type",
        post.clone(),
        "/v1/tasks",
        seed.clone(),
        415,
    );
    wrong_ct.content_type = Some("text/plain");
    cases.push(wrong_ct);
    let mut no_ct = case(
        "no content type",
        post.clone(),
        "/v1/tasks",
        seed.clone(),
        415,
    );
    no_ct.content_type = None;
    cases.push(no_ct);
    for (name, auth) in [
        ("basic scheme", &b"Basic x"[..]),
        ("bare bearer", b"Bearer"),
        ("empty bearer", b"Bearer    "),
        ("lower-case scheme", b"bearer x"),
        ("non-ascii bearer", b"Bearer \xc3\xa9t\xc3\xa9"),
    ] {
        cases.push(with_auth(
            case(name, Method::GET, "/v1/worker/prompt?task_id=T-1", "", 401),
            auth,
        ));
        cases.push(with_auth(
            case(name, post.clone(), "/v1/worker/submit", "x", 401),
            auth,
        ));
        cases.push(with_auth(
            case(
                name,
                post.clone(),
                "/v1/worker/result",
                r#"{"task_id":"T-1","value":1}"#,
                401,
            ),
            auth,
        ));
        cases.push(with_auth(
            case(name, post.clone(), "/v1/data/emit",
                 r#"{"task_id":"T-1","attempt":1,"producer_agent":"p","event":{"type":"progress","stage":"s"}}"#, 401),
            auth,
        ));
        cases.push(with_auth(
            case(name, Method::DELETE, "/v1/sessions", "", 401),
            auth,
        ));
    }
    cases.push(with_auth(
        case(
            "garbage token",
            Method::GET,
            "/v1/worker/prompt?task_id=T-1",
            "",
            400,
        ),
        b"Bearer !!!",
    ));
    cases.push(with_auth(
        case(
            "short handle",
            Method::GET,
            "/v1/worker/prompt?task_id=T-1",
            "",
            401,
        ),
        b"Bearer wh-zz",
    ));

    for c in cases {
        let mut req = s.client.request(c.method.clone(), s.url(&c.path));
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = c.auth.clone() {
            req = req.header("authorization", a);
        }
        if !c.body.is_empty() || c.method == Method::POST {
            req = req.body(c.body.clone());
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", c.name));
        let (status, msg) = error_of(r).await;
        assert_eq!(status, c.expect, "{}: {msg}", c.name);
        assert!(!msg.is_empty(), "{}", c.name);
    }
    s.healthy().await;
    let r = s.run_task(&serde_json::from_str(&seed).unwrap()).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn configured_limits_apply() {
    let s = start_with(|c| {
        c.limits.max_body_bytes = 1024;
        c.limits.max_json_depth = 8;
    })
    .await;
    let big = format!(
        r#"{{"blueprint":{{"kind":"id","id":"main"}},"init_ctx":"{}"}}"#,
        "x".repeat(2000)
    );
    let r = s
        .client
        .post(s.url("/v1/tasks"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413).await;
    let nested = json!({"blueprint": {"kind": "id", "id": "main"},
                        "init_ctx": [[[[[[[[[1]]]]]]]]]});
    let m = expect_error(s.run_task(&nested).await, 400).await;
    assert_eq!(m, "JSON nesting deeper than 8");
    let ok = json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": [[1]]});
    assert_eq!(s.run_task(&ok).await.status(), 200);
}

#[tokio::test]
async fn deepest_accepted_documents_are_handled() {
    let s = start().await;
    // 61 nested `seq` nodes put the innermost step's `in` at JSON depth 127, the most
    // the parser accepts: compile and evaluation must cope (no stack overflow).
    let mut node = json!({"kind": "step", "ref": "identity",
        "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.out"}});
    for _ in 0..61 {
        node = json!({"kind": "seq", "children": [node]});
    }
    let bp = json!({"id": "deep", "flow": node,
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}]});
    let r = s.run_task(&inline(bp.clone())).await;
    assert_eq!(r.status(), 200);
    node = bp["flow"].clone();
    node = json!({"kind": "seq", "children": [node]});
    let mut deeper = bp;
    deeper["flow"] = node;
    let m = expect_error(s.run_task(&inline(deeper)).await, 400).await;
    assert_eq!(m, "JSON nesting deeper than 127");

    // The same bound for a context value.
    let mut v = json!(1);
    for _ in 0..126 {
        v = json!([v]);
    }
    let body = json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {"a": v}});
    let m = expect_error(s.run_task(&body).await, 400).await;
    assert_eq!(m, "JSON nesting deeper than 127");
    s.healthy().await;
}
