//! Subprocess workers through the HTTP API: opt-in, and self-fetch with the
//! worker handle and `MSE_BASE_URL` from inside the child.

mod common;
use common::*;
use serde_json::{json, Value};

fn body(bp: Value, init_ctx: Value) -> Value {
    json!({"blueprint": {"kind": "inline", "value": bp}, "init_ctx": init_ctx})
}

fn subprocess_bp(program: &str, args: Value, use_stdin: bool) -> Value {
    json!({"id":"sp","flow":{"kind":"step","ref":"child","in":{"op":"path","at":"$.input"},"out":{"op":"path","at":"$.out"}},
        "agents":[{"name":"child","kind":"subprocess","spec":{"program":program,"args":args,"use_stdin":use_stdin}}]})
}

#[tokio::test]
async fn subprocess_agents_need_allow_subprocess() {
    let server = start().await;
    let r = server
        .run_task(&body(
            subprocess_bp("true", json!([]), true),
            json!({"input": 1}),
        ))
        .await;
    let msg = expect_error(r, 400).await;
    assert!(msg.contains("--allow-subprocess"), "{msg}");
}

#[tokio::test]
async fn a_child_fetches_its_prompt_and_submits_with_its_handle() {
    let server = start_with(|c| c.allow_subprocess = true).await;
    // The child reads its own prompt over HTTP with the handle, then posts its
    // result to /v1/worker/submit and prints nothing.
    let script = r#"
import json, os, urllib.request
base, handle, task = os.environ["MSE_BASE_URL"], os.environ["MSE_WORKER_HANDLE"], os.environ["MSE_TASK_ID"]
auth = {"Authorization": "Bearer " + handle}
req = urllib.request.Request(f"{base}/v1/worker/prompt?task_id={task}", headers=auth)
prompt = json.load(urllib.request.urlopen(req))["prompt"]
body = ("fetched " + prompt).encode()
urllib.request.urlopen(urllib.request.Request(f"{base}/v1/worker/submit", data=body, headers=auth, method="POST"))
"#;
    let bp = subprocess_bp("python3", json!(["-c", script]), false);
    let r = server.run_task(&body(bp, json!({"input": "hello"}))).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["final_ctx"]["out"], json!("fetched hello"));
}
