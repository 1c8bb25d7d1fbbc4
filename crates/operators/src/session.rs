//! One operator login session: its socket slot, pending requests and the three
//! engine faces it serves (senior bridge, spawn hook, operator backend).

use crate::protocol::{uuid_v4, ClientMsg, RequestKind, ServerMsg};
use crate::OperatorConfig;
use mse_engine::{OperatorBackend, SeniorBridge, SpawnCtx, SpawnHook, TaskId};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the socket writer should do next.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    Frame(String),
    Close { code: u16, reason: String },
}

struct Socket {
    generation: u64,
    tx: mpsc::Sender<Outgoing>,
}

struct Pending {
    kind: RequestKind,
    tx: oneshot::Sender<Result<ClientMsg, String>>,
}

struct State {
    socket: Option<Socket>,
    next_generation: u64,
    /// Counts disconnects, so a grace timer can tell whether a reconnect happened.
    disconnects: u64,
    pending: HashMap<String, Pending>,
    registered: bool,
    deleted: bool,
    /// Since when no socket has been attached (`None` while connected).
    idle_since: Option<Instant>,
}

pub struct OperatorSession {
    pub sid: String,
    token: String,
    pub roles: Vec<String>,
    cfg: Arc<OperatorConfig>,
    state: Mutex<State>,
}

