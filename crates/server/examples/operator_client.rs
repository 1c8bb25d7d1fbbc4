//! A minimal operator: mints a session, connects its WebSocket and serves it.
//!
//! `cargo run -p mse-server --example operator_client -- --url http://127.0.0.1:7777 --roles main-ai`
//!
//! Options: `--url <base>` (default `http://127.0.0.1:7777`), `--roles a,b`
//! (comma-separated, default none), `--admin-token <t>` (when the server requires
//! one for minting).
//!
//! What it answers:
//! - `spawn` for the enhance `patch-spawner` agent: reads the issue from the
//!   fetched prompt and turns `set description to <text>` into an RFC 6902
//!   `replace` of `/metadata/description` (submitted as the patch JSON);
//! - any other `spawn`: plays the SubAgent itself: fetches `/v1/worker/prompt` with the
//!   `worker_handle`, computes a reply (system prompt mentions "verdict" →
//!   `PASS` if the prompt contains "ok" (any case), else `RETRY`; otherwise the prompt in
//!   upper case), POSTs it to `/v1/worker/submit`, then sends `spawn_ack`
//!   `{value:{}, ok:true}` (or `spawn_ack {error}` if the HTTP part failed);
//! - `hook_before` → `hook_ack {ok:true}`; `hook_after` is only logged;
//! - `ask` → `answer` with a fixed piece of advice.
//!
//! Messages are handled one at a time. When the socket drops it reconnects
//! (pending requests may be answered on the new socket; an ack that could not
//! be sent is re-sent first). Ctrl-C deletes the session and exits.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    url: String,
    roles: Vec<String>,
    admin_token: Option<String>,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        url: "http://127.0.0.1:7777".into(),
        roles: Vec::new(),
        admin_token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?.trim_end_matches('/').to_string(),
            "--roles" => {
                args.roles = value()?
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--admin-token" => args.admin_token = Some(value()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(args)
}

/// The login: what `POST /v1/operators` returned.
struct Session {
    base: String,
    sid: String,
    token: String,
    http: reqwest::Client,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut mint = http
        .post(format!("{}/v1/operators", args.url))
        .json(&json!({ "roles": args.roles }));
    if let Some(t) = &args.admin_token {
        mint = mint.bearer_auth(t);
    }
    let r = mint.send().await?;
    if !r.status().is_success() {
        return Err(format!("mint failed: {} {}", r.status(), r.text().await?).into());
    }
    let v: Value = r.json().await?;
    let session = Session {
        base: args.url.clone(),
        sid: v["sid"].as_str().ok_or("no sid")?.to_string(),
        token: v["token"].as_str().ok_or("no token")?.to_string(),
        http,
    };
    println!("minted {} with roles {}", session.sid, v["roles"]);

    tokio::select! {
        r = serve(&session) => r?,
        _ = tokio::signal::ctrl_c() => println!("ctrl-c"),
    }
    let r = session
        .http
        .delete(format!("{}/v1/operators/{}", session.base, session.sid))
        .bearer_auth(&session.token)
        .send()
        .await?;
    println!("deleted session: {}", r.status());
    Ok(())
}

/// Connect, serve until the socket ends, reconnect; returns when the session
/// no longer exists.
async fn serve(s: &Session) -> Result<(), Error> {
    let ws_url = format!(
        "{}/v1/operators/{}/ws",
        s.base
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1),
        s.sid
    );
    let mut unsent: Option<Value> = None;
    loop {
        let mut req = ws_url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", s.token).parse()?);
        let mut ws = match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(r)) if r.status() == 404 => {
                println!("session is gone");
                return Ok(());
            }
            Err(e) => {
                println!("connect failed: {e}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        println!("connected");
        if let Some(reply) = unsent.take() {
            send(&mut ws, &reply, &mut unsent).await;
        }
        while let Some(frame) = ws.next().await {
            let text = match frame {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(c)) => {
                    println!("closed by the server: {c:?}");
                    break;
                }
                Ok(_) => continue, // pings are answered by tungstenite
                Err(e) => {
                    println!("socket error: {e}");
                    break;
                }
            };
            let msg: Value = match serde_json::from_str(text.as_str()) {
                Ok(v) => v,
                Err(_) => continue,
            };
            println!("<- {} {}", msg["type"], msg["req_id"]);
            if let Some(reply) = answer(s, &msg).await {
                send(&mut ws, &reply, &mut unsent).await;
            }
        }
        println!("disconnected; reconnecting in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Send a reply; keep it for the next socket if this one is gone.
async fn send(ws: &mut Ws, reply: &Value, unsent: &mut Option<Value>) {
    println!("-> {} {}", reply["type"], reply["req_id"]);
    if ws.send(Message::text(reply.to_string())).await.is_err() {
        *unsent = Some(reply.clone());
    }
}

/// The reply to one server message, if it needs one.
async fn answer(s: &Session, msg: &Value) -> Option<Value> {
    let req_id = msg["req_id"].clone();
    match msg["type"].as_str()? {
        "spawn" => Some(match run_subagent(s, msg).await {
            Ok(()) => json!({"type": "spawn_ack", "req_id": req_id, "value": {}, "ok": true}),
            Err(e) => json!({"type": "spawn_ack", "req_id": req_id, "error": e.to_string()}),
        }),
        "hook_before" => Some(json!({"type": "hook_ack", "req_id": req_id, "ok": true})),
        "ask" => Some(json!({"type": "answer", "req_id": req_id,
                              "value": {"advice": "accept it; retry once if in doubt"}})),
        "hook_after" => {
            println!("   result of {}: {}", msg["agent"], msg["result"]);
            None
        }
        "error" => {
            println!("   server says: {}", msg["message"]);
            None
        }
        _ => None,
    }
}

/// The enhance patch-spawner's rule: an issue whose intent reads
/// `set description to <text>` becomes a `replace` of `/metadata/description`;
/// any other intent gets an empty patch (which the `noop` verifier denies).
fn patch_for(prompt: &str) -> String {
    let ctx: Value = serde_json::from_str(prompt).unwrap_or(Value::Null);
    let intent = ctx["issue"]["intent"].as_str().unwrap_or("").trim();
    let ops = match intent.strip_prefix("set description to ") {
        Some(text) => {
            json!([{"op": "replace", "path": "/metadata/description", "value": text.trim()}])
        }
        None => json!([]),
    };
    json!({"ops": ops, "bump": "patch", "rationale": intent}).to_string()
}

/// Fetch the prompt with the handle, compute the output, submit it.
async fn run_subagent(s: &Session, spawn: &Value) -> Result<(), Error> {
    let handle = spawn["worker_handle"].as_str().ok_or("no worker_handle")?;
    let task = spawn["task_id"].as_str().ok_or("no task_id")?;
    let p: Value = s
        .http
        .get(format!("{}/v1/worker/prompt?task_id={task}", s.base))
        .bearer_auth(handle)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let system = p["system"].as_str().unwrap_or("");
    let prompt = p["prompt"].as_str().unwrap_or("");
    let output = if spawn["agent"] == "patch-spawner" {
        patch_for(prompt)
    } else if system.contains("verdict") {
        if prompt.to_lowercase().contains("ok") {
            "PASS"
        } else {
            "RETRY"
        }
        .to_string()
    } else {
        prompt.to_uppercase()
    };
    println!("   {} ({}): {output}", spawn["agent"], task);
    s.http
        .post(format!("{}/v1/worker/submit", s.base))
        .bearer_auth(handle)
        .body(output)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
