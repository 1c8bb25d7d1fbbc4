//! Load: 10 operator sessions (roles `w0`..`w9`) serve 1000 concurrent
//! delegated steps (100 concurrent runs, each a fanout of 10 whose branch `i`
//! is routed to role `w<i>`). Every spawn is answered exactly once, none is lost
//! or duplicated, and every result comes back to the step that asked for it.

mod common;

use common::ops::*;
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const ROLES: usize = 10;
const RUNS: usize = 100;

/// fanout over 0..10; branch `i` runs agent `a<i>` (operator of role `w<i>`)
/// through a chain of `branch` nodes.
fn fanout_blueprint() -> Value {
    let path = |at: &str| json!({"op": "path", "at": at});
    let mut body = json!({"kind": "seq", "children": []});
    for k in (0..ROLES).rev() {
        body = json!({"kind": "branch",
            "cond": {"op": "eq", "lhs": path("$.i"), "rhs": {"op": "lit", "value": k}},
            "then": {"kind": "step", "ref": format!("a{k}"), "in": path("$.i"), "out": path("$.r")},
            "else": body});
    }
    json!({
        "id": "load",
        "operators": (0..ROLES).map(|k| json!({"name": format!("w{k}")})).collect::<Vec<_>>(),
        "agents": (0..ROLES).map(|k| json!({"name": format!("a{k}"), "kind": "operator",
            "spec": {"operator_ref": format!("w{k}")}})).collect::<Vec<_>>(),
        "flow": {"kind": "fanout", "items": {"op": "lit", "value": (0..ROLES).collect::<Vec<_>>()},
                 "bind": path("$.i"), "join": "all", "out": path("$.out"), "body": body}
    })
}

/// Answer every spawn inline with `{role, task}`; returns (req_ids, error frames).
async fn operate(role: String, mut ws: Ws) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut errors = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        match v["type"].as_str().unwrap() {
            "spawn" => {
                let ack = json!({"type": "spawn_ack", "req_id": v["req_id"],
                                 "value": {"role": role, "task": v["task_id"]}});
                ws.send(Message::text(ack.to_string())).await.unwrap();
                seen.push(v["req_id"].as_str().unwrap().to_string());
            }
            "error" => errors += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (seen, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_operators_serve_a_thousand_concurrent_steps() {
    let s = start().await;
    let mut logins = Vec::new();
    let mut operators = Vec::new();
    for k in 0..ROLES {
        let role = format!("w{k}");
        let login = s.mint(&[role.as_str()]).await;
        let ws = s.connect(&login).await;
        operators.push(tokio::spawn(operate(role, ws)));
        logins.push(login);
    }

    let body = inline(fanout_blueprint());
    let runs: Vec<_> = (0..RUNS).map(|_| spawn_run(&s, body.clone())).collect();
    let results = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(runs))
        .await
        .expect("all runs finish");
    let mut tasks = HashSet::new();
    for r in results {
        let (status, v) = r.unwrap();
        assert_eq!(status, 200, "{v}");
        let out = v["final_ctx"]["out"].as_array().unwrap();
        assert_eq!(out.len(), ROLES);
        for (k, branch) in out.iter().enumerate() {
            assert_eq!(branch["i"], k);
            assert_eq!(branch["r"]["role"], format!("w{k}"), "{branch}");
            assert!(tasks.insert(branch["r"]["task"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(tasks.len(), ROLES * RUNS);

    for login in &logins {
        assert_eq!(s.op_delete(&login.sid, &login.token).await.status(), 204);
    }
    let mut all = HashSet::new();
    for (k, op) in operators.into_iter().enumerate() {
        let (seen, errors) = op.await.unwrap();
        assert_eq!(
            errors, 0,
            "w{k} got error frames (duplicate or unknown acks)"
        );
        assert_eq!(seen.len(), RUNS, "w{k} spawns");
        for id in seen {
            assert!(id.starts_with(&format!("{}-spawn-", logins[k].sid)));
            assert!(all.insert(id), "duplicate req_id");
        }
    }
    assert_eq!(all.len(), ROLES * RUNS);
}
