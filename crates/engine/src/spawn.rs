//! The worker-facing side of dispatch: what a spawner receives and returns.
//!
//! A [`Spawner`] turns one attempt into a running worker and returns when the
//! worker is done. Workers report through output events ([`SpawnCtx::emit`]); the
//! attempt's verdict is the last `final` event ([`SpawnCtx::finish`]). Dropping the
//! future returned by [`Spawner::spawn`] must stop the worker (kill its process,
//! interrupt its VM): that is how abandoned fanout branches and cancelled tasks
//! release their resources.

use crate::ids::{TaskId, WorkerHandle};
use crate::output::OutputEvent;
use crate::registry::OperatorInfo;
use crate::token::CapToken;
use crate::Engine;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything a worker needs for one attempt. Cheap to clone (shared parts are `Arc`s).
#[derive(Clone)]
pub struct SpawnCtx {
    pub engine: Engine,
    pub task_id: TaskId,
    pub attempt: u32,
    /// Agent name (= the step's `ref`).
    pub agent: Arc<str>,
    /// The directive ("prompt") of this attempt.
    pub prompt: Arc<str>,
    /// Worker capability token bound to this task and attempt.
    pub worker_token: Arc<CapToken>,
    /// Short bearer for self-fetch over HTTP (`wh-...`).
    pub worker_handle: WorkerHandle,
    /// The Blueprint's `metadata.project_name_alias`, set by the alias layer.
    pub project_name_alias: Option<Arc<str>>,
    /// Operator tiers and bridges resolved from the caller's session.
    pub operator: OperatorInfo,
    /// Fires when the task is cancelled.
    pub cancel: CancellationToken,
}

impl fmt::Debug for SpawnCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are deliberately left out.
        f.debug_struct("SpawnCtx")
            .field("task_id", &self.task_id)
            .field("attempt", &self.attempt)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl SpawnCtx {
    /// Append an output event to this attempt's tail.
    pub fn emit(&self, event: OutputEvent) {
        self.engine
            .append_output_trusted(&self.task_id, self.attempt, event);
    }

    /// Record the attempt's verdict: a `final` event with an inline value.
    pub fn finish(&self, value: Value, ok: bool) {
        self.emit(OutputEvent::final_inline(value, ok));
    }

    /// Whether a `final` event has already been recorded for this attempt.
    pub fn has_final(&self) -> bool {
        self.engine.has_final(&self.task_id, self.attempt)
    }

    /// The last `final` of this attempt as `(value, ok)`.
    pub fn last_final(&self) -> Option<(Value, bool)> {
        self.engine.last_final_of(&self.task_id, self.attempt)
    }

    /// Store the rendered system prompt returned by the worker payload fetch.
    pub fn bake_system_prompt(&self, system: Option<String>) {
        self.engine
            .bake_system_prompt(&self.task_id, self.attempt, system);
    }

    /// The `meta` object as the reference exposes it to workers.
    pub fn meta_json(&self) -> Value {
        let mut runtime = Map::new();
        let handle = Value::String(self.worker_handle.to_string());
        runtime.insert("worker_handle".into(), handle);
        if let Some(alias) = &self.project_name_alias {
            runtime.insert(
                "project_name_alias".into(),
                Value::String(alias.to_string()),
            );
        }
        serde_json::json!({"runtime": runtime, "authz": {}, "observer": {}, "loop_ns": {}})
    }
}

/// Why an attempt produced no verdict. The text is the dispatcher-visible reason
/// (wrapped by the engine as `dispatch failed: <text>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpawnError(pub String);

impl SpawnError {
    /// A worker function (Rust, Lua, ...) returned an error.
    pub fn worker_fn(msg: impl fmt::Display) -> Self {
        Self(format!("worker fn returned error: {msg}"))
    }
    /// The spawn could not be set up (process spawn, template render, ...).
    pub fn internal(msg: impl fmt::Display) -> Self {
        Self(format!("internal: {msg}"))
    }
    pub fn rejected(msg: impl fmt::Display) -> Self {
        Self(format!("spawn rejected by middleware: {msg}"))
    }
    pub fn not_registered(agent: &str) -> Self {
        Self(format!("worker not registered: {agent}"))
    }
    pub fn cancelled() -> Self {
        Self("cancelled".into())
    }
    /// Free-form reason, used verbatim.
    pub fn other(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Runs one attempt to completion.
#[async_trait::async_trait]
pub trait Spawner: Send + Sync + 'static {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError>;
}

/// Wraps a spawner with middleware (audit, hooks, escalation, delegation, ...).
pub trait SpawnerLayer: Send + Sync + 'static {
    fn wrap(&self, inner: Arc<dyn Spawner>) -> Arc<dyn Spawner>;
}
