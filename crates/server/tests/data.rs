//! Data plane: emit by token (header or `?token=`) and by handle, read back by
//! id and by producer name, and the credential failures.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn emit_and_get_round_trip() {
    let s = start().await;
    let mut op = register_operator(&s.state, "ext");
    let run = spawn_run(&s, inline(operator_blueprint("ext")));
    let w = next_spawn(&mut op).await;

    let event = json!({"type": "artifact", "name": "report.md",
                       "content": {"kind": "inline", "value": "# Findings"}});
    let body = json!({"task_id": w.task_id, "attempt": 1, "producer_agent": "summarizer",
                      "event": event, "parent_refs": ["out-0000000000"]});

    // Header token.
    let r = s
        .client
        .post(s.url("/v1/data/emit"))
        .bearer_auth(&w.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id1 = r.json::<Value>().await.unwrap()["out_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id1.starts_with("out-") && id1.len() == 14, "{id1}");
    assert!(id1[4..].bytes().all(|b| b.is_ascii_hexdigit()));

    let r = s
        .client
        .get(s.url(&format!("/v1/data/{id1}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec: Value = r.json().await.unwrap();
    assert_eq!(rec["id"], id1);
    assert_eq!(rec["task_id"], w.task_id);
    assert_eq!(rec["producer_agent"], "summarizer");
    assert_eq!(rec["event"], event);
    assert_eq!(rec["parent_refs"], json!(["out-0000000000"]));

    // Query token on the named route; the path is the producer.
    let named = json!({"task_id": w.task_id, "attempt": 1, "producer_agent": "ignored",
        "event": {"type": "progress", "stage": "half"}});
    let r = s
        .client
        .post(s.url(&format!("/v1/data/summarizer?token={}", w.token)))
        .json(&named)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id2 = r.json::<Value>().await.unwrap()["out_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rec: Value = s
        .client
        .get(s.url("/v1/data/summarizer"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["id"], id2);
    assert_eq!(rec["producer_agent"], "summarizer");
    assert_eq!(
        rec["event"],
        json!({"type": "progress", "stage": "half", "note": null})
    );

    // A worker handle is accepted for its own task.
    let r = s
        .client
        .post(s.url("/v1/data/emit"))
        .bearer_auth(&w.handle)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Failures.
    let mut other = body.clone();
    other["task_id"] = json!("T-0000000000000000");
    for bearer in [&w.token, &w.handle] {
        let r = s
            .client
            .post(s.url("/v1/data/emit"))
            .bearer_auth(bearer)
            .json(&other)
            .send()
            .await
            .unwrap();
        expect_error(r, 403).await;
    }
    let r = s.post_json("/v1/data/emit", &body).await;
    let m = expect_error(r, 401).await;
    assert!(m.starts_with("missing token"), "{m}");
    let r = s
        .client
        .post(s.url("/v1/data/emit?token="))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    // The header wins over a valid query token.
    let r = s
        .client
        .post(s.url(&format!("/v1/data/emit?token={}", w.token)))
        .header("authorization", "Basic abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = s
        .client
        .post(s.url("/v1/data/emit"))
        .bearer_auth("garbage")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 400).await;
    let mut bad = body.clone();
    bad["event"] = json!({"type": "shout"});
    let r = s
        .client
        .post(s.url("/v1/data/emit"))
        .bearer_auth(&w.token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    expect_error(r, 422).await;

    let m = expect_error(
        s.client
            .get(s.url("/v1/data/out-ffffffffff"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert!(m.contains("out-ffffffffff"), "{m}");
    expect_error(
        s.client.get(s.url("/v1/data/emit")).send().await.unwrap(),
        405,
    )
    .await;

    op.release.notify_one();
    let (status, _) = run.await.unwrap();
    assert_eq!(status, 200);

    // After the task ended its credentials no longer emit.
    let r = s
        .client
        .post(s.url("/v1/data/emit"))
        .bearer_auth(&w.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
}
