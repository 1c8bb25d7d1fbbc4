//! The Blueprint routes (`/v1/blueprints/*`, `/v1/schema/blueprint`) and
//! `POST /v1/tasks` by id: success and error paths, concurrent registration,
//! the admin token, the compiled-Blueprint cache and `$file`/`$agent_md` expansion
//! with its sandbox.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-step identity Blueprint echoing `echo`, optionally labelled.
fn bp(id: &str, label: Option<&str>, echo: &str) -> Value {
    let mut v = json!({
        "id": id,
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": echo},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}]
    });
    if let Some(l) = label {
        v["metadata"] = json!({"version_label": l});
    }
    v
}

async fn seed(s: &TestServer, id: &str, body: &Value) -> reqwest::Response {
    s.post_json(&format!("/v1/blueprints/{id}"), body).await
}

/// Seed and expect 201; returns the version.
async fn seed_new(s: &TestServer, id: &str, body: &Value) -> String {
    let r = seed(s, id, body).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["seeded"], true);
    v["version"].as_str().unwrap().to_string()
}

async fn get(s: &TestServer, path: &str) -> reqwest::Response {
    s.client.get(s.url(path)).send().await.unwrap()
}

async fn get_json(s: &TestServer, path: &str) -> Value {
    let r = get(s, path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

fn is_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// A raw HTTP/1.1 request (reqwest normalizes `..` and `%2E%2E` segments away).
async fn raw(s: &TestServer, method: &str, path: &str) -> (u16, String) {
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Runs each scenario against the in-memory and the SQLite stores.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::start().await).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::start_sqlite().await).await
                }
            )*
        }
    };
}

on_both_backends!(
    seed_is_idempotent_and_advances_the_head,
    unknown_and_malformed_versions,
    archive_and_unarchive,
    tasks_by_id_with_every_selector,
    concurrent_seeds_on_one_id_never_lose_a_write,
    invalid_ids_are_400_on_every_route,
);

fn run_by_id(id: &str, version: Value) -> Value {
    json!({"blueprint": {"kind": "id", "id": id, "version": version}, "init_ctx": {}})
}

async fn seed_is_idempotent_and_advances_the_head(s: TestServer) {
    let r = seed(&s, "review", &bp("review", Some("1.0.0"), "one")).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "review");
    assert_eq!(v["seeded"], true);
    assert_eq!(v["parent"], Value::Null);
    assert!(is_hex64(&v["version"]), "{v}");
    let v1 = v["version"].as_str().unwrap().to_string();

    // Identical content: 200, no write.
    let r = seed(&s, "review", &bp("review", Some("1.0.0"), "one")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"id": "review", "version": v1, "seeded": false}));

    // New content: 201 on top of the old head.
    let r = seed(&s, "review", &bp("review", Some("1.1.0"), "two")).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["parent"], v1);
    let v2 = v["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);

    let head = get_json(&s, "/v1/blueprints/review/head").await;
    assert_eq!(head["id"], "review");
    assert_eq!(head["version"], v2);
    assert_eq!(head["version_label"], "1.1.0");
    assert_eq!(head["parents"], json!([v1]));
    assert_eq!(head["rationale"], "seed");
    assert!(head["created_at_ms"].as_i64().unwrap() > 0);
    // The Blueprint with every default materialized.
    assert_eq!(head["blueprint"]["id"], "review");
    assert_eq!(head["blueprint"]["schema_version"], "0.1.0");
    assert_eq!(head["blueprint"]["strategy"]["strict_refs"], true);
    assert_eq!(head["blueprint"]["flow"]["in"]["value"], "two");

    let hist = get_json(&s, "/v1/blueprints/review/history").await;
    assert_eq!(hist["count"], 2);
    let e = &hist["entries"];
    assert_eq!(e[0]["hash"], v2);
    assert_eq!(e[0]["version"], v2);
    assert_eq!(e[0]["version_label"], "1.1.0");
    assert_eq!(e[0]["rationale"], "seed");
    assert_eq!(e[0]["parents"], json!([v1]));
    assert_eq!(e[1]["hash"], v1);
    assert_eq!(e[1]["parents"], json!([]));
    let hist = get_json(&s, "/v1/blueprints/review/history?limit=1").await;
    assert_eq!(hist["count"], 1);
    assert_eq!(hist["entries"][0]["hash"], v2);
    let hist = get_json(&s, "/v1/blueprints/review/history?limit=0").await;
    assert_eq!(hist, json!({"count": 0, "entries": []}));
    // Unknown id: empty, like the reference.
    let hist = get_json(&s, "/v1/blueprints/nobody/history").await;
    assert_eq!(hist, json!({"count": 0, "entries": []}));

    // One version, lower or upper case hex.
    for v in [v1.clone(), v1.to_uppercase()] {
        let one = get_json(&s, &format!("/v1/blueprints/review/versions/{v}")).await;
        assert_eq!(one["version"], v1);
        assert_eq!(one["version_label"], "1.0.0");
        assert_eq!(one["blueprint"]["flow"]["in"]["value"], "one");
    }

    // A -> B -> A: a new entry whose hash equals A's.
    let r = seed(&s, "review", &bp("review", Some("1.0.0"), "one")).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"], v1);
    assert_eq!(v["parent"], v2);
    let hist = get_json(&s, "/v1/blueprints/review/history").await;
    assert_eq!(hist["count"], 3);

    let list = get_json(&s, "/v1/blueprints").await;
    assert_eq!(
        list,
        json!([
            {"id": "main", "head": list[0]["head"], "version_label": "0.1.0", "archived": false},
            {"id": "review", "head": v1, "version_label": "1.0.0", "archived": false},
        ])
    );
    assert!(is_hex64(&list[0]["head"]));
}