impl std::fmt::Debug for OperatorSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSession")
            .field("sid", &self.sid)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl OperatorSession {
    pub(crate) fn new(
        sid: String,
        token: String,
        roles: Vec<String>,
        cfg: Arc<OperatorConfig>,
    ) -> Self {
        Self {
            sid,
            token,
            roles,
            cfg,
            state: Mutex::new(State {
                socket: None,
                next_generation: 1,
                disconnects: 0,
                pending: HashMap::new(),
                registered: false,
                deleted: false,
                idle_since: Some(Instant::now()),
            }),
        }
    }

    /// Constant-time comparison with the login token.
    pub fn token_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let (a, b) = (self.token.as_bytes(), presented.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    /// How the session names itself in error messages.
    pub fn label(&self) -> String {
        if self.roles.is_empty() {
            format!("ws operator {}", self.sid)
        } else {
            format!(
                "ws operator {} (roles: {})",
                self.sid,
                self.roles.join(", ")
            )
        }
    }

    pub fn is_connected(&self) -> bool {
        self.state.lock().socket.is_some()
    }

    pub fn pending_count(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Attach a new socket; an older one is told to close. Returns the socket's
    /// generation, its outgoing queue, and whether this was the first attach.
    pub(crate) fn attach(&self) -> Option<(u64, mpsc::Receiver<Outgoing>, bool)> {
        let (tx, rx) = mpsc::channel(self.cfg.outgoing_queue.max(1));
        let mut s = self.state.lock();
        if s.deleted {
            return None;
        }
        let generation = s.next_generation;
        s.next_generation += 1;
        if let Some(old) = s.socket.replace(Socket { generation, tx }) {
            let _ = old.tx.try_send(Outgoing::Close {
                code: 4000,
                reason: "superseded by a newer connection".into(),
            });
        }
        s.idle_since = None;
        let first = !s.registered;
        s.registered = true;
        Some((generation, rx, first))
    }

    /// A socket ended. Only the current socket detaches the session; pending
    /// requests wait for a reconnect up to the reconnect grace.
    pub fn detach(self: &Arc<Self>, generation: u64) {
        let epoch = {
            let mut s = self.state.lock();
            if s.socket.as_ref().map(|k| k.generation) != Some(generation) {
                return;
            }
            s.socket = None;
            s.disconnects += 1;
            s.idle_since = Some(Instant::now());
            s.disconnects
        };
        let grace = self.cfg.reconnect_grace;
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(me) = me.upgrade() else { return };
            let still_gone = {
                let s = me.state.lock();
                s.socket.is_none() && s.disconnects == epoch
            };
            if still_gone {
                let why = format!(
                    "{} disconnected and did not reconnect within {grace:?}",
                    me.label()
                );
                me.fail_pending(&why);
            }
        });
    }

    /// Mark deleted, close the socket and fail every pending request.
    pub(crate) fn shut_down(&self, reason: &str) {
        let socket = {
            let mut s = self.state.lock();
            s.deleted = true;
            s.socket.take()
        };
        if let Some(sock) = socket {
            let _ = sock.tx.try_send(Outgoing::Close {
                code: 1000,
                reason: reason.into(),
            });
        }
        self.fail_pending(&format!("{}: {reason}", self.label()));
    }

    fn fail_pending(&self, why: &str) {
        let drained: Vec<Pending> = self.state.lock().pending.drain().map(|(_, p)| p).collect();
        for p in drained {
            let _ = p.tx.send(Err(why.to_string()));
        }
    }

    /// No socket and nothing pending for at least `ttl`.
    pub(crate) fn idle_for(&self, ttl: Duration) -> bool {
        let s = self.state.lock();
        s.pending.is_empty() && s.idle_since.is_some_and(|t| t.elapsed() >= ttl)
    }

    /// Queue a frame on the current socket, if any.
    fn send(&self, msg: &ServerMsg) -> bool {
        let text = serde_json::to_string(msg).expect("server messages serialize");
        let s = self.state.lock();
        match &s.socket {
            Some(sock) => sock.tx.try_send(Outgoing::Frame(text)).is_ok(),
            None => false,
        }
    }

    /// Route one client text frame. Returns an error frame to send back when the
    /// frame is unusable; a request it names is failed instead of left hanging.
    pub fn handle_frame(&self, text: &str) -> Option<ServerMsg> {
        let raw: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Some(error_frame(format!("frame is not JSON: {e}"), None)),
        };
        let req_id = raw
            .get("req_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let msg: ClientMsg = match serde_json::from_value(raw) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("malformed client message: {e}");
                tracing::warn!(sid = %self.sid, "{why}");
                if let Some(id) = &req_id {
                    if let Some(p) = self.state.lock().pending.remove(id) {
                        let _ = p.tx.send(Err(format!("{}: {why}", self.label())));
                    }
                }
                return Some(error_frame(why, req_id));
            }
        };
        let pending = self.state.lock().pending.remove(msg.req_id());
        match pending {
            Some(p) if p.kind.accepts(&msg) => {
                let _ = p.tx.send(Ok(msg));
                None
            }
            Some(p) => {
                let why = format!(
                    "unexpected {} reply to a {} request",
                    msg.type_name(),
                    p.kind.name()
                );
                let _ = p.tx.send(Err(format!("{}: {why}", self.label())));
                Some(error_frame(why, Some(msg.req_id().to_string())))
            }
            None => Some(error_frame(
                "unknown or already answered req_id".into(),
                Some(msg.req_id().to_string()),
            )),
        }
    }

    /// Send a request and wait for its reply, at most the reply timeout.
    async fn request(
        &self,
        kind: RequestKind,
        build: impl FnOnce(String) -> ServerMsg,
    ) -> Result<ClientMsg, String> {
        let req_id = format!("{}-{}-{}", self.sid, kind.tag(), uuid_v4());
        let (tx, rx) = oneshot::channel();
        let msg = build(req_id.clone());
        let text = serde_json::to_string(&msg).expect("server messages serialize");
        {
            let mut s = self.state.lock();
            if s.deleted {
                return Err(format!("{}: session deleted", self.label()));
            }
            let Some(sock) = &s.socket else {
                return Err(format!("{} disconnected", self.label()));
            };
            if sock.tx.try_send(Outgoing::Frame(text)).is_err() {
                return Err(format!("{}: outgoing queue full", self.label()));
            }
            s.pending.insert(req_id.clone(), Pending { kind, tx });
        }
        let _guard = PendingGuard {
            session: self,
            req_id: &req_id,
        };
        match tokio::time::timeout(self.cfg.reply_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(format!("{}: request dropped", self.label())),
            Err(_) => Err(format!(
                "{} did not answer {} within {:?}",
                self.label(),
                kind.name(),
                self.cfg.reply_timeout
            )),
        }
    }

    /// The `spawn` directive: guidance text for the operator's orchestrating agent.
    fn directive(&self, ctx: &SpawnCtx) -> String {
        let base = &self.cfg.public_base_url;
        let mut d = format!(
            "[agent_primitive dispatch=@{agent}]\n\
             worker endpoint:\n  GET {base}/v1/worker/prompt?task_id={task}\n  POST {base}/v1/worker/submit\n  \
             bearer: the worker_handle of this message\n\
             task_id: {task}\nagent_id: {agent}\n",
            agent = ctx.agent,
            task = ctx.task_id,
        );
        if let Some(alias) = &ctx.project_name_alias {
            d.push_str(&format!(
                "project_name_alias: {alias}\nCreate one task-level lds session with alias {alias} before \
                 launching the SubAgent and put the line `LDS Session Alias: {alias}` into its prompt.\n"
            ));
        }
        d.push_str(
            "Launch a SubAgent of type mse-worker (fallback: general-purpose) whose prompt is exactly four \
             lines: agent_id, worker_handle, base_url, task_id. The SubAgent fetches its system prompt and \
             prompt itself, acts as that agent, POSTs its raw output to /v1/worker/submit and replies with \
             one word. Then send spawn_ack with value {} and ok true. Do not fetch the prompt yourself, do \
             not wrap or summarise the SubAgent's reply.\n",
        );
        d
    }
}

