//! Engine events: a bounded tail plus a broadcast stream.

use crate::gate::Role;
use crate::ids::{SessionId, TaskId};
use crate::output::OutputEvent;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    SessionAttached {
        session_id: SessionId,
        role: Role,
    },
    SessionDetached {
        session_id: SessionId,
    },
    TaskCreated {
        task_id: TaskId,
    },
    TaskAttemptStarted {
        task_id: TaskId,
        attempt: u32,
    },
    TaskAttemptCompleted {
        task_id: TaskId,
        attempt: u32,
        result: Arc<Value>,
    },
    TaskPass {
        task_id: TaskId,
        result: Arc<Value>,
    },
    TaskBlocked {
        task_id: TaskId,
        result: Arc<Value>,
    },
    /// A dispatch that ended without a verdict (worker error, spawn refused, cancel).
    TaskFailed {
        task_id: TaskId,
        attempt: u32,
        error: String,
    },
    WorkerOutput {
        task_id: TaskId,
        attempt: u32,
        event: Arc<OutputEvent>,
    },
    TaskSuspended {
        task_id: TaskId,
        key: String,
    },
    TaskResumed {
        task_id: TaskId,
        key: String,
    },
    TaskCancelled {
        task_id: TaskId,
    },
    SeniorQueried {
        task_id: TaskId,
        question: Value,
    },
    SeniorAnswered {
        task_id: TaskId,
        answer: Value,
    },
}

/// Bounded tail (oldest dropped) and a broadcast channel (slow subscribers lag).
pub struct EventBus {
    tail: Mutex<VecDeque<Event>>,
    tail_max: usize,
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(tail_max: usize, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            tail: Mutex::new(VecDeque::with_capacity(tail_max.min(1024))),
            tail_max,
            tx,
        }
    }

    pub fn record(&self, ev: Event) {
        if self.tail_max == 0 {
            return;
        }
        let mut tail = self.tail.lock();
        if tail.len() >= self.tail_max {
            tail.pop_front();
        }
        tail.push_back(ev);
    }

    pub fn broadcast(&self, ev: Event) {
        // No subscribers is not an error.
        let _ = self.tx.send(ev);
    }

    pub fn record_and_broadcast(&self, ev: Event) {
        if self.tx.receiver_count() > 0 {
            self.broadcast(ev.clone());
        }
        self.record(ev);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn tail(&self) -> Vec<Event> {
        self.tail.lock().iter().cloned().collect()
    }
}