#[tokio::test]
async fn seed_errors() {
    let s = start().await;
    let m = expect_error(seed(&s, "x", &bp("y", None, "a")).await, 400).await;
    assert_eq!(m, "path id=x != body.id=y");
    let m = expect_error(seed(&s, "x", &json!({"id": "x"})).await, 400).await;
    assert!(m.starts_with("blueprint parse: "), "{m}");
    assert!(m.contains("flow"), "{m}");
    let mut extra = bp("x", None, "a");
    extra["bogus"] = json!(1);
    let m = expect_error(seed(&s, "x", &extra).await, 400).await;
    assert!(
        m.starts_with("blueprint parse: ") && m.contains("bogus"),
        "{m}"
    );
    let m = expect_error(seed(&s, "x", &json!([1])).await, 400).await;
    assert!(m.starts_with("blueprint parse: "), "{m}");
    // Not JSON / not declared as JSON.
    let r = s
        .client
        .post(s.url("/v1/blueprints/x"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    expect_error(r, 400).await;
    let r = s
        .client
        .post(s.url("/v1/blueprints/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(r, 415).await;
    // Nothing was written.
    let hist = get_json(&s, "/v1/blueprints/x/history").await;
    assert_eq!(hist["count"], 0);
}

async fn invalid_ids_are_400_on_every_route(s: TestServer) {
    let long = "a".repeat(129);
    for id in ["a%2Fb", long.as_str(), "a%20b", "%C3%A9"] {
        let m = expect_error(seed(&s, id, &bp("a/b", None, "x")).await, 400).await;
        assert!(m.contains("invalid blueprint id"), "{id}: {m}");
        for path in [
            format!("/v1/blueprints/{id}/head"),
            format!("/v1/blueprints/{id}/history"),
            format!("/v1/blueprints/{id}/versions/{}", "0".repeat(64)),
        ] {
            let m = expect_error(get(&s, &path).await, 400).await;
            assert!(m.contains("invalid blueprint id"), "{path}: {m}");
        }
        let r = s
            .client
            .delete(s.url(&format!("/v1/blueprints/{id}")))
            .send()
            .await
            .unwrap();
        expect_error(r, 400).await;
        let r = s
            .post_json(&format!("/v1/blueprints/{id}/unarchive"), &json!({}))
            .await;
        expect_error(r, 400).await;
        let r = s.run_task(&run_by_id(id, json!({"kind": "latest"}))).await;
        expect_error(r, 400).await;
    }
    // `..` and `.` sent verbatim (an HTTP client would normalize them away).
    for id in ["..", ".", "%2E%2E"] {
        let (status, body) = raw(&s, "GET", &format!("/v1/blueprints/{id}/head")).await;
        assert_eq!(status, 400, "{id}: {body}");
        assert!(body.contains("invalid blueprint id"), "{body}");
        let (status, _) = raw(&s, "POST", &format!("/v1/blueprints/{id}")).await;
        assert_eq!(status, 400, "{id}");
        let (status, _) = raw(&s, "DELETE", &format!("/v1/blueprints/{id}")).await;
        assert_eq!(status, 400, "{id}");
    }
    // 128 characters of the allowed set are fine.
    let ok = format!("A.b_c-{}", "9".repeat(122));
    assert_eq!(ok.len(), 128);
    seed_new(&s, &ok, &bp(&ok, None, "x")).await;
    get_json(&s, &format!("/v1/blueprints/{ok}/head")).await;
}

async fn unknown_and_malformed_versions(s: TestServer) {
    let v1 = seed_new(&s, "v", &bp("v", None, "x")).await;
    let unknown = "ab".repeat(32);
    for bad in [
        "zz",
        "abc",
        &"a".repeat(63),
        &"g".repeat(64),
        &"a".repeat(65),
    ] {
        let m = expect_error(
            get(&s, &format!("/v1/blueprints/v/versions/{bad}")).await,
            400,
        )
        .await;
        assert!(m.contains("64 hex"), "{m}");
    }
    let m = expect_error(
        get(&s, &format!("/v1/blueprints/v/versions/{unknown}")).await,
        404,
    )
    .await;
    assert!(m.contains("not found"), "{m}");
    expect_error(
        get(&s, &format!("/v1/blueprints/nobody/versions/{v1}")).await,
        404,
    )
    .await;
    expect_error(get(&s, "/v1/blueprints/nobody/head").await, 404).await;
    // history: a bad limit is a 400, a huge one is capped.
    expect_error(get(&s, "/v1/blueprints/v/history?limit=-1").await, 400).await;
    expect_error(get(&s, "/v1/blueprints/v/history?limit=x").await, 400).await;
    let h = get_json(&s, "/v1/blueprints/v/history?limit=1000000").await;
    assert_eq!(h["count"], 1);
}

async fn archive_and_unarchive(s: TestServer) {
    let del = |id: &str| {
        s.client
            .delete(s.url(&format!("/v1/blueprints/{id}")))
            .send()
    };
    expect_error(del("nobody").await.unwrap(), 404).await;
    expect_error(
        s.post_json("/v1/blueprints/nobody/unarchive", &json!({}))
            .await,
        404,
    )
    .await;
    let v1 = seed_new(&s, "arch", &bp("arch", Some("1.0.0"), "x")).await;
    assert_eq!(del("arch").await.unwrap().status(), 204);
    assert_eq!(del("arch").await.unwrap().status(), 204, "idempotent");

    let m = expect_error(get(&s, "/v1/blueprints/arch/head").await, 409).await;
    assert!(m.contains("archived"), "{m}");
    let m = expect_error(seed(&s, "arch", &bp("arch", None, "new")).await, 409).await;
    assert_eq!(
        m,
        "blueprint arch is archived; POST /v1/blueprints/arch/unarchive first"
    );
    // Identical content is refused too while archived.
    expect_error(seed(&s, "arch", &bp("arch", Some("1.0.0"), "x")).await, 409).await;
    // History and fixed versions still answer.
    let hist = get_json(&s, "/v1/blueprints/arch/history").await;
    assert_eq!(hist["count"], 1);
    get_json(&s, &format!("/v1/blueprints/arch/versions/{v1}")).await;
    let list = get_json(&s, "/v1/blueprints").await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "arch")
        .unwrap();
    assert_eq!(entry["archived"], true);
    let doctor = get_json(&s, "/v1/doctor").await;
    assert_eq!(doctor["registered_blueprint_ids"], json!(["main"]));
    // Runs by id are refused with 409.
    for version in [
        json!({"kind": "latest"}),
        json!({"kind": "fixed", "value": v1}),
        json!({"kind": "semver_req", "req": "^1"}),
    ] {
        let m = expect_error(s.run_task(&run_by_id("arch", version)).await, 409).await;
        assert!(
            m.starts_with("bp resolve: ") && m.contains("archived"),
            "{m}"
        );
    }

    let r = s
        .post_json("/v1/blueprints/arch/unarchive", &json!({}))
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .post_json("/v1/blueprints/arch/unarchive", &json!({}))
        .await;
    assert_eq!(r.status(), 204, "idempotent");
    let head = get_json(&s, "/v1/blueprints/arch/head").await;
    assert_eq!(head["version"], v1);
    let r = s
        .run_task(&run_by_id("arch", json!({"kind": "latest"})))
        .await;
    assert_eq!(r.status(), 200);
}

async fn tasks_by_id_with_every_selector(s: TestServer) {
    let v1 = seed_new(&s, "sel", &bp("sel", Some("1.0.0"), "one")).await;
    let v2 = seed_new(&s, "sel", &bp("sel", Some("1.1.0"), "two")).await;
    let v3 = seed_new(&s, "sel", &bp("sel", Some("2.0.0"), "three")).await;
    // An unlabelled and a non-semver label are skipped by semver selection.
    let v4 = seed_new(&s, "sel", &bp("sel", None, "four")).await;
    let v5 = seed_new(&s, "sel", &bp("sel", Some("latest-ish"), "five")).await;

    let run = |version: Value| {
        let body = run_by_id("sel", version);
        let s = &s;
        async move { s.run_task(&body).await }
    };
    for (version, bound, echoed) in [
        (json!({"kind": "latest"}), &v5, "five"),
        (json!({"kind": "fixed", "value": v1}), &v1, "one"),
        (
            json!({"kind": "fixed", "value": v3.to_uppercase()}),
            &v3,
            "three",
        ),
        (json!({"kind": "fixed", "value": v4}), &v4, "four"),
        (json!({"kind": "semver_req", "req": "^1"}), &v2, "two"),
        (json!({"kind": "semver_req", "req": "~1.0"}), &v1, "one"),
        (
            json!({"kind": "semver_req", "req": ">=1.0.0"}),
            &v3,
            "three",
        ),
    ] {
        let r = run(version.clone()).await;
        assert_eq!(r.status(), 200, "{version}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(&v["bound_version"], bound, "{version}");
        assert_eq!(v["final_ctx"]["out"]["echoed"], echoed, "{version}");
    }
    // Version omitted = latest.
    let r = s
        .run_task(&json!({"blueprint": {"kind": "id", "id": "sel"}, "init_ctx": {}}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["bound_version"], v5);

    let unknown = "cd".repeat(32);
    for (version, status, needle) in [
        (json!({"kind": "fixed", "value": "xyz"}), 400, "64 hex"),
        (
            json!({"kind": "fixed", "value": "a".repeat(63)}),
            400,
            "64 hex",
        ),
        (json!({"kind": "fixed", "value": unknown}), 404, "not found"),
        (
            json!({"kind": "semver_req", "req": "not a req!"}),
            400,
            "semver",
        ),
        (json!({"kind": "semver_req", "req": "^3"}), 404, "matches"),
    ] {
        let m = expect_error(run(version.clone()).await, status).await;
        assert!(
            m.starts_with("bp resolve: ") && m.contains(needle),
            "{version}: {m}"
        );
    }
    let m = expect_error(
        s.run_task(&run_by_id("nobody", json!({"kind": "latest"})))
            .await,
        404,
    )
    .await;
    assert!(m.contains("not found"), "{m}");
    // A malformed selector is a body error.
    expect_error(run(json!({"kind": "newest"})).await, 422).await;
}

#[tokio::test]
async fn stored_versions_are_compiled_once() {
    let s = start().await;
    seed_new(&s, "c", &bp("c", None, "x")).await;
    let before = s.state.compiled_cache_len();
    for _ in 0..5 {
        let r = s.run_task(&run_by_id("c", json!({"kind": "latest"}))).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.state.compiled_cache_len(), before + 1);
    // Inline runs do not go through the cache.
    let r = s.run_task(&inline(bp("inl", None, "y"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.state.compiled_cache_len(), before + 1);

    // Operator agents bind the live backend at compile time: never cached.
    let mut op = register_operator(&s.state, "rev-op");
    seed_new(&s, "opflow", &operator_blueprint("rev-op")).await;
    for _ in 0..2 {
        let run = spawn_run(&s, run_by_id("opflow", json!({"kind": "latest"})));
        next_spawn(&mut op).await;
        op.release.notify_one();
        let (status, v) = run.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["final_ctx"]["out"], json!({"from": "backend"}));
    }
    assert_eq!(s.state.compiled_cache_len(), before + 1);
}

async fn concurrent_seeds_on_one_id_never_lose_a_write(s: TestServer) {
    let v0 = seed_new(&s, "race", &bp("race", None, "start")).await;
    let mut runs = Vec::new();
    for i in 0..20 {
        let client = s.client.clone();
        let url = s.url("/v1/blueprints/race");
        let body = bp("race", None, &format!("writer {i}"));
        runs.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut won = Vec::new();
    for r in runs {
        let (status, v) = r.await.unwrap();
        match status {
            201 => won.push(v["version"].as_str().unwrap().to_string()),
            409 => assert!(v["error"].as_str().unwrap().contains("head moved"), "{v}"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(!won.is_empty());
    eprintln!(
        "concurrent seeds: {} of 20 won, the others got 409",
        won.len()
    );
    let hist = get_json(&s, "/v1/blueprints/race/history?limit=100").await;
    let entries = hist["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        won.len() + 1,
        "one entry per 201 plus the first"
    );
    // Linear: every entry's parent is the next older entry.
    for pair in entries.windows(2) {
        assert_eq!(pair[0]["parents"], json!([pair[1]["version"]]));
    }
    assert_eq!(entries.last().unwrap()["version"], v0);
    for v in &won {
        assert!(entries.iter().any(|e| &e["version"] == v), "{v} lost");
    }
}

#[tokio::test]
async fn admin_token_guards_every_write() {
    let s = start_with(|c| c.admin_token = Some("adm1n".into())).await;
    let body = bp("guarded", None, "x");
    let m = expect_error(seed(&s, "guarded", &body).await, 401).await;
    assert!(m.contains("admin token"), "{m}");
    let r = s
        .client
        .post(s.url("/v1/blueprints/guarded"))
        .header("x-admin-token", "wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = s
        .client
        .post(s.url("/v1/blueprints/guarded"))
        .bearer_auth("adm1n")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .delete(s.url("/v1/blueprints/guarded"))
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = s
        .post_json("/v1/blueprints/guarded/unarchive", &json!({}))
        .await;
    expect_error(r, 401).await;
    let r = s
        .client
        .delete(s.url("/v1/blueprints/guarded"))
        .header("x-admin-token", "adm1n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Reads need no credential.
    assert_eq!(get(&s, "/v1/blueprints").await.status(), 200);
    assert_eq!(
        get(&s, "/v1/blueprints/guarded/history").await.status(),
        200
    );
    assert_eq!(get(&s, "/v1/schema/blueprint").await.status(), 200);
}

#[tokio::test]
async fn schema_route_serves_the_blueprint_json_schema() {
    let s = start().await;
    let r = get(&s, "/v1/schema/blueprint").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let schema: Value = r.json().await.unwrap();
    assert_eq!(schema["title"], "Blueprint");
    assert_eq!(schema, mse_blueprint::schema::json_schema());
    for key in ["id", "flow", "agents", "metadata"] {
        assert!(schema["properties"].get(key).is_some(), "{key}");
    }
    // Unknown paths and methods stay JSON 404/405.
    expect_error(get(&s, "/v1/schema/nope").await, 404).await;
    let r = s.post_json("/v1/schema/blueprint", &json!({})).await;
    expect_error(r, 405).await;
}

// ---------------------------------------------------------------------------
// $file / $agent_md expansion
// ---------------------------------------------------------------------------

struct RefDir {
    root: PathBuf,
}

impl RefDir {
    /// `<root>/base` (the ref base) with prompt.txt, agents/reviewer.md, a non-UTF-8
    /// file, an agent.md without frontmatter, and symlinks leaving the base;
    /// `<root>/outside.txt` next to it.
    fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "mse-refs-{tag}-{}-{}",
            std::process::id(),
            mse_engine::ids::random_hex(4)
        ));
        let base = root.join("base");
        std::fs::create_dir_all(base.join("agents")).unwrap();
        std::fs::write(base.join("prompt.txt"), "line one\nline two\n").unwrap();
        std::fs::write(
            base.join("agents/reviewer.md"),
            "---\nname: identity\ndescription:  Echoes\nmodel: sonnet\ntools: Read, Grep\npermissionMode: plan\n---\nYou echo {{ directive }}.\n",
        )
        .unwrap();
        std::fs::write(base.join("agents/plain.md"), "no frontmatter\n").unwrap();
        std::fs::write(base.join("latin1.txt"), [0xe9u8, 0x0a]).unwrap();
        std::fs::write(root.join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(root.join("outside.txt"), base.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(&root, base.join("up")).unwrap();
        std::os::unix::fs::symlink(base.join("prompt.txt"), base.join("inside-link.txt")).unwrap();
        Self { root }
    }

    fn base(&self) -> PathBuf {
        self.root.join("base")
    }
}

impl Drop for RefDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn file_bp(id: &str, reference: Value) -> Value {
    json!({
        "id": id,
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": reference},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}]
    })
}

#[tokio::test]
async fn file_and_agent_md_references_expand_on_seed() {
    let dir = RefDir::new("ok");
    let base = dir.base();
    let s = start_with(|c| c.blueprint_ref_base = Some(base.clone())).await;
    let body = json!({
        "id": "refs",
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": {"$file": "prompt.txt"}},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"$agent_md": "agents/reviewer.md", "kind": "rust_fn",
                    "spec": {"fn_id": "identity"}}],
        "metadata": {"description": {"$file": "./inside-link.txt"}}
    });
    seed_new(&s, "refs", &body).await;
    let head = get_json(&s, "/v1/blueprints/refs/head").await;
    let b = &head["blueprint"];
    assert_eq!(b["flow"]["in"]["value"], "line one\nline two\n");
    assert_eq!(b["metadata"]["description"], "line one\nline two\n");
    let agent = &b["agents"][0];
    assert_eq!(agent["name"], "identity");
    assert_eq!(agent["kind"], "rust_fn");
    assert_eq!(agent["spec"], json!({"fn_id": "identity"}));
    assert_eq!(agent["meta"], Value::Null);
    let p = &agent["profile"];
    assert_eq!(p["system_prompt"], "You echo {{ directive }}.\n");
    assert_eq!(p["description"], "Echoes");
    assert_eq!(p["model"], "sonnet");
    assert_eq!(p["tools"], json!(["Read", "Grep"]));
    assert_eq!(p["extras"], json!({"permissionMode": "plan"}));
    assert_eq!(
        p["version_hash"],
        mse_blueprint::version::content_hash(b"You echo {{ directive }}.\n")
    );
    // Re-posting the same references is idempotent (same expanded content).
    let r = seed(&s, "refs", &body).await;
    assert_eq!(r.status(), 200);
    // And the stored Blueprint runs.
    let r = s
        .run_task(&run_by_id("refs", json!({"kind": "latest"})))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["final_ctx"]["out"]["echoed"], "line one\nline two\n");

    // `$file` with a sibling key is not a reference; it stays as written.
    seed_new(
        &s,
        "literal",
        &file_bp("literal", json!({"$file": "prompt.txt", "other": 1})),
    )
    .await;
    let head = get_json(&s, "/v1/blueprints/literal/head").await;
    assert_eq!(
        head["blueprint"]["flow"]["in"]["value"],
        json!({"$file": "prompt.txt", "other": 1})
    );
}

#[tokio::test]
async fn agent_md_kind_resolution() {
    let dir = RefDir::new("kind");
    let base = dir.base();
    let kind_of = |head: &Value| head["blueprint"]["agents"][0]["kind"].clone();
    let agents_bp = |id: &str, agent: Value, default_kind: Option<&str>| {
        let mut v = json!({
            "id": id,
            "flow": {"kind": "step", "ref": "identity", "in": {"op": "lit", "value": 1},
                     "out": {"op": "path", "at": "$.out"}},
            "agents": [agent],
        });
        if let Some(k) = default_kind {
            v["default_agent_kind"] = json!(k);
        }
        v
    };
    let md = json!({"$agent_md": "agents/reviewer.md"});

    // Server default configured: used when the Blueprint says nothing.
    let s = start_with(|c| {
        c.blueprint_ref_base = Some(base.clone());
        c.default_agent_kind = Some(mse_blueprint::AgentKind::Lua);
    })
    .await;
    seed_new(&s, "k1", &agents_bp("k1", md.clone(), None)).await;
    assert_eq!(
        kind_of(&get_json(&s, "/v1/blueprints/k1/head").await),
        "lua"
    );
    // The Blueprint's top-level default wins over the server's.
    seed_new(&s, "k2", &agents_bp("k2", md.clone(), Some("rust_fn"))).await;
    assert_eq!(
        kind_of(&get_json(&s, "/v1/blueprints/k2/head").await),
        "rust_fn"
    );
    // A sibling kind wins over both.
    let mut with_kind = md.clone();
    with_kind["kind"] = json!("subprocess");
    seed_new(&s, "k3", &agents_bp("k3", with_kind, Some("rust_fn"))).await;
    assert_eq!(
        kind_of(&get_json(&s, "/v1/blueprints/k3/head").await),
        "subprocess"
    );
    // An invalid sibling kind is copied over, so parsing fails.
    let mut bad_kind = md.clone();
    bad_kind["kind"] = json!("robot");
    let m = expect_error(seed(&s, "k4", &agents_bp("k4", bad_kind, None)).await, 400).await;
    assert!(
        m.starts_with("blueprint parse: ") && m.contains("robot"),
        "{m}"
    );

    // Nothing configured anywhere: operator.
    let s = start_with(|c| c.blueprint_ref_base = Some(base.clone())).await;
    seed_new(&s, "k5", &agents_bp("k5", md.clone(), None)).await;
    assert_eq!(
        kind_of(&get_json(&s, "/v1/blueprints/k5/head").await),
        "operator"
    );
}

#[tokio::test]
async fn reference_sandbox_escapes_are_400() {
    let dir = RefDir::new("sandbox");
    let base = dir.base();
    let s = start_with(|c| c.blueprint_ref_base = Some(base.clone())).await;
    for (reference, needle) in [
        ("../outside.txt", "'..' parent-dir escape not allowed"),
        (
            "agents/../../outside.txt",
            "'..' parent-dir escape not allowed",
        ),
        ("/etc/passwd", "absolute path not allowed"),
        ("escape.txt", "outside the reference base"),
        ("up/outside.txt", "outside the reference base"),
        ("missing.txt", "cannot resolve"),
        ("agents", "not a regular file"),
        ("latin1.txt", "not valid UTF-8"),
    ] {
        for body in [
            file_bp("sb", json!({"$file": reference})),
            json!({"id": "sb", "flow": {"kind": "step", "ref": "x", "in": {"op": "lit", "value": 1},
                   "out": {"op": "path", "at": "$.out"}},
                   "agents": [{"$agent_md": reference}]}),
        ] {
            let m = expect_error(seed(&s, "sb", &body).await, 400).await;
            let prefix = format!("ref expand: $file ref expansion at \"{reference}\": ");
            assert!(m.starts_with(&prefix), "{reference}: {m}");
            assert!(m.contains(needle), "{reference}: {m}");
            assert!(!m.contains("secret"), "{m}");
        }
    }
    let m = expect_error(
        seed(
            &s,
            "sb",
            &json!({"id": "sb", "flow": {"kind": "step", "ref": "x", "in": {"op": "lit", "value": 1},
                    "out": {"op": "path", "at": "$.out"}},
                    "agents": [{"$agent_md": "agents/plain.md"}]}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(
        m,
        "ref expand: $file ref expansion at \"agents/plain.md\": agent_md parse: no frontmatter delimiter `---` in agents/plain.md"
    );
    let hist = get_json(&s, "/v1/blueprints/sb/history").await;
    assert_eq!(hist["count"], 0, "nothing written");
}

#[tokio::test]
async fn without_a_ref_base_references_are_literal() {
    let s = start().await;
    seed_new(&s, "lit", &file_bp("lit", json!({"$file": "/etc/passwd"}))).await;
    let head = get_json(&s, "/v1/blueprints/lit/head").await;
    assert_eq!(
        head["blueprint"]["flow"]["in"]["value"],
        json!({"$file": "/etc/passwd"})
    );
    let m = expect_error(
        seed(
            &s,
            "md",
            &json!({"id": "md", "flow": {"kind": "step", "ref": "x", "in": {"op": "lit", "value": 1},
                    "out": {"op": "path", "at": "$.out"}},
                    "agents": [{"$agent_md": "a.md"}]}),
        )
        .await,
        400,
    )
    .await;
    assert!(m.starts_with("blueprint parse: "), "{m}");
}