/// Removes a pending entry when its waiter goes away (timeout, cancelled step).
struct PendingGuard<'a> {
    session: &'a OperatorSession,
    req_id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.session.state.lock().pending.remove(self.req_id);
    }
}

fn error_frame(message: String, req_id: Option<String>) -> ServerMsg {
    ServerMsg::Error { message, req_id }
}

#[async_trait::async_trait]
impl SeniorBridge for OperatorSession {
    async fn ask(&self, task: &TaskId, question: Value) -> Result<Value, String> {
        let reply = self
            .request(RequestKind::Ask, |req_id| ServerMsg::Ask {
                req_id,
                task_id: task.to_string(),
                question,
            })
            .await?;
        match reply {
            ClientMsg::Answer { value, .. } => Ok(value),
            other => Err(format!("unexpected {} reply", other.type_name())),
        }
    }
}

#[async_trait::async_trait]
impl SpawnHook for OperatorSession {
    async fn before(&self, ctx: &SpawnCtx) -> Result<(), String> {
        let reply = self
            .request(RequestKind::HookBefore, |req_id| ServerMsg::HookBefore {
                req_id,
                task_id: ctx.task_id.to_string(),
                agent: ctx.agent.to_string(),
                attempt: ctx.attempt,
            })
            .await?;
        match reply {
            ClientMsg::HookAck { ok: true, .. } => Ok(()),
            ClientMsg::HookAck { reason, .. } => {
                Err(reason.unwrap_or_else(|| "ws operator: spawn rejected".into()))
            }
            other => Err(format!("unexpected {} reply", other.type_name())),
        }
    }

    async fn after(&self, ctx: &SpawnCtx, result: &Value) {
        let req_id = format!("{}-ha-{}", self.sid, uuid_v4());
        self.send(&ServerMsg::HookAfter {
            req_id,
            task_id: ctx.task_id.to_string(),
            agent: ctx.agent.to_string(),
            attempt: ctx.attempt,
            result: result.clone(),
        });
    }
}

#[async_trait::async_trait]
impl OperatorBackend for OperatorSession {
    async fn execute(
        &self,
        ctx: &SpawnCtx,
        _system: Option<&str>,
        _prompt: &str,
    ) -> Result<(Value, bool), String> {
        let directive = self.directive(ctx);
        let reply = self
            .request(RequestKind::Spawn, |req_id| ServerMsg::Spawn {
                req_id,
                task_id: ctx.task_id.to_string(),
                agent: ctx.agent.to_string(),
                attempt: ctx.attempt,
                capability_token: ctx.worker_token.encode(),
                worker_handle: Some(ctx.worker_handle.to_string()),
                directive,
            })
            .await
            .map_err(|e| format!("ws operator spawn: {e}"))?;
        match reply {
            ClientMsg::SpawnAck { error: Some(e), .. } => {
                Err(format!("ws operator spawn: {} reported: {e}", self.label()))
            }
            ClientMsg::SpawnAck { value, ok, .. } => Ok((value, ok)),
            other => Err(format!("unexpected {} reply", other.type_name())),
        }
    }
}
