//! The registry of operator login sessions and their role claims.

use crate::session::{OperatorSession, Outgoing};
use crate::OperatorConfig;
use mse_engine::Engine;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What `POST /v1/operators` returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Minted {
    pub sid: String,
    pub token: String,
    pub roles: Vec<String>,
}

/// What `GET /v1/operators/{sid}` returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionInfo {
    pub sid: String,
    pub roles: Vec<String>,
    pub connected: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MintError {
    #[error("roles conflict")]
    Conflict(Vec<String>),
    #[error(
        "invalid role {0:?}: use 1-64 characters from [A-Za-z0-9._-], not starting with 'op-'"
    )]
    InvalidRole(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing or empty Bearer token")]
    Missing,
    #[error("unknown sid")]
    UnknownSid,
    #[error("token mismatch")]
    Mismatch,
}

/// A socket attached to a session: its generation and the frames to write.
pub struct Connection {
    pub session: Arc<OperatorSession>,
    pub generation: u64,
    pub outgoing: mpsc::Receiver<Outgoing>,
}

#[derive(Default)]
struct HubState {
    sessions: HashMap<String, Arc<OperatorSession>>,
    /// role alias -> sid
    roles: HashMap<String, String>,
}

pub struct OperatorHub {
    engine: Engine,
    cfg: Arc<OperatorConfig>,
    state: Mutex<HubState>,
}

pub fn validate_role(role: &str) -> bool {
    (1..=64).contains(&role.len())
        && !role.starts_with("op-")
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl OperatorHub {
    pub fn new(engine: Engine, cfg: OperatorConfig) -> Arc<Self> {
        Arc::new(Self {
            engine,
            cfg: Arc::new(cfg),
            state: Mutex::new(HubState::default()),
        })
    }

    pub fn config(&self) -> &OperatorConfig {
        &self.cfg
    }

    /// Mint a session and claim its roles, all or nothing.
    pub fn mint(&self, roles: Vec<String>) -> Result<Minted, MintError> {
        if let Some(bad) = roles.iter().find(|r| !validate_role(r)) {
            return Err(MintError::InvalidRole(bad.clone()));
        }
        let sid = format!("op-{}", crate::protocol::uuid_v4());
        let token = mse_engine::ids::random_hex(16);
        let mut st = self.state.lock();
        let conflicts: Vec<String> = roles
            .iter()
            .filter(|r| st.roles.contains_key(*r))
            .cloned()
            .collect();
        if !conflicts.is_empty() {
            return Err(MintError::Conflict(conflicts));
        }
        for r in &roles {
            st.roles.insert(r.clone(), sid.clone());
        }
        let mut unique = roles.clone();
        unique.sort();
        unique.dedup();
        let session = OperatorSession::new(sid.clone(), token.clone(), unique, self.cfg.clone());
        st.sessions.insert(sid.clone(), Arc::new(session));
        Ok(Minted { sid, token, roles })
    }

    /// Bearer, then sid, then token (constant time).
    pub fn authenticate(
        &self,
        sid: &str,
        bearer: Option<&str>,
    ) -> Result<Arc<OperatorSession>, AuthError> {
        let token = bearer
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let session = self.get(sid).ok_or(AuthError::UnknownSid)?;
        if session.token_matches(token) {
            Ok(session)
        } else {
            Err(AuthError::Mismatch)
        }
    }

    pub fn get(&self, sid: &str) -> Option<Arc<OperatorSession>> {
        self.state.lock().sessions.get(sid).cloned()
    }

    pub fn info(&self, session: &OperatorSession) -> SessionInfo {
        SessionInfo {
            sid: session.sid.clone(),
            roles: session.roles.clone(),
            connected: session.is_connected(),
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attach a socket. The first attach registers the session with the engine:
    /// under its sid as senior bridge, spawn hook and operator backend, and under
    /// each role as operator backend.
    ///
    /// Registration and [`OperatorHub::delete`]'s unregistration both run under
    /// the hub lock, so a connect racing a delete cannot leave a deleted session
    /// registered, and a delete cannot unregister a role that a newer session has
    /// already claimed and registered.
    pub fn connect(&self, session: &Arc<OperatorSession>) -> Option<Connection> {
        let (generation, outgoing, first) = session.attach()?;
        if first {
            let st = self.state.lock();
            if !st
                .sessions
                .get(&session.sid)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                // Deleted after `attach`: its close request is in `outgoing`.
                return None;
            }
            let reg = self.engine.registries();
            reg.register_senior_bridge(&session.sid, session.clone());
            reg.register_spawn_hook(&session.sid, session.clone());
            reg.register_operator_backend(&session.sid, session.clone());
            for role in &session.roles {
                reg.register_operator_backend(role, session.clone());
            }
        }
        Some(Connection {
            session: session.clone(),
            generation,
            outgoing,
        })
    }

    /// Delete a session: unregister it, release its roles, close its socket and
    /// fail its pending requests.
    pub fn delete(&self, sid: &str) -> bool {
        let session = {
            let mut st = self.state.lock();
            let Some(session) = st.sessions.remove(sid) else {
                return false;
            };
            st.roles.retain(|_, owner| owner != sid);
            // Under the lock: once a role is released, a new owner may register it.
            let reg = self.engine.registries();
            reg.unregister_senior_bridge(sid);
            reg.unregister_spawn_hook(sid);
            reg.unregister_operator_backend(sid);
            for role in &session.roles {
                reg.unregister_operator_backend(role);
            }
            session
        };
        session.shut_down("session deleted");
        true
    }

    /// Delete sessions with no socket and nothing pending for `idle_ttl`.
    pub fn reap_idle(&self) -> usize {
        let ttl = self.cfg.idle_ttl;
        if ttl.is_zero() {
            return 0;
        }
        let idle: Vec<String> = self
            .state
            .lock()
            .sessions
            .values()
            .filter(|s| s.idle_for(ttl))
            .map(|s| s.sid.clone())
            .collect();
        idle.iter().filter(|sid| self.delete(sid)).count()
    }

    /// Reap idle sessions periodically until the hub is dropped.
    pub fn start_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let period = (self.cfg.idle_ttl / 4).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(60),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(hub) = weak.upgrade() else { return };
                hub.reap_idle();
            }
        })
    }
}
