//! The engine handle and its shared state.
//!
//! State is split into concurrent maps (tasks, token records, handles, sessions,
//! resume entries) so that every lookup is O(1) and no lock is ever held across an
//! `.await` or for work that grows with history: each critical section touches one
//! entry and is a few field updates long. Contention therefore never surfaces as
//! an error.

use crate::config::EngineConfig;
use crate::events::{Event, EventBus};
use crate::gate::RoleVerbGate;
use crate::ids::{SessionId, TaskId};
use crate::layers::LayerRegistry;
use crate::output::OutputEvent;
use crate::registry::Registries;
use crate::state::{OperatorSession, TaskStatus};
use crate::token::{CapToken, TokenSigner};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use crate::clock::now_unix;

/// Output of one attempt.
pub(crate) struct AttemptOutput {
    pub attempt: u32,
    pub events: Vec<Arc<OutputEvent>>,
    pub dropped: u64,
    pub last_final: Option<Arc<OutputEvent>>,
}

pub(crate) struct TaskInner {
    pub agent: Arc<str>,
    pub directive: Arc<str>,
    pub status: TaskStatus,
    pub attempt: u32,
    pub suspended_on: Option<String>,
    pub last_result: Option<Arc<Value>>,
    pub created_at: u64,
    pub updated_at: u64,
    pub spawn_depth: u32,
    /// The token that created the task (workers may only dispatch their own).
    pub creator: Arc<CapToken>,
    pub prompts: Vec<(u32, Arc<str>)>,
    pub systems: Vec<(u32, Option<Arc<str>>)>,
    pub outputs: Vec<AttemptOutput>,
    /// Worker tokens minted for this task, one per attempt (the last is current);
    /// revoked when the task ends, removed on reclamation.
    pub worker_tokens: Vec<Arc<CapToken>>,
    /// Handle of the current attempt, removed when the task ends.
    pub worker_handle: Option<crate::ids::WorkerHandle>,
}

impl TaskInner {
    pub fn output_mut(&mut self, attempt: u32) -> &mut AttemptOutput {
        if let Some(i) = self.outputs.iter().position(|o| o.attempt == attempt) {
            return &mut self.outputs[i];
        }
        self.outputs.push(AttemptOutput {
            attempt,
            events: Vec::new(),
            dropped: 0,
            last_final: None,
        });
        self.outputs.last_mut().expect("just pushed")
    }

    pub fn output(&self, attempt: u32) -> Option<&AttemptOutput> {
        self.outputs.iter().find(|o| o.attempt == attempt)
    }
}

pub(crate) struct TaskEntry {
    pub id: TaskId,
    pub inner: Mutex<TaskInner>,
    /// Bumped on every status change; created by the first poller, which
    /// subscribes before checking.
    pub changed: std::sync::OnceLock<watch::Sender<u64>>,
    /// Fires when the task is cancelled; running workers are dropped.
    pub cancel: CancellationToken,
}

impl TaskEntry {
    /// Wake pollers. Pollers subscribe before they read the state under the task
    /// lock, and this runs after the writer released that lock, so a poller that
    /// saw the old state is always counted here.
    pub fn notify(&self) {
        if let Some(tx) = self.changed.get() {
            if tx.receiver_count() > 0 {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed
            .get_or_init(|| watch::Sender::new(0))
            .subscribe()
    }
}

pub(crate) struct TokenRecord {
    pub token: Arc<CapToken>,
    /// Remaining uses; negative = unlimited.
    pub uses_left: AtomicI64,
    pub revoked: AtomicBool,
    pub task: Option<TaskId>,
    pub attempt: u32,
}

pub(crate) struct HandleRecord {
    pub token: Arc<CapToken>,
    pub task: TaskId,
    pub attempt: u32,
    pub expire_at: u64,
}

pub(crate) struct ResumeEntry {
    pub task: TaskId,
    pub answer: Mutex<Option<Value>>,
    pub answered: watch::Sender<bool>,
}

/// Keys are random ids minted here, so a fast hasher is safe: callers can only
/// look keys up, never choose what is inserted.
pub(crate) type Hasher = foldhash::fast::RandomState;

pub(crate) struct EngineInner {
    pub cfg: EngineConfig,
    pub signer: TokenSigner,
    pub gate: RoleVerbGate,
    pub tasks: DashMap<TaskId, Arc<TaskEntry>>,
    pub tokens: DashMap<String, Arc<TokenRecord>>,
    pub handles: DashMap<crate::ids::WorkerHandle, HandleRecord, Hasher>,
    pub sessions: DashMap<SessionId, Mutex<OperatorSession>>,
    pub session_by_nonce: DashMap<String, SessionId, Hasher>,
    pub resumes: DashMap<String, Arc<ResumeEntry>>,
    pub resources: DashMap<String, Value, Hasher>,
    pub events: EventBus,
    pub registries: Registries,
    pub layers: LayerRegistry,
    /// Terminal tasks in the order they ended, for retention.
    pub finished: Mutex<VecDeque<(Instant, TaskId)>>,
    /// Unbound (session) tokens by expiry, for reclamation.
    pub session_expiry: Mutex<BinaryHeap<Reverse<(u64, String)>>>,
    /// Unix seconds when this engine started; unrecorded tokens issued before it
    /// come from an earlier process with the same secret.
    pub started_at: u64,
}

/// The long-running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Counts of live engine state, for diagnostics and leak checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    pub tasks: usize,
    pub tokens: usize,
    pub handles: usize,
    pub sessions: usize,
    pub resumes: usize,
    pub retained_terminal_tasks: usize,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self::with_gate(cfg, RoleVerbGate::default())
    }

    /// An engine with a custom role x verb table.
    pub fn with_gate(cfg: EngineConfig, gate: RoleVerbGate) -> Self {
        let signer = match &cfg.token_secret {
            Some(s) => TokenSigner::new(s.clone()),
            None => TokenSigner::random(),
        };
        let events = EventBus::new(cfg.event_tail_max, cfg.event_channel_capacity);
        Self {
            inner: Arc::new(EngineInner {
                signer,
                gate,
                tasks: DashMap::default(),
                tokens: DashMap::default(),
                handles: DashMap::default(),
                sessions: DashMap::default(),
                session_by_nonce: DashMap::default(),
                resumes: DashMap::default(),
                resources: DashMap::default(),
                events,
                registries: Registries::default(),
                layers: LayerRegistry::default(),
                finished: Mutex::new(VecDeque::new()),
                session_expiry: Mutex::new(BinaryHeap::new()),
                started_at: now_unix(),
                cfg,
            }),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.inner.signer
    }

    pub fn registries(&self) -> &Registries {
        &self.inner.registries
    }

    pub fn layers(&self) -> &LayerRegistry {
        &self.inner.layers
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub fn event_tail(&self) -> Vec<Event> {
        self.inner.events.tail()
    }

    pub(crate) fn events(&self) -> &EventBus {
        &self.inner.events
    }

    pub(crate) fn task_entry(&self, tid: &TaskId) -> Option<Arc<TaskEntry>> {
        self.inner.tasks.get(tid).map(|e| e.value().clone())
    }

    /// Server-side resource for `fetch_data`.
    pub fn set_resource(&self, key: &str, value: Value) {
        self.inner.resources.insert(key.to_string(), value);
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            tasks: self.inner.tasks.len(),
            tokens: self.inner.tokens.len(),
            handles: self.inner.handles.len(),
            sessions: self.inner.sessions.len(),
            resumes: self.inner.resumes.len(),
            retained_terminal_tasks: self.inner.finished.lock().len(),
        }
    }
}
