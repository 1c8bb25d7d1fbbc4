//! Shared test harness: a real server on 127.0.0.1:0, a reqwest client, and an
//! in-process operator backend that hands the worker credentials to the test.
#![allow(dead_code)]

pub mod ops;

use mse_engine::{OperatorBackend, SpawnCtx};
use mse_server::{bind, AppState, ServerConfig, ServerError};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
    /// A data dir this harness created (SQLite servers), removed on drop.
    owned_dir: Option<std::path::PathBuf>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn temp_dir() -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "mse-server-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// A server on SQLite storage in a fresh data dir (removed when it is dropped).
pub async fn start_sqlite() -> TestServer {
    start_sqlite_with(|_| {}).await
}

pub async fn start_sqlite_with(f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = temp_dir();
    let owned = dir.clone();
    let mut s = start_with(move |c| {
        c.data_dir = dir;
        c.storage = mse_server::Storage::Sqlite;
        f(c);
    })
    .await;
    s.owned_dir = Some(owned);
    s
}

pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut cfg = ServerConfig::ephemeral(temp_dir());
    f(&mut cfg);
    let bound = bind(cfg).await.expect("bind");
    let base = format!("http://{}", bound.local_addr());
    let state = bound.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(bound.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        base,
        state,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
        owned_dir: None,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signal shutdown and wait for `run` to return.
    pub async fn stop(&mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn run_task(&self, body: &Value) -> reqwest::Response {
        self.post_json("/v1/tasks", body).await
    }

    pub async fn healthy(&self) {
        let r = self
            .client
            .get(self.url("/v1/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
}

/// Assert a JSON error response and return (status, message).
pub async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "status {status}: content-type {ct:?}, body {body:?}"
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {body}"))
        .to_string();
    (status, msg)
}

/// Expect a specific status with a JSON error; returns the message.
pub async fn expect_error(r: reqwest::Response, status: u16) -> String {
    let (s, m) = error_of(r).await;
    assert_eq!(s, status, "unexpected status, message: {m}");
    m
}

/// What the backend saw for one spawn.
#[derive(Clone, Debug)]
pub struct Spawned {
    pub task_id: String,
    pub handle: String,
    pub token: String,
    pub system: Option<String>,
    pub prompt: String,
}

/// An operator backend that reports each spawn and waits to be released.
pub struct ExtBackend {
    tx: mpsc::UnboundedSender<Spawned>,
    release: Arc<Notify>,
}

#[async_trait::async_trait]
impl OperatorBackend for ExtBackend {
    async fn execute(
        &self,
        ctx: &SpawnCtx,
        system: Option<&str>,
        prompt: &str,
    ) -> Result<(Value, bool), String> {
        let _ = self.tx.send(Spawned {
            task_id: ctx.task_id.to_string(),
            handle: ctx.worker_handle.to_string(),
            token: ctx.worker_token.encode(),
            system: system.map(str::to_string),
            prompt: prompt.to_string(),
        });
        self.release.notified().await;
        Ok((json!({"from": "backend"}), true))
    }
}

pub struct Operator {
    pub spawns: mpsc::UnboundedReceiver<Spawned>,
    pub release: Arc<Notify>,
}

/// Register an [`ExtBackend`] under `name`.
pub fn register_operator(state: &AppState, name: &str) -> Operator {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    state.engine().registries().register_operator_backend(
        name,
        Arc::new(ExtBackend {
            tx,
            release: release.clone(),
        }),
    );
    Operator {
        spawns: rx,
        release,
    }
}

/// A one-step flow whose agent `rev` is served by the operator `name`.
pub fn operator_blueprint(name: &str) -> Value {
    json!({
        "id": "opflow",
        "flow": {"kind": "step", "ref": "rev",
                 "in": {"op": "lit", "value": {"topic": "rust"}},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "rev", "kind": "operator", "spec": {"operator_ref": name},
                    "profile": {"system_prompt": "You review {{ topic }}."}}],
        "operators": [{"name": name}]
    })
}

/// A one-step inline Lua flow.
pub fn lua_blueprint(source: &str) -> Value {
    json!({
        "id": "lua",
        "flow": {"kind": "step", "ref": "s",
                 "in": {"op": "lit", "value": "x"},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "s", "kind": "lua", "spec": {"source": source}}]
    })
}

pub fn inline(bp: Value) -> Value {
    json!({"blueprint": {"kind": "inline", "value": bp}, "init_ctx": {}})
}

/// Start a run in the background; returns its response (status, body).
pub fn spawn_run(server: &TestServer, body: Value) -> JoinHandle<(u16, Value)> {
    let client = server.client.clone();
    let url = server.url("/v1/tasks");
    tokio::spawn(async move {
        let r = client.post(url).json(&body).send().await.expect("run");
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    })
}

/// Wait for the next spawn (bounded).
pub async fn next_spawn(op: &mut Operator) -> Spawned {
    tokio::time::timeout(std::time::Duration::from_secs(10), op.spawns.recv())
        .await
        .expect("spawn within 10 s")
        .expect("channel open")
}
