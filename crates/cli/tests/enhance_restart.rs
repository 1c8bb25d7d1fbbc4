//! The enhance loop survives a SIGKILL of the real `mse serve` binary: an issue
//! whose patch-spawner never answered is re-queued at the next start and, once an
//! operator serves it, ends applied exactly once.
//!
//! The operator is a minimal RFC 6455 client over a plain TCP stream (this crate
//! has no WebSocket client dependency): text frames, pings answered, nothing else.

mod common;

use common::{client, free_port, mse, Server, TempDir};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn serve(home: &Path, data: &Path, port: u16) -> Server {
    let mut cmd = mse(home);
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--enhance-interval-ms", "20"]);
    Server::spawn(cmd)
}

fn target() -> Value {
    json!({"id": "demo",
        "flow": {"kind": "step", "ref": "echo", "in": {"op": "path", "at": "$.input"},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "echo", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "metadata": {"description": "v0", "version_label": "1.0.0"}})
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

/// A connected operator socket.
struct Ws {
    tcp: TcpStream,
}

impl Ws {
    /// Mint a session with `roles` and open its WebSocket.
    async fn mint_and_connect(addr: &str, roles: &[&str]) -> (Ws, String, String) {
        let base = format!("http://{addr}");
        let (status, v) = post(&base, "/v1/operators", &json!({ "roles": roles })).await;
        assert_eq!(status, 200, "{v}");
        let sid = v["sid"].as_str().unwrap().to_string();
        let token = v["token"].as_str().unwrap().to_string();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /v1/operators/{sid}/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            let n = tcp.read(&mut b).await.unwrap();
            assert_eq!(
                n,
                1,
                "handshake cut short: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // Wait until the server reports the socket attached (roles registered).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = client()
                .get(format!("{base}/v1/operators/{sid}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            if v["connected"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "never connected: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (Ws { tcp }, sid, token)
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&f).await.unwrap();
    }

    async fn send_json(&mut self, v: &Value) {
        self.send_frame(0x1, v.to_string().as_bytes()).await;
    }

    /// The next text message as JSON; `None` when the socket closes.
    async fn recv_json(&mut self) -> Option<Value> {
        let mut msg = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.tcp.read_exact(&mut h).await.ok()?;
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let masked = h[1] & 0x80 != 0;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.tcp.read_exact(&mut b).await.ok()?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.tcp.read_exact(&mut b).await.ok()?;
                len = u64::from_be_bytes(b);
            }
            let mut mask = [0u8; 4];
            if masked {
                self.tcp.read_exact(&mut mask).await.ok()?;
            }
            let mut payload = vec![0u8; len as usize];
            self.tcp.read_exact(&mut payload).await.ok()?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x8 => return None,
                0x9 => self.send_frame(0xA, &payload).await,
                0xA => {}
                0x0 | 0x1 => {
                    msg.extend_from_slice(&payload);
                    if fin {
                        return Some(serde_json::from_slice(&msg).unwrap());
                    }
                }
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    /// The next `spawn` request (other messages skipped), bounded.
    async fn next_spawn(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let v = self.recv_json().await.expect("socket open");
                if v["type"] == "spawn" {
                    return v;
                }
            }
        })
        .await
        .expect("a spawn within 20 s")
    }
}

/// Serve patch-spawner spawns like an operator would: fetch the prompt with the
/// worker handle, submit a patch describing the intent, ack.
async fn answer(base: &str, ws: &mut Ws, spawn: &Value) -> Value {
    assert_eq!(spawn["agent"], "patch-spawner", "{spawn}");
    let handle = spawn["worker_handle"].as_str().unwrap();
    let task = spawn["task_id"].as_str().unwrap();
    let r = client()
        .get(format!("{base}/v1/worker/prompt?task_id={task}"))
        .bearer_auth(handle)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    let ctx: Value = serde_json::from_str(p["prompt"].as_str().unwrap()).unwrap();
    let intent = ctx["issue"]["intent"].as_str().unwrap().to_string();
    let patch = json!({"ops": [{"op": "replace", "path": "/metadata/description", "value": intent}],
                       "bump": "minor", "rationale": format!("describe: {intent}")});
    let r = client()
        .post(format!("{base}/v1/worker/submit"))
        .bearer_auth(handle)
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    ws.send_json(&json!({"type": "spawn_ack", "req_id": spawn["req_id"], "value": {}, "ok": true}))
        .await;
    ctx
}

async fn issue(base: &str, id: &str) -> Value {
    let (status, v) = get(base, &format!("/v1/issues/{id}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn sigkilled_mid_issue_is_rerun_and_applied_once() {
    let home = TempDir::new("enhance-restart");
    let data = home.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");

    let mut s = serve(home.path(), &data, port);
    s.ready().await;
    let (status, v) = post(&base, "/v1/blueprints/demo", &target()).await;
    assert_eq!(status, 201, "{v}");
    let v0 = v["version"].as_str().unwrap().to_string();

    // An operator that takes the first spawn and never answers it.
    let (mut silent, _, _) = Ws::mint_and_connect(&addr, &["patch-spawner"]).await;
    let (status, v) = post(
        &base,
        "/v1/issues",
        &json!({"blueprint_id": "demo", "intent": "survive a crash"}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["issue_id"].as_str().unwrap().to_string();
    let spawn = silent.next_spawn().await;
    assert_eq!(spawn["agent"], "patch-spawner", "{spawn}");
    let rec = issue(&base, &id).await;
    assert_eq!(rec["status"], "in_flight", "{rec}");
    assert_eq!(rec["attempts"], 1);

    s.signal("KILL");
    assert_eq!(s.wait_exit().await.code(), None, "killed by a signal");
    drop(silent);

    let mut s = serve(home.path(), &data, port);
    s.ready().await;
    // Role claims died with the process: a new session serves the re-run.
    let (mut op, _, _) = Ws::mint_and_connect(&addr, &["patch-spawner"]).await;
    let Ok(spawn) = tokio::time::timeout(Duration::from_secs(10), op.next_spawn()).await else {
        panic!(
            "no re-run spawn; issue {}; log:\n{}",
            issue(&base, &id).await,
            s.log()
        )
    };
    let ctx = answer(&base, &mut op, &spawn).await;
    assert_eq!(ctx["issue"]["issue_id"], id);
    assert_eq!(ctx["prev_hash"], v0);

    let deadline = Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let rec = issue(&base, &id).await;
        if rec["status"] == "applied" || rec["status"] == "rejected" {
            break rec;
        }
        assert!(Instant::now() < deadline, "not terminal: {rec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rec["status"], "applied", "{rec}\nlog:\n{}", s.log());
    assert_eq!(rec["attempts"], 2);

    let (_, log) = get(&base, "/v1/enhance/log").await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log[0]["issue_id"], id);
    assert_eq!(log[0]["status"], "applied");
    assert_eq!(log[0]["prev_hash"], v0);
    assert_eq!(log[0]["new_hash"], rec["new_version"]);
    let (_, history) = get(&base, "/v1/blueprints/demo/history").await;
    assert_eq!(history["count"], 2, "exactly one new version: {history}");
    let (_, head) = get(&base, "/v1/blueprints/demo/head").await;
    assert_eq!(head["version"], rec["new_version"]);
    assert_eq!(head["parents"], json!([v0]));
    assert_eq!(head["version_label"], "1.1.0");
    s.stop().await;
}
