//! Task operations: create, read, cancel, prompts, output tail, results, polling.

use crate::auth::{check_owner, HandleTarget};
use crate::engine::{now_unix, Engine, TaskEntry, TaskInner};
use crate::error::EngineError;
use crate::events::Event;
use crate::gate::{Role, Verb};
use crate::ids::TaskId;
use crate::output::{ContentRef, OutputEvent};
use crate::state::{TaskSpec, TaskState, TaskStatus};
use crate::token::CapToken;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a worker fetches before it starts (`GET /v1/worker/prompt`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerPayload {
    pub task_id: TaskId,
    pub attempt: u32,
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub prompt: String,
}

fn snapshot(id: &TaskId, t: &TaskInner) -> TaskState {
    TaskState {
        id: id.clone(),
        spec: TaskSpec {
            agent: t.agent.to_string(),
            initial_directive: t.directive.to_string(),
        },
        status: t.status,
        attempt: t.attempt,
        suspended_on: t.suspended_on.clone(),
        last_result: t.last_result.as_deref().cloned(),
        created_at: t.created_at,
        updated_at: t.updated_at,
        spawn_depth: t.spawn_depth,
    }
}

impl Engine {
    /// Create a task (`pending`). A worker token creates a child one level deeper
    /// than its own task, within `max_spawn_depth`.
    pub fn start_task(&self, token: &CapToken, spec: TaskSpec) -> Result<TaskId, EngineError> {
        let v = self.verify(token, Verb::StartTask)?;
        let mut depth = 0;
        if let Some(parent) = v.bound_task().and_then(|t| self.task_entry(t)) {
            let d = parent.inner.lock().spawn_depth;
            let max = self.inner.cfg.max_spawn_depth;
            if d + 1 >= max {
                return Err(EngineError::SpawnDepthExceeded {
                    current: d + 1,
                    max,
                });
            }
            depth = d + 1;
        }
        let tid = TaskId::generate();
        let now = now_unix();
        let directive: Arc<str> = spec.initial_directive.into();
        let inner = TaskInner {
            agent: spec.agent.into(),
            directive: directive.clone(),
            status: TaskStatus::Pending,
            attempt: 0,
            suspended_on: None,
            last_result: None,
            created_at: now,
            updated_at: now,
            spawn_depth: depth,
            creator: v.record.token.clone(),
            prompts: vec![(1, directive)],
            systems: Vec::new(),
            outputs: Vec::new(),
            worker_tokens: Vec::new(),
            worker_handle: None,
        };
        let entry = Arc::new(TaskEntry {
            id: tid.clone(),
            inner: parking_lot::Mutex::new(inner),
            changed: std::sync::OnceLock::new(),
            cancel: CancellationToken::new(),
        });
        self.inner.tasks.insert(tid.clone(), entry);
        if let Some(sid) = self.inner.session_by_nonce.get(&token.nonce) {
            if let Some(s) = self.inner.sessions.get(sid.value()) {
                let mut s = s.lock();
                // Bounded: only the most recent tasks are remembered per session.
                if s.owned_task_ids.len() >= 1024 {
                    s.owned_task_ids.pop_front();
                }
                s.owned_task_ids.push_back(tid.clone());
            }
        }
        self.events().record_and_broadcast(Event::TaskCreated {
            task_id: tid.clone(),
        });
        Ok(tid)
    }

    fn entry_or_err(&self, tid: &TaskId) -> Result<Arc<TaskEntry>, EngineError> {
        self.task_entry(tid)
            .ok_or_else(|| EngineError::TaskNotFound(tid.clone()))
    }

    pub fn read_task_state(
        &self,
        token: &CapToken,
        tid: &TaskId,
    ) -> Result<TaskState, EngineError> {
        self.verify_for_task(token, Verb::ReadTaskState, tid)?;
        self.task_snapshot(tid)
    }

    /// Snapshot without a credential (server-internal).
    pub fn task_snapshot(&self, tid: &TaskId) -> Result<TaskState, EngineError> {
        let e = self.entry_or_err(tid)?;
        let s = snapshot(tid, &e.inner.lock());
        Ok(s)
    }

    /// Cancel a task that has not ended; its running worker is stopped.
    pub fn cancel_task(&self, token: &CapToken, tid: &TaskId) -> Result<TaskState, EngineError> {
        self.verify_for_task(token, Verb::CancelTask, tid)?;
        self.cancel_task_trusted(tid)
    }

    pub fn cancel_task_trusted(&self, tid: &TaskId) -> Result<TaskState, EngineError> {
        let e = self.entry_or_err(tid)?;
        let snap = {
            let mut t = e.inner.lock();
            if t.status.is_terminal() {
                return Err(EngineError::InvalidTransition(format!(
                    "task {tid} already {}",
                    t.status.as_str()
                )));
            }
            self.end_task_locked(&e, &mut t, TaskStatus::Cancelled);
            snapshot(tid, &t)
        };
        e.cancel.cancel();
        e.notify();
        self.events().record(Event::TaskCancelled {
            task_id: tid.clone(),
        });
        Ok(snap)
    }

    /// Move a task to a terminal status: revoke its worker credentials and queue
    /// it for reclamation. Caller holds the task lock and notifies afterwards.
    pub(crate) fn end_task_locked(&self, e: &TaskEntry, t: &mut TaskInner, status: TaskStatus) {
        debug_assert!(status.is_terminal());
        t.status = status;
        t.suspended_on = None;
        t.updated_at = now_unix();
        let current = t.worker_tokens.last().map(|w| w.nonce.as_str());
        self.revoke_worker_credentials(current, t.worker_handle.take());
        self.inner
            .finished
            .lock()
            .push_back((Instant::now(), e.id.clone()));
    }

    pub fn fetch_prompt(&self, token: &CapToken, tid: &TaskId) -> Result<String, EngineError> {
        self.verify_for_task(token, Verb::FetchPrompt, tid)?;
        Ok(self.payload_of(tid)?.prompt)
    }

    pub fn fetch_worker_payload(
        &self,
        token: &CapToken,
        tid: &TaskId,
    ) -> Result<WorkerPayload, EngineError> {
        self.verify_for_task(token, Verb::FetchPrompt, tid)?;
        self.payload_of(tid)
    }

    /// Payload fetch through a resolved handle (no token verification).
    pub fn fetch_worker_payload_trusted(
        &self,
        target: &HandleTarget,
    ) -> Result<WorkerPayload, EngineError> {
        self.payload_of(&target.task_id)
    }

    fn payload_of(&self, tid: &TaskId) -> Result<WorkerPayload, EngineError> {
        let e = self.entry_or_err(tid)?;
        let t = e.inner.lock();
        let attempt = t.attempt.max(1);
        let prompt = t
            .prompts
            .iter()
            .rev()
            .find(|(a, _)| *a == attempt)
            .map(|(_, p)| p.to_string())
            .ok_or_else(|| {
                EngineError::ResourceNotFound(format!("prompt({tid}, attempt={attempt})"))
            })?;
        let system = t
            .systems
            .iter()
            .rev()
            .find(|(a, _)| *a == attempt)
            .and_then(|(_, s)| s.as_deref().map(str::to_string));
        Ok(WorkerPayload {
            task_id: tid.clone(),
            attempt,
            agent: t.agent.to_string(),
            system,
            prompt,
        })
    }

    pub fn fetch_data(&self, token: &CapToken, key: &str) -> Result<Value, EngineError> {
        self.verify(token, Verb::FetchData)?;
        self.inner
            .resources
            .get(key)
            .map(|v| v.value().clone())
            .ok_or_else(|| EngineError::ResourceNotFound(key.to_string()))
    }

    /// Store a system prompt for (task, attempt); returned by the payload fetch.
    pub fn bake_system_prompt(&self, tid: &TaskId, attempt: u32, system: Option<String>) {
        if let Some(e) = self.task_entry(tid) {
            e.inner
                .lock()
                .systems
                .push((attempt, system.map(Into::into)));
        }
    }

    pub fn task_attempt(&self, tid: &TaskId) -> Result<u32, EngineError> {
        Ok(self.entry_or_err(tid)?.inner.lock().attempt)
    }

    /// Append an event to (task, attempt)'s tail after verifying `emit_output`.
    pub fn submit_output(
        &self,
        token: &CapToken,
        tid: &TaskId,
        attempt: u32,
        event: OutputEvent,
    ) -> Result<(), EngineError> {
        let v = self.verify_for_task(token, Verb::EmitOutput, tid)?;
        check_attempt(v.token().role, v.bound_attempt(), attempt)?;
        self.append_output_checked(tid, attempt, event)
    }

    /// Append without a credential (in-process workers). Unknown tasks are ignored.
    pub fn append_output_trusted(&self, tid: &TaskId, attempt: u32, event: OutputEvent) {
        let _ = self.append_output_checked(tid, attempt, event);
    }

    fn append_output_checked(
        &self,
        tid: &TaskId,
        attempt: u32,
        event: OutputEvent,
    ) -> Result<(), EngineError> {
        let e = self.entry_or_err(tid)?;
        let max = self.inner.cfg.max_output_events_per_attempt;
        let event = Arc::new(event);
        {
            let mut t = e.inner.lock();
            let out = t.output_mut(attempt);
            if event.is_final() {
                out.last_final = Some(event.clone());
            }
            if out.events.len() < max {
                out.events.push(event.clone());
            } else {
                out.dropped += 1;
            }
        }
        self.events().record(Event::WorkerOutput {
            task_id: tid.clone(),
            attempt,
            event,
        });
        Ok(())
    }

    /// Copy of (task, attempt)'s output tail; empty when absent.
    pub fn output_tail(&self, tid: &TaskId, attempt: u32) -> Vec<OutputEvent> {
        self.task_entry(tid)
            .and_then(|e| {
                let t = e.inner.lock();
                t.output(attempt)
                    .map(|o| o.events.iter().map(|e| (**e).clone()).collect())
            })
            .unwrap_or_default()
    }

    pub fn has_final(&self, tid: &TaskId, attempt: u32) -> bool {
        self.task_entry(tid).is_some_and(|e| {
            e.inner
                .lock()
                .output(attempt)
                .is_some_and(|o| o.last_final.is_some())
        })
    }

    /// The last `final` of (task, attempt) as `(value, ok)`.
    pub fn last_final_of(&self, tid: &TaskId, attempt: u32) -> Option<(Value, bool)> {
        let e = self.task_entry(tid)?;
        let (content, ok) = self.last_final(&e, attempt)?;
        Some((content.into_result_value(), ok))
    }

    pub(crate) fn last_final(&self, e: &TaskEntry, attempt: u32) -> Option<(ContentRef, bool)> {
        e.inner
            .lock()
            .output(attempt)
            .and_then(|o| match o.last_final.as_deref() {
                Some(OutputEvent::Final { content, ok }) => Some((content.clone(), *ok)),
                _ => None,
            })
    }

    /// Worker result over HTTP (`/v1/worker/result`): append a `final` to `attempt`
    /// (default: current) and record it as `last_result`.
    pub fn post_result(
        &self,
        token: &CapToken,
        tid: &TaskId,
        value: Value,
        ok: bool,
        attempt: Option<u32>,
    ) -> Result<(), EngineError> {
        let v = self.verify_for_task(token, Verb::EmitOutput, tid)?;
        let current = self.task_attempt(tid)?;
        let attempt = attempt.unwrap_or(current);
        check_attempt(v.token().role, v.bound_attempt(), attempt)?;
        self.verify_for_task(token, Verb::PostResult, tid)?;
        self.submit_result_for(tid, attempt, value, ok)
    }

    /// Result submit through a handle: only while the handle's attempt is the
    /// running attempt of its task.
    pub fn submit_result_trusted(
        &self,
        target: &HandleTarget,
        value: Value,
        ok: bool,
    ) -> Result<(), EngineError> {
        let e = self.entry_or_err(&target.task_id)?;
        {
            let t = e.inner.lock();
            if t.attempt != target.attempt || t.status.is_terminal() {
                return Err(EngineError::StaleHandle(format!(
                    "task {} is at attempt {} ({}), handle is for attempt {}",
                    target.task_id,
                    t.attempt,
                    t.status.as_str(),
                    target.attempt
                )));
            }
        }
        self.submit_result_for(&target.task_id, target.attempt, value, ok)
    }

    fn submit_result_for(
        &self,
        tid: &TaskId,
        attempt: u32,
        value: Value,
        ok: bool,
    ) -> Result<(), EngineError> {
        let stored = Arc::new(value.clone());
        self.append_output_checked(tid, attempt, OutputEvent::final_inline(value, ok))?;
        let e = self.entry_or_err(tid)?;
        let mut t = e.inner.lock();
        t.last_result = Some(stored);
        t.updated_at = now_unix();
        Ok(())
    }

    /// Long-poll: returns at once when the task is settled (terminal or suspended)
    /// or `hold` is zero; otherwise waits for the next change up to `hold`.
    pub async fn poll_task(
        &self,
        token: &CapToken,
        tid: &TaskId,
        hold: Duration,
    ) -> Result<TaskState, EngineError> {
        let v = self.verify(token, Verb::PollTask)?;
        check_owner(&v, tid)?;
        let e = self.entry_or_err(tid)?;
        // Subscribe before reading so a change in between is not missed.
        let mut rx = e.subscribe();
        let snap = snapshot(tid, &e.inner.lock());
        if snap.status.is_terminal() || snap.status == TaskStatus::Suspended || hold.is_zero() {
            return Ok(snap);
        }
        match tokio::time::timeout(hold, rx.changed()).await {
            Ok(_) => {
                let s = snapshot(tid, &e.inner.lock());
                Ok(s)
            }
            Err(_) => Err(EngineError::PollTimeout),
        }
    }
}

/// Worker tokens are bound to one attempt: an explicit other attempt is refused.
fn check_attempt(role: Role, bound: u32, attempt: u32) -> Result<(), EngineError> {
    if role == Role::Worker && bound != 0 && bound != attempt {
        return Err(EngineError::StaleHandle(format!(
            "token is for attempt {bound}, not {attempt}"
        )));
    }
    Ok(())
}
