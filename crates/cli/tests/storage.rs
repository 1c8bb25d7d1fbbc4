//! Persistence of the real `mse serve` binary: SQLite by default, everything
//! committed survives SIGKILL and a restart on the same data dir; `--memory` keeps
//! nothing on disk; a corrupt database stops the start with one clear line.
//!
//! Issues, enhance settings and the enhance log have no HTTP routes yet, so their
//! durability is covered in-process (`mse-server` tests/storage.rs).

mod common;

use common::{client, free_port, mse, run, Server, TempDir};
use serde_json::{json, Value};
use std::path::Path;

fn bp(id: &str, label: &str, echo: &str) -> Value {
    json!({
        "id": id,
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": echo},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "metadata": {"version_label": label}
    })
}

/// A subprocess agent that stores an output with its worker handle and prints the
/// `/v1/data/emit` reply.
fn emitter_bp() -> Value {
    let script = r##"
import json, os, urllib.request
base, handle, task = os.environ["MSE_BASE_URL"], os.environ["MSE_WORKER_HANDLE"], os.environ["MSE_TASK_ID"]
body = json.dumps({"task_id": task, "attempt": 1, "producer_agent": "reporter",
    "event": {"type": "artifact", "name": "r.md", "content": {"kind": "inline", "value": "# Report"}}}).encode()
req = urllib.request.Request(base + "/v1/data/emit", data=body, method="POST",
    headers={"Authorization": "Bearer " + handle, "Content-Type": "application/json"})
print(json.dumps(json.load(urllib.request.urlopen(req))))
"##;
    json!({"id": "emit",
        "flow": {"kind": "step", "ref": "child", "in": {"op": "lit", "value": "go"},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "child", "kind": "subprocess",
                    "spec": {"program": "python3", "args": ["-c", script], "use_stdin": false}}]})
}

