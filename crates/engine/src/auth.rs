//! Token verification, the ownership gate, worker credentials and handles.

use crate::engine::{now_unix, Engine, HandleRecord, TokenRecord};
use crate::error::EngineError;
use crate::gate::{Role, Verb};
use crate::ids::{TaskId, WorkerHandle};
use crate::token::CapToken;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// A verified token and its server-side record.
pub struct Verified {
    pub(crate) record: Arc<TokenRecord>,
}

impl Verified {
    pub fn token(&self) -> &CapToken {
        &self.record.token
    }
    pub fn bound_task(&self) -> Option<&TaskId> {
        self.record.task.as_ref()
    }
    pub fn bound_attempt(&self) -> u32 {
        self.record.attempt
    }
}

/// Where a `wh-` handle points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleTarget {
    pub task_id: TaskId,
    pub attempt: u32,
    pub nonce: String,
}

impl Engine {
    /// Verify a presented token for `verb`: signature, expiry, role x verb, record,
    /// revocation and uses (one use is consumed), in that order.
    pub fn verify(&self, token: &CapToken, verb: Verb) -> Result<Verified, EngineError> {
        let record = self
            .inner
            .tokens
            .get(&token.nonce)
            .map(|r| r.value().clone());
        // A presented token identical to the one we minted carries a valid MAC by
        // construction; anything else is checked cryptographically.
        let identical = record.as_ref().is_some_and(|r| r.token.same_as(token));
        if !identical && !self.inner.signer.verify_mac(token) {
            return Err(EngineError::BadSignature);
        }
        if token.is_expired(now_unix()) {
            return Err(EngineError::TokenExpired);
        }
        if !self.inner.gate.allows(token.role, verb) {
            return Err(EngineError::RoleViolation {
                role: token.role,
                verb,
            });
        }
        let Some(record) = record.filter(|_| identical) else {
            return self.verify_from_previous_process(token);
        };
        if record.revoked.load(Ordering::Acquire) {
            return Err(EngineError::TokenRevoked);
        }
        let consumed = record
            .uses_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match n {
                n if n < 0 => Some(n),
                0 => None,
                n => Some(n - 1),
            });
        if consumed.is_err() {
            return Err(EngineError::TokenUsesExhausted);
        }
        Ok(Verified { record })
    }

    /// A correctly signed, unexpired token with no record, issued before this engine
    /// started, was minted by an earlier process with the same (persisted) secret.
    /// It is accepted with the binding its signed fields imply: a worker token is
    /// bound to the task named in `worker-of-<task>` (which no longer exists after a
    /// restart). Limited-use tokens cannot be counted and are refused.
    fn verify_from_previous_process(&self, token: &CapToken) -> Result<Verified, EngineError> {
        let not_found = || EngineError::TokenNotFound(format!("nonce={}", token.nonce));
        if token.issued_at >= self.inner.started_at || token.max_uses.is_some() {
            return Err(not_found());
        }
        let task = match token.role {
            Role::Worker => Some(TaskId::from(
                token
                    .agent_id
                    .strip_prefix("worker-of-")
                    .ok_or_else(not_found)?,
            )),
            _ => None,
        };
        Ok(Verified {
            record: Arc::new(TokenRecord {
                token: Arc::new(token.clone()),
                uses_left: AtomicI64::new(-1),
                revoked: AtomicBool::new(false),
                task,
                attempt: 0,
            }),
        })
    }

    /// Verify, then apply the ownership gate for worker tokens.
    pub fn verify_for_task(
        &self,
        token: &CapToken,
        verb: Verb,
        task: &TaskId,
    ) -> Result<Verified, EngineError> {
        let v = self.verify(token, verb)?;
        check_owner(&v, task)?;
        Ok(v)
    }

    pub(crate) fn store_token(
        &self,
        token: CapToken,
        task: Option<TaskId>,
        attempt: u32,
    ) -> Arc<CapToken> {
        let token = Arc::new(token);
        let uses = token.max_uses.map(i64::from).unwrap_or(-1);
        if task.is_none() {
            let mut heap = self.inner.session_expiry.lock();
            heap.push(Reverse((token.expire_at, token.nonce.clone())));
            // Ended sessions leave stale entries behind; compact once they dominate.
            if heap.len() > 1024 && heap.len() > 2 * self.inner.session_by_nonce.len() {
                let tokens = &self.inner.tokens;
                heap.retain(|Reverse((_, n))| n == &token.nonce || tokens.contains_key(n));
            }
        }
        self.inner.tokens.insert(
            token.nonce.clone(),
            Arc::new(TokenRecord {
                token: token.clone(),
                uses_left: AtomicI64::new(uses),
                revoked: AtomicBool::new(false),
                task,
                attempt,
            }),
        );
        token
    }

    /// Mint and record an unbound token (e.g. a one-time or limited-use token).
    pub fn mint_token(
        &self,
        agent_id: &str,
        role: Role,
        ttl_secs: u64,
        max_uses: Option<u32>,
    ) -> Arc<CapToken> {
        let token = self.inner.signer.mint(
            agent_id,
            role,
            vec!["*".into()],
            ttl_secs,
            max_uses,
            now_unix(),
        );
        self.store_token(token, None, 0)
    }

    /// Mint the worker token and handle of one attempt.
    pub(crate) fn mint_worker_credentials(
        &self,
        task: &TaskId,
        attempt: u32,
    ) -> (Arc<CapToken>, WorkerHandle) {
        let now = now_unix();
        let ttl = self.inner.cfg.worker_token_ttl.as_secs();
        let token = self.inner.signer.mint(
            &format!("worker-of-{task}"),
            Role::Worker,
            vec!["*".into()],
            ttl,
            None,
            now,
        );
        let expire_at = token.expire_at;
        let token = self.store_token(token, Some(task.clone()), attempt);
        let handle = WorkerHandle::generate();
        self.inner.handles.insert(
            handle.clone(),
            HandleRecord {
                token: token.clone(),
                task: task.clone(),
                attempt,
                expire_at,
            },
        );
        (token, handle)
    }

    /// Resolve a `wh-` handle. Unknown, expired or revoked handles are
    /// `TokenNotFound` (HTTP 401).
    pub fn resolve_handle(&self, handle: &str) -> Result<HandleTarget, EngineError> {
        let not_found = || EngineError::TokenNotFound(format!("handle={}", redact(handle)));
        let rec = self.inner.handles.get(handle).ok_or_else(not_found)?;
        if now_unix() >= rec.expire_at {
            return Err(not_found());
        }
        Ok(HandleTarget {
            task_id: rec.task.clone(),
            attempt: rec.attempt,
            nonce: rec.token.nonce.clone(),
        })
    }

    /// The task a worker token is bound to (for `/v1/worker/submit`).
    pub fn task_from_token(&self, token: &CapToken) -> Result<TaskId, EngineError> {
        let v = self.verify(token, Verb::PostResult)?;
        v.bound_task()
            .cloned()
            .ok_or_else(|| EngineError::TokenNotFound(format!("nonce={}", token.nonce)))
    }

    /// Revoke a token by nonce (e.g. `DELETE /v1/sessions`).
    pub fn revoke_token(&self, nonce: &str) -> bool {
        match self.inner.tokens.get(nonce) {
            Some(r) => {
                r.revoked.store(true, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Revoke the worker credentials of a task that has ended.
    pub(crate) fn revoke_worker_credentials(
        &self,
        nonce: Option<&str>,
        handle: Option<WorkerHandle>,
    ) {
        if let Some(h) = handle {
            self.inner.handles.remove(h.as_str());
        }
        if let Some(n) = nonce {
            self.revoke_token(n);
        }
    }
}

pub(crate) fn check_owner(v: &Verified, task: &TaskId) -> Result<(), EngineError> {
    if v.record.token.role != Role::Worker {
        return Ok(());
    }
    match &v.record.task {
        Some(bound) if bound == task => Ok(()),
        Some(bound) => Err(EngineError::TokenTaskMismatch {
            bound: bound.clone(),
            arg: task.clone(),
        }),
        None => Err(EngineError::TokenNotFound(format!(
            "nonce={}",
            v.record.token.nonce
        ))),
    }
}

/// Show only a prefix of a bearer in messages.
fn redact(s: &str) -> String {
    let keep: String = s.chars().take(7).collect();
    format!("{keep}…")
}
