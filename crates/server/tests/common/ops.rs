//! Operator sessions over real sockets: minting, a tokio-tungstenite client,
//! frame helpers and a scripted operator that serves spawns over HTTP.

use super::TestServer;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for any one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Login {
    pub sid: String,
    pub token: String,
}

impl TestServer {
    /// `POST /v1/operators` expecting 200.
    pub async fn mint(&self, roles: &[&str]) -> Login {
        let r = self
            .post_json("/v1/operators", &json!({ "roles": roles }))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["roles"], json!(roles));
        Login {
            sid: v["sid"].as_str().unwrap().to_string(),
            token: v["token"].as_str().unwrap().to_string(),
        }
    }

    pub fn ws_url(&self, sid: &str) -> String {
        format!(
            "{}/v1/operators/{sid}/ws",
            self.base.replacen("http://", "ws://", 1)
        )
    }

    /// Open the WebSocket with an optional raw `Authorization` value; on a
    /// refused handshake returns (status, body).
    pub async fn try_ws(
        &self,
        sid: &str,
        authorization: Option<&str>,
    ) -> Result<Ws, (u16, String)> {
        let mut req = self.ws_url(sid).into_client_request().unwrap();
        if let Some(a) = authorization {
            req.headers_mut()
                .insert("authorization", HeaderValue::from_str(a).unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, resp)) => {
                assert_eq!(resp.status(), 101);
                Ok(ws)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((status, body))
            }
            Err(e) => panic!("WebSocket connect failed: {e}"),
        }
    }

    /// Connect with the login token, expecting 101.
    pub async fn connect(&self, login: &Login) -> Ws {
        self.try_ws(&login.sid, Some(&format!("Bearer {}", login.token)))
            .await
            .unwrap_or_else(|(s, b)| panic!("upgrade refused: {s} {b}"))
    }

    /// `GET /v1/operators/{sid}` with a bearer.
    pub async fn op_get(&self, sid: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/operators/{sid}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn op_delete(&self, sid: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/v1/operators/{sid}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The `connected` flag of a session.
    pub async fn connected(&self, login: &Login) -> bool {
        let r = self.op_get(&login.sid, &login.token).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["connected"]
            .as_bool()
            .unwrap()
    }

    /// Poll `connected` until it equals `want` (bounded).
    pub async fn wait_connected(&self, login: &Login, want: bool, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.connected(login).await != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connected did not become {want} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A cloneable HTTP handle for background tasks.
    pub fn http(&self) -> Http {
        Http {
            base: self.base.clone(),
            client: self.client.clone(),
        }
    }
}

/// The worker routes a SubAgent uses, cloneable into background tasks.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    /// Fetch a worker prompt with a handle: (system, prompt).
    pub async fn fetch_prompt(&self, task_id: &str, handle: &str) -> (Option<String>, String) {
        let r = self
            .client
            .get(format!("{}/v1/worker/prompt?task_id={task_id}", self.base))
            .bearer_auth(handle)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let p: Value = r.json().await.unwrap();
        (
            p["system"].as_str().map(str::to_string),
            p["prompt"].as_str().unwrap().to_string(),
        )
    }

    /// `POST /v1/worker/submit` with a handle, expecting 204.
    pub async fn submit(&self, handle: &str, body: String) {
        let r = self
            .client
            .post(format!("{}/v1/worker/submit", self.base))
            .bearer_auth(handle)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

/// The next text frame as JSON (Ping/Pong skipped); panics on close or timeout.
pub async fn recv_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("a frame within the wait")
            .expect("stream open")
            .expect("no transport error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Read until a Close frame arrives and return it (text frames are skipped).
pub async fn recv_close(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("a close frame within the wait");
        match msg {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("transport error before the close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

pub async fn send_text(ws: &mut Ws, t: &str) {
    ws.send(Message::text(t.to_string())).await.unwrap();
}

/// Acknowledge a spawn inline with `value`.
pub async fn ack(ws: &mut Ws, spawn: &Value, value: Value) {
    send_json(
        ws,
        json!({"type": "spawn_ack", "req_id": spawn["req_id"], "value": value, "ok": true}),
    )
    .await;
}

/// Expect the next frame to be of `kind`.
pub async fn expect(ws: &mut Ws, kind: &str) -> Value {
    let v = recv_json(ws).await;
    assert_eq!(v["type"], kind, "{v}");
    v
}

/// Serve spawns like a MainAI would: fetch the prompt with the handle, compute
/// the SubAgent's output with `reply(system, prompt)`, submit it, then
/// `spawn_ack {value:{}}`. Returns the spawns served when the socket closes.
pub async fn serve_spawns(
    http: Http,
    mut ws: Ws,
    reply: impl Fn(Option<&str>, &str) -> String,
) -> Vec<Value> {
    let mut served = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] != "spawn" {
            continue;
        }
        let handle = v["worker_handle"].as_str().unwrap();
        let task = v["task_id"].as_str().unwrap();
        let (system, prompt) = http.fetch_prompt(task, handle).await;
        http.submit(handle, reply(system.as_deref(), &prompt)).await;
        ack(&mut ws, &v, json!({})).await;
        served.push(v);
    }
    served
}