fn serve(home: &Path, data: &Path, port: u16, extra: &[&str]) -> Server {
    let mut cmd = mse(home);
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(extra);
    Server::spawn(cmd)
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn run_by_id(base: &str, id: &str, version: Value) -> Value {
    let (status, v) = post(
        base,
        "/v1/tasks",
        &json!({"blueprint": {"kind": "id", "id": id, "version": version}, "init_ctx": {}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn everything_committed_survives_sigkill() {
    let home = TempDir::new("sigkill");
    let data = home.path().join("data");
    let port = free_port();
    let mut s = serve(home.path(), &data, port, &["--allow-subprocess"]);
    let addr = s.ready().await;
    let base = format!("http://{addr}");
    let line = s.wait_for_line("mse serve started").await;
    let db = data.join("mse.db");
    assert!(
        line.contains(&format!("storage: sqlite {}", db.display())),
        "{line}"
    );

    let (_, doctor) = get(&base, "/v1/doctor").await;
    assert_eq!(doctor["storage"], "sqlite");
    assert_eq!(doctor["database"]["path"], db.display().to_string());

    // Several versions of two ids, one archived.
    let mut versions = Vec::new();
    for (label, echo) in [("1.0.0", "one"), ("1.1.0", "two"), ("2.0.0", "three")] {
        let (status, v) = post(&base, "/v1/blueprints/review", &bp("review", label, echo)).await;
        assert_eq!(status, 201, "{v}");
        versions.push(v["version"].as_str().unwrap().to_string());
    }
    let (status, _) = post(&base, "/v1/blueprints/old", &bp("old", "0.1.0", "x")).await;
    assert_eq!(status, 201);
    let r = client()
        .delete(format!("{base}/v1/blueprints/old"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // An output, stored by a worker through the data plane.
    let (status, v) = post(
        &base,
        "/v1/tasks",
        &json!({"blueprint": {"kind": "inline", "value": emitter_bp()}, "init_ctx": {}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let out_id = v["final_ctx"]["out"]["out_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out_id.starts_with("out-"), "{v}");

    let (_, history) = get(&base, "/v1/blueprints/review/history").await;
    let (_, main_head) = get(&base, "/v1/blueprints/main/head").await;

    // No shutdown at all.
    s.signal("KILL");
    let status = s.wait_exit().await;
    assert_eq!(status.code(), None, "killed by a signal");

    let mut s = serve(home.path(), &data, port, &["--allow-subprocess"]);
    s.ready().await;

    let (status, h) = get(&base, "/v1/blueprints/review/history").await;
    assert_eq!(status, 200);
    assert_eq!(h, history);
    assert_eq!(h["count"], 3);
    let (_, head) = get(&base, "/v1/blueprints/review/head").await;
    assert_eq!(head["version"], versions[2]);
    assert_eq!(head["version_label"], "2.0.0");
    assert_eq!(head["parents"], json!([versions[1]]));
    for (v, label) in versions.iter().zip(["1.0.0", "1.1.0", "2.0.0"]) {
        let (status, one) = get(&base, &format!("/v1/blueprints/review/versions/{v}")).await;
        assert_eq!(status, 200);
        assert_eq!(one["version_label"], label);
    }
    let (_, h) = get(&base, "/v1/blueprints/main/head").await;
    assert_eq!(
        h["version"], main_head["version"],
        "seed kept, not rewritten"
    );
    let (status, _) = get(&base, "/v1/blueprints/old/head").await;
    assert_eq!(status, 409, "still archived");
    let (_, list) = get(&base, "/v1/blueprints").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    // `enhance-default` is the bundled enhance Blueprint the consumer seeds.
    assert_eq!(ids, ["enhance-default", "main", "old", "review"], "{list}");

    // Run stored versions: fixed and by semver requirement.
    let v = run_by_id(
        &base,
        "review",
        json!({"kind": "fixed", "value": versions[0]}),
    )
    .await;
    assert_eq!(v["bound_version"], versions[0]);
    assert_eq!(v["final_ctx"]["out"]["echoed"], "one");
    let v = run_by_id(
        &base,
        "review",
        json!({"kind": "semver_req", "req": "^1.1"}),
    )
    .await;
    assert_eq!(v["bound_version"], versions[1]);
    assert_eq!(v["final_ctx"]["out"]["echoed"], "two");
    let v = run_by_id(&base, "review", json!({"kind": "latest"})).await;
    assert_eq!(v["bound_version"], versions[2]);

    // The output, by id and by producer name.
    let (status, rec) = get(&base, &format!("/v1/data/{out_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(rec["producer_agent"], "reporter");
    assert_eq!(rec["event"]["content"]["value"], "# Report");
    let (_, rec) = get(&base, "/v1/data/reporter").await;
    assert_eq!(rec["id"], out_id);
    s.stop().await;
}

#[tokio::test]
async fn memory_storage_writes_no_database() {
    let home = TempDir::new("memory");
    let data = home.path().join("data");
    let port = free_port();
    let mut s = serve(home.path(), &data, port, &["--memory"]);
    let addr = s.ready().await;
    let base = format!("http://{addr}");
    let line = s.wait_for_line("mse serve started").await;
    assert!(line.contains("storage: memory"), "{line}");
    let (_, doctor) = get(&base, "/v1/doctor").await;
    assert_eq!(doctor["storage"], "memory");
    assert_eq!(doctor["database"], Value::Null);
    let (status, _) = post(&base, "/v1/blueprints/m", &bp("m", "1.0.0", "x")).await;
    assert_eq!(status, 201);
    s.stop().await;
    assert!(!data.join("mse.db").exists());

    // Restarted: volatile, only the seed is there.
    let mut s = serve(home.path(), &data, port, &["--memory"]);
    s.ready().await;
    let (status, _) = get(&base, "/v1/blueprints/m/head").await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_corrupt_database_stops_the_start_with_one_line() {
    let home = TempDir::new("corrupt");
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("mse.db");
    std::fs::write(&db, vec![0x42u8; 8192]).unwrap();
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(&data);
    let (status, _, stderr) = run(cmd);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("corrupt")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&db.display().to_string()), "{stderr}");
    assert!(lines[0].contains("ERROR"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_bad_ref_base_is_a_startup_error() {
    let home = TempDir::new("refbase");
    let mut cmd = mse(home.path());
    cmd.args([
        "serve",
        "--memory",
        "--bind",
        &format!("127.0.0.1:{}", free_port()),
    ])
    .arg("--data-dir")
    .arg(home.path().join("data"))
    .arg("--blueprint-ref-base")
    .arg(home.path().join("missing"));
    let (status, _, stderr) = run(cmd);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
}
