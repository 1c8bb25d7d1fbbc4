//! Engine sessions: attach, detach, heartbeat, end, and the optional detach loop.

use crate::engine::{now_unix, Engine};
use crate::error::EngineError;
use crate::events::Event;
use crate::gate::{Role, Verb};
use crate::ids::SessionId;
use crate::state::{OperatorSession, SessionProfile};
use crate::token::CapToken;
use std::sync::Arc;
use std::time::Duration;

/// What a session is attached with.
#[derive(Clone, Debug)]
pub struct AttachRequest {
    pub operator_id: String,
    pub role: Role,
    pub ttl: Duration,
    pub profile: SessionProfile,
}

impl AttachRequest {
    pub fn new(operator_id: impl Into<String>, role: Role, ttl: Duration) -> Self {
        Self {
            operator_id: operator_id.into(),
            role,
            ttl,
            profile: SessionProfile::default(),
        }
    }

    pub fn profile(mut self, profile: SessionProfile) -> Self {
        self.profile = profile;
        self
    }
}

/// A session and its (unlimited-use) token.
#[derive(Clone, Debug)]
pub struct Attached {
    pub session_id: SessionId,
    pub token: Arc<CapToken>,
}

impl Engine {
    /// Create a session and mint its token (no credential needed).
    pub fn attach(&self, req: AttachRequest) -> Attached {
        let now = now_unix();
        let token = self.inner.signer.mint(
            &req.operator_id,
            req.role,
            vec!["*".into()],
            req.ttl.as_secs(),
            None,
            now,
        );
        let token = self.store_token(token, None, 0);
        let sid = SessionId::generate();
        let session = OperatorSession {
            id: sid.clone(),
            operator_id: req.operator_id,
            role: req.role,
            attached_at: now,
            last_seen: now,
            attached: true,
            owned_task_ids: Default::default(),
            token_nonce: token.nonce.clone(),
            profile: Arc::new(req.profile),
        };
        self.inner
            .session_by_nonce
            .insert(token.nonce.clone(), sid.clone());
        self.inner
            .sessions
            .insert(sid.clone(), parking_lot::Mutex::new(session));
        self.events().record_and_broadcast(Event::SessionAttached {
            session_id: sid.clone(),
            role: req.role,
        });
        Attached {
            session_id: sid,
            token,
        }
    }

    pub fn session(&self, sid: &SessionId) -> Option<OperatorSession> {
        self.inner.sessions.get(sid).map(|s| s.lock().clone())
    }

    /// Session owning a token nonce.
    pub fn session_by_nonce(&self, nonce: &str) -> Option<OperatorSession> {
        let sid = self.inner.session_by_nonce.get(nonce)?.value().clone();
        self.session(&sid)
    }

    /// Mark the caller's session detached. The token stays valid.
    pub fn detach(&self, token: &CapToken) -> Result<(), EngineError> {
        self.verify(token, Verb::DetachSession)?;
        if let Some(sid) = self
            .inner
            .session_by_nonce
            .get(&token.nonce)
            .map(|s| s.clone())
        {
            if let Some(s) = self.inner.sessions.get(&sid) {
                s.lock().attached = false;
            }
            self.events()
                .record(Event::SessionDetached { session_id: sid });
        }
        Ok(())
    }

    /// Refresh `last_seen` and re-attach.
    pub fn heartbeat(&self, token: &CapToken) -> Result<(), EngineError> {
        self.verify(token, Verb::Heartbeat)?;
        if let Some(sid) = self.inner.session_by_nonce.get(&token.nonce) {
            if let Some(s) = self.inner.sessions.get(sid.value()) {
                let mut s = s.lock();
                s.last_seen = now_unix();
                s.attached = true;
            }
        }
        Ok(())
    }

    /// Drop a session and revoke its token (end of a run, `DELETE /v1/sessions`).
    pub fn end_session(&self, nonce: &str) -> bool {
        let Some((_, sid)) = self.inner.session_by_nonce.remove(nonce) else {
            return self.revoke_token(nonce);
        };
        self.inner.sessions.remove(&sid);
        self.inner.tokens.remove(nonce);
        true
    }

    /// Detach sessions whose last heartbeat is older than interval x threshold.
    /// Returns the detached ids.
    pub fn detach_idle_sessions(&self) -> Vec<SessionId> {
        let cfg = &self.inner.cfg;
        let limit = cfg.heartbeat_interval.as_secs() * u64::from(cfg.heartbeat_miss_threshold);
        let now = now_unix();
        let mut detached = Vec::new();
        for s in self.inner.sessions.iter() {
            let mut s = s.lock();
            if s.attached && now.saturating_sub(s.last_seen) >= limit {
                s.attached = false;
                detached.push(s.id.clone());
            }
        }
        for sid in &detached {
            let ev = Event::SessionDetached {
                session_id: sid.clone(),
            };
            self.events().record_and_broadcast(ev);
        }
        detached
    }

    /// Start the detach loop (ticks every heartbeat interval). Stops with the engine.
    pub fn start_detach_loop(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.cfg.heartbeat_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Engine { inner }.detach_idle_sessions();
            }
        })
    }
}
