//! Dispatch: run one attempt of a task through a spawner and apply its verdict.

use crate::engine::{now_unix, Engine, TaskEntry};
use crate::error::EngineError;
use crate::events::Event;
use crate::gate::{Role, Verb};
use crate::ids::TaskId;
use crate::registry::OperatorInfo;
use crate::spawn::{SpawnCtx, SpawnError, Spawner};
use crate::state::{DispatchOutcome, TaskStatus};
use crate::token::CapToken;
use serde_json::Value;
use std::sync::Arc;

/// Marks the task cancelled if the dispatch future is dropped mid-attempt
/// (an abandoned fanout branch): the worker future is dropped with it.
struct AbandonGuard<'a> {
    engine: &'a Engine,
    entry: &'a Arc<TaskEntry>,
    armed: bool,
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let ended = {
            let mut t = self.entry.inner.lock();
            let live = !t.status.is_terminal();
            if live {
                self.engine
                    .end_task_locked(self.entry, &mut t, TaskStatus::Cancelled);
            }
            live
        };
        if ended {
            self.entry.cancel.cancel();
            self.entry.notify();
            self.engine.events().record(Event::TaskCancelled {
                task_id: self.entry.id.clone(),
            });
        }
    }
}

impl Engine {
    /// Run the next attempt of a `pending` task and return its verdict.
    ///
    /// Every failure path (spawn refused, worker error, no final, cancel) leaves the
    /// task terminal (`blocked` or `cancelled`) and wakes pollers.
    pub async fn dispatch_attempt(
        &self,
        token: &CapToken,
        tid: &TaskId,
        spawner: &dyn Spawner,
    ) -> Result<DispatchOutcome, EngineError> {
        let v = self.verify(token, Verb::DispatchAttempt)?;
        let entry = self
            .task_entry(tid)
            .ok_or_else(|| EngineError::TaskNotFound(tid.clone()))?;
        let (attempt, agent, prompt) = {
            let mut t = entry.inner.lock();
            if v.token().role == Role::Worker && t.creator.nonce != token.nonce {
                let bound = v.bound_task().cloned().unwrap_or_else(|| tid.clone());
                return Err(EngineError::TokenTaskMismatch {
                    bound,
                    arg: tid.clone(),
                });
            }
            if t.status != TaskStatus::Pending {
                return Err(EngineError::InvalidTransition(format!(
                    "task {tid} is {} and cannot be dispatched",
                    t.status.as_str()
                )));
            }
            t.attempt += 1;
            t.status = TaskStatus::Running;
            t.updated_at = now_unix();
            let attempt = t.attempt;
            let prompt = match t.prompts.iter().find(|(a, _)| *a == attempt) {
                Some((_, p)) => p.clone(),
                None => {
                    let p = t.directive.clone();
                    t.prompts.push((attempt, p.clone()));
                    p
                }
            };
            (attempt, t.agent.clone(), prompt)
        };
        entry.notify();
        let operator = self.resolve_operator(&token.nonce, &agent);
        let (worker_token, worker_handle) = self.mint_worker_credentials(tid, attempt);
        {
            let mut t = entry.inner.lock();
            if t.status.is_terminal() {
                drop(t);
                self.revoke_worker_credentials(Some(&worker_token.nonce), Some(worker_handle));
                return Err(EngineError::DispatchFailed("cancelled".into()));
            }
            t.worker_tokens.push(worker_token.clone());
            t.worker_handle = Some(worker_handle.clone());
        }
        let ctx = SpawnCtx {
            engine: self.clone(),
            task_id: tid.clone(),
            attempt,
            agent,
            prompt,
            worker_token,
            worker_handle,
            project_name_alias: None,
            operator,
            cancel: entry.cancel.clone(),
        };
        let mut guard = AbandonGuard {
            engine: self,
            entry: &entry,
            armed: true,
        };
        let result = tokio::select! {
            r = spawner.spawn(&ctx) => r,
            _ = entry.cancel.cancelled() => Err(SpawnError::cancelled()),
        };
        guard.armed = false;
        drop(ctx);
        let verdict = match result {
            Ok(()) => self
                .last_final(&entry, attempt)
                .ok_or_else(|| SpawnError::other("no Final in output_tail")),
            Err(e) => Err(e),
        };
        match verdict {
            Ok((content, ok)) => {
                self.apply_verdict(&entry, attempt, content.into_result_value(), ok)
            }
            Err(e) => Err(self.apply_failure(&entry, attempt, e)),
        }
    }

    fn apply_verdict(
        &self,
        entry: &TaskEntry,
        attempt: u32,
        value: Value,
        ok: bool,
    ) -> Result<DispatchOutcome, EngineError> {
        let result = Arc::new(value);
        {
            let mut t = entry.inner.lock();
            if !matches!(t.status, TaskStatus::Running | TaskStatus::Suspended) {
                return Err(EngineError::DispatchFailed("cancelled".into()));
            }
            t.last_result = Some(result.clone());
            let status = if ok {
                TaskStatus::Pass
            } else {
                TaskStatus::Blocked
            };
            self.end_task_locked(entry, &mut t, status);
        }
        let tid = entry.id.clone();
        let completed = Event::TaskAttemptCompleted {
            task_id: tid.clone(),
            attempt,
            result: result.clone(),
        };
        self.events().record_and_broadcast(completed);
        self.events().record(if ok {
            Event::TaskPass {
                task_id: tid,
                result: result.clone(),
            }
        } else {
            Event::TaskBlocked {
                task_id: tid,
                result: result.clone(),
            }
        });
        entry.notify();
        let value = Arc::try_unwrap(result).unwrap_or_else(|a| (*a).clone());
        Ok(if ok {
            DispatchOutcome::Pass(value)
        } else {
            DispatchOutcome::Blocked(value)
        })
    }

    fn apply_failure(&self, entry: &TaskEntry, attempt: u32, e: SpawnError) -> EngineError {
        {
            let mut t = entry.inner.lock();
            if !t.status.is_terminal() {
                self.end_task_locked(entry, &mut t, TaskStatus::Blocked);
            }
        }
        self.events().record(Event::TaskFailed {
            task_id: entry.id.clone(),
            attempt,
            error: e.0.clone(),
        });
        entry.notify();
        EngineError::DispatchFailed(e.0)
    }

    /// Operator tiers and bridges of the session that owns `nonce`.
    pub(crate) fn resolve_operator(&self, nonce: &str, agent: &str) -> OperatorInfo {
        let session = self.inner.session_by_nonce.get(nonce).and_then(|sid| {
            self.inner.sessions.get(sid.value()).map(|s| {
                let s = s.lock();
                (s.profile.clone(), s.operator_id.clone())
            })
        });
        let Some((profile, operator_id)) = session else {
            return OperatorInfo {
                kind: Default::default(),
                id: "default-automate".into(),
                ..Default::default()
            };
        };
        let reg = self.registries();
        OperatorInfo {
            kind: profile.kind_for(agent),
            id: operator_id.into(),
            bridge: profile
                .bridge_id
                .as_deref()
                .and_then(|id| reg.senior_bridge(id)),
            hook: profile.hook_id.as_deref().and_then(|id| reg.spawn_hook(id)),
            backend: profile
                .operator_backend_id
                .as_deref()
                .and_then(|id| reg.operator_backend(id)),
        }
    }
}
