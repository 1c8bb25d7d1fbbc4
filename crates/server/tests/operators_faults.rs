//! Operator sockets under faults: disconnects with and without a reconnect,
//! DELETE with work pending, superseding sockets, bad frames, dead peers, reply
//! timeouts, idle reaping and shutdown.

mod common;

use common::ops::*;
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A one-step run served by role `main-ai`.
fn one_step() -> Value {
    inline(json!({"id": "one", "operators": [{"name": "main-ai"}],
        "agents": [{"name": "rev", "kind": "operator", "spec": {"operator_ref": "main-ai"}}],
        "flow": {"kind": "step", "ref": "rev", "in": {"op": "lit", "value": "x"},
                 "out": {"op": "path", "at": "$.out"}}}))
}

async fn ok_ctx(run: tokio::task::JoinHandle<(u16, Value)>) -> Value {
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    v["final_ctx"].clone()
}

async fn failure(run: tokio::task::JoinHandle<(u16, Value)>) -> String {
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 400, "{v}");
    v["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn connected_is_true_only_while_a_socket_is_attached() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    assert!(!s.connected(&login).await);
    let mut ws = s.connect(&login).await;
    assert!(s.connected(&login).await);
    // A clean close.
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    s.wait_connected(&login, false, Duration::from_secs(5))
        .await;
    // Reconnect, then an abrupt drop.
    let ws = s.connect(&login).await;
    assert!(s.connected(&login).await);
    drop(ws);
    s.wait_connected(&login, false, Duration::from_secs(5))
        .await;
    // Registrations survive the disconnect: the role still resolves and the
    // run fails at dispatch, at once.
    let t0 = Instant::now();
    let m = failure(spawn_run(&s, one_step())).await;
    assert!(m.contains("disconnected") && m.contains(&login.sid), "{m}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn reconnect_mid_spawn_then_ack_completes_the_step() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    drop(ws);
    s.wait_connected(&login, false, Duration::from_secs(5))
        .await;
    let mut ws = s.connect(&login).await;
    // No replay: the old request is not sent again, but it can be answered.
    ack(&mut ws, &spawn, json!("after reconnect")).await;
    assert_eq!(ok_ctx(run).await, json!({"out": "after reconnect"}));
    // And the new socket serves new work.
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    ack(&mut ws, &spawn, json!(2)).await;
    assert_eq!(ok_ctx(run).await, json!({"out": 2}));
}

#[tokio::test]
async fn a_lost_operator_fails_its_steps_within_the_grace() {
    let grace = Duration::from_millis(400);
    let s = start_with(|c| c.limits.operator_reconnect_grace = grace).await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;
    let run = spawn_run(&s, one_step());
    expect(&mut ws, "spawn").await;
    let t0 = Instant::now();
    drop(ws);
    let m = failure(run).await;
    let took = t0.elapsed();
    assert!(
        took >= grace && took < grace + Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        m.contains("did not reconnect") && m.contains(&login.sid) && m.contains("main-ai"),
        "{m}"
    );
}

#[tokio::test]
async fn delete_with_a_pending_spawn_fails_the_run_and_closes_the_socket() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;
    let run = spawn_run(&s, one_step());
    expect(&mut ws, "spawn").await;
    let t0 = Instant::now();
    assert_eq!(s.op_delete(&login.sid, &login.token).await.status(), 204);
    let m = failure(run).await;
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        m.contains("session deleted") && m.contains(&login.sid),
        "{m}"
    );
    let close = recv_close(&mut ws)
        .await
        .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "session deleted");
    // The role is released and unregistered.
    let m = failure(spawn_run(&s, one_step())).await;
    assert!(m.contains("main-ai"), "{m}");
    s.mint(&["main-ai"]).await;
}

