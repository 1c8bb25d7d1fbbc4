//! Senior suspend / resume / await.

use crate::engine::{now_unix, Engine, ResumeEntry};
use crate::error::EngineError;
use crate::events::Event;
use crate::gate::Verb;
use crate::ids::{senior_resume_key, TaskId};
use crate::state::TaskStatus;
use crate::token::CapToken;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

impl Engine {
    /// Suspend a live task on a senior question; returns the resume key.
    /// A repeated query on the same task keeps the existing entry (and any waiters).
    pub fn query_senior(
        &self,
        token: &CapToken,
        tid: &TaskId,
        question: Value,
    ) -> Result<String, EngineError> {
        self.verify(token, Verb::QuerySenior)?;
        let entry = self
            .task_entry(tid)
            .ok_or_else(|| EngineError::TaskNotFound(tid.clone()))?;
        let key = senior_resume_key(tid);
        {
            let mut t = entry.inner.lock();
            if t.status.is_terminal() {
                return Err(EngineError::InvalidTransition(format!(
                    "task {tid} already {}",
                    t.status.as_str()
                )));
            }
            t.status = TaskStatus::Suspended;
            t.suspended_on = Some(key.clone());
            t.updated_at = now_unix();
        }
        let fresh = || {
            Arc::new(ResumeEntry {
                task: tid.clone(),
                answer: parking_lot::Mutex::new(None),
                answered: watch::Sender::new(false),
            })
        };
        self.inner
            .resumes
            .entry(key.clone())
            .and_modify(|e| {
                // An already answered entry starts a new question.
                if e.answer.lock().is_some() {
                    *e = fresh();
                }
            })
            .or_insert_with(fresh);
        self.events().record(Event::SeniorQueried {
            task_id: tid.clone(),
            question: question.clone(),
        });
        self.events().record(Event::TaskSuspended {
            task_id: tid.clone(),
            key: key.clone(),
        });
        entry.notify();
        self.events().broadcast(Event::SeniorQueried {
            task_id: tid.clone(),
            question,
        });
        Ok(key)
    }

    /// Answer a senior question. Requires a `senior` token with `answer_query`.
    pub fn resume(&self, token: &CapToken, key: &str, answer: Value) -> Result<(), EngineError> {
        self.verify(token, Verb::AnswerQuery)?;
        self.resume_trusted(key, answer)
    }

    /// Answer without a credential (server-internal bridges).
    pub fn resume_trusted(&self, key: &str, answer: Value) -> Result<(), EngineError> {
        let entry = self
            .inner
            .resumes
            .get(key)
            .map(|e| e.value().clone())
            .ok_or(EngineError::ResumeKeyNotFound)?;
        *entry.answer.lock() = Some(answer.clone());
        let mut resumed = false;
        if let Some(task) = self.task_entry(&entry.task) {
            {
                let mut t = task.inner.lock();
                if t.status == TaskStatus::Suspended && t.suspended_on.as_deref() == Some(key) {
                    t.suspended_on = None;
                    t.status = TaskStatus::Running;
                    t.updated_at = now_unix();
                    resumed = true;
                }
            }
            if resumed {
                self.events().record(Event::TaskResumed {
                    task_id: entry.task.clone(),
                    key: key.to_string(),
                });
                self.events().record(Event::SeniorAnswered {
                    task_id: entry.task.clone(),
                    answer,
                });
            }
            task.notify();
        }
        entry.answered.send_replace(true);
        if resumed {
            self.events().broadcast(Event::TaskResumed {
                task_id: entry.task.clone(),
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// Wait for the answer to `key`, at most `timeout`. Repeatable once answered.
    pub async fn await_resume(&self, key: &str, timeout: Duration) -> Result<Value, EngineError> {
        let entry = self
            .inner
            .resumes
            .get(key)
            .map(|e| e.value().clone())
            .ok_or(EngineError::ResumeKeyNotFound)?;
        let mut rx = entry.answered.subscribe();
        if let Some(a) = entry.answer.lock().clone() {
            return Ok(a);
        }
        if timeout.is_zero() {
            return Err(EngineError::PollTimeout);
        }
        let waited = tokio::time::timeout(timeout, rx.wait_for(|answered| *answered))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => entry
                .answer
                .lock()
                .clone()
                .ok_or_else(|| EngineError::Internal("notified but answer missing".into())),
            Ok(Err(_)) => Err(EngineError::Internal("resume entry dropped".into())),
            Err(_) => Err(EngineError::PollTimeout),
        }
    }
}
