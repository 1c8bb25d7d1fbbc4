//! Reclamation of ended tasks and expired sessions (nothing grows without bound).

use crate::engine::{now_unix, Engine};
use crate::ids::senior_resume_key;
use std::sync::Arc;
use std::time::Instant;

impl Engine {
    /// Reclaim terminal tasks past their retention (or beyond the retained-task
    /// cap) and sessions whose token expired. Returns how many tasks were removed.
    pub fn sweep(&self) -> usize {
        let retention = self.inner.cfg.task_retention;
        let cap = self.inner.cfg.max_retained_tasks;
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut finished = self.inner.finished.lock();
            while let Some((at, _)) = finished.front() {
                if finished.len() > cap || now.duration_since(*at) >= retention {
                    let (_, tid) = finished.pop_front().expect("front exists");
                    due.push(tid);
                } else {
                    break;
                }
            }
        }
        for tid in &due {
            self.reclaim_task(tid);
        }
        self.reclaim_expired_sessions();
        due.len()
    }

    fn reclaim_task(&self, tid: &crate::ids::TaskId) {
        let Some((_, entry)) = self.inner.tasks.remove(tid) else {
            return;
        };
        let (nonces, handle) = {
            let mut t = entry.inner.lock();
            (std::mem::take(&mut t.worker_tokens), t.worker_handle.take())
        };
        for w in nonces {
            self.inner.tokens.remove(&w.nonce);
        }
        if let Some(h) = handle {
            self.inner.handles.remove(h.as_str());
        }
        if !self.inner.resumes.is_empty() {
            self.inner.resumes.remove(&senior_resume_key(tid));
        }
    }

    fn reclaim_expired_sessions(&self) {
        let now = now_unix();
        let mut expired = Vec::new();
        {
            let mut heap = self.inner.session_expiry.lock();
            while let Some(std::cmp::Reverse((at, _))) = heap.peek() {
                if *at > now {
                    break;
                }
                let std::cmp::Reverse((_, nonce)) = heap.pop().expect("peeked");
                expired.push(nonce);
            }
        }
        for nonce in expired {
            self.end_session(&nonce);
            self.inner.tokens.remove(&nonce);
        }
    }

    /// Run [`Engine::sweep`] every `sweep_interval` until the engine is dropped.
    pub fn start_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.cfg.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Engine { inner }.sweep();
            }
        })
    }
}