#[tokio::test]
async fn a_newer_socket_supersedes_the_older() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    let mut old = s.connect(&login).await;
    let mut new = s.connect(&login).await;
    let close = recv_close(&mut old).await.expect("close frame");
    assert_eq!(u16::from(close.code), 4000);
    // Finish the old socket's closing handshake; the newer one stays attached.
    while old.next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.connected(&login).await);
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut new, "spawn").await;
    ack(&mut new, &spawn, json!("new socket")).await;
    assert_eq!(ok_ctx(run).await, json!({"out": "new socket"}));
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_fail_what_they_name() {
    let s = start().await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;

    send_text(&mut ws, "not json").await;
    let e = expect(&mut ws, "error").await;
    assert!(e.get("req_id").is_none(), "{e}");
    assert!(e["message"].as_str().unwrap().contains("not JSON"), "{e}");

    send_json(
        &mut ws,
        json!({"type": "answer", "req_id": "op-nope-ask-1", "value": 1}),
    )
    .await;
    let e = expect(&mut ws, "error").await;
    assert_eq!(e["req_id"], "op-nope-ask-1");
    // Binary frames are ignored.
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();

    // An unknown type naming a pending spawn fails it instead of hanging.
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    send_json(
        &mut ws,
        json!({"type": "spawn_done", "req_id": spawn["req_id"]}),
    )
    .await;
    let e = expect(&mut ws, "error").await;
    assert_eq!(e["req_id"], spawn["req_id"]);
    let m = failure(run).await;
    assert!(m.contains("malformed client message"), "{m}");
    // A late, well-formed reply for it is now unknown.
    ack(&mut ws, &spawn, json!(1)).await;
    let e = expect(&mut ws, "error").await;
    assert!(e["message"].as_str().unwrap().contains("unknown"), "{e}");

    // A missing required field (hook_ack without ok) likewise.
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    send_json(
        &mut ws,
        json!({"type": "spawn_ack", "req_id": spawn["req_id"], "ok": "yes"}),
    )
    .await;
    expect(&mut ws, "error").await;
    assert!(failure(run).await.contains("malformed"));

    // A reply of the wrong kind.
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    send_json(
        &mut ws,
        json!({"type": "answer", "req_id": spawn["req_id"], "value": 1}),
    )
    .await;
    let e = expect(&mut ws, "error").await;
    assert!(
        e["message"].as_str().unwrap().contains("unexpected answer"),
        "{e}"
    );
    assert!(failure(run).await.contains("unexpected answer"));

    // A duplicate reply: the first counts, the second is unknown.
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    ack(&mut ws, &spawn, json!("first")).await;
    ack(&mut ws, &spawn, json!("second")).await;
    expect(&mut ws, "error").await;
    assert_eq!(ok_ctx(run).await, json!({"out": "first"}));

    // The connection stayed open throughout.
    assert!(s.connected(&login).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let ping = Duration::from_millis(200);
    let s = start_with(|c| c.limits.operator_ping_interval = ping).await;

    // A live client keeps reading, so tungstenite answers the pings.
    let live = s.mint(&[]).await;
    let mut ws = s.connect(&live).await;
    let pings = tokio::spawn(async move {
        let mut n = 0;
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Ping(_)) {
                n += 1;
            }
        }
        n
    });

    // A dead one never reads again: no pongs.
    let dead = s.mint(&[]).await;
    let t0 = Instant::now();
    let _silent = s.connect(&dead).await;
    s.wait_connected(&dead, false, Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert!(took >= ping * 2, "dropped too early: {took:?}");
    assert!(took < ping * 6, "dropped too late: {took:?}");

    assert!(s.connected(&live).await, "a pong-answering peer stays");
    assert_eq!(s.op_delete(&live.sid, &live.token).await.status(), 204);
    assert!(pings.await.unwrap() >= 2);
}

#[tokio::test]
async fn reply_timeout_bounds_the_wait() {
    let s = start_with(|c| c.limits.operator_reply_timeout = Duration::from_millis(300)).await;
    let login = s.mint(&["main-ai"]).await;
    let mut ws = s.connect(&login).await;
    let run = spawn_run(&s, one_step());
    let spawn = expect(&mut ws, "spawn").await;
    let m = failure(run).await;
    assert!(
        m.contains("did not answer spawn") && m.contains(&login.sid),
        "{m}"
    );
    ack(&mut ws, &spawn, json!(1)).await;
    let e = expect(&mut ws, "error").await;
    assert_eq!(e["req_id"], spawn["req_id"]);
}

#[tokio::test]
async fn idle_sessions_are_reaped() {
    let s = start_with(|c| c.limits.operator_idle_ttl = Duration::from_millis(200)).await;
    let idle = s.mint(&["r"]).await;
    let busy = s.mint(&[]).await;
    let _ws = s.connect(&busy).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    expect_error(s.op_get(&idle.sid, &idle.token).await, 404).await;
    assert!(
        s.connected(&busy).await,
        "a connected session is never idle"
    );
    s.mint(&["r"]).await;
}

#[tokio::test]
async fn shutdown_closes_operator_sockets() {
    let mut s = start().await;
    let login = s.mint(&[]).await;
    let mut ws = s.connect(&login).await;
    let t0 = Instant::now();
    s.stop().await.unwrap();
    let close = recv_close(&mut ws).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(t0.elapsed() < Duration::from_secs(5));
}
