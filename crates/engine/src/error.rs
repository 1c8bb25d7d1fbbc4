//! Engine error kinds (engine.md section 15).

use crate::gate::{Role, Verb};
use crate::ids::TaskId;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("token signature invalid")]
    BadSignature,
    #[error("token expired")]
    TokenExpired,
    #[error("role violation: role={role} verb={verb}")]
    RoleViolation { role: Role, verb: Verb },
    #[error("token not found in store ({0})")]
    TokenNotFound(String),
    #[error("token uses exhausted")]
    TokenUsesExhausted,
    #[error("token revoked")]
    TokenRevoked,
    #[error("token task mismatch: token bound to {bound}, arg was {arg}")]
    TokenTaskMismatch { bound: TaskId, arg: TaskId },
    #[error("task not found: {0}")]
    TaskNotFound(TaskId),
    #[error("session not found")]
    SessionNotFound,
    #[error("resume key not found")]
    ResumeKeyNotFound,
    #[error("resource not found: {0}")]
    ResourceNotFound(String),
    #[error("invalid state transition: {0}")]
    InvalidTransition(String),
    #[error("dispatch failed: {0}")]
    DispatchFailed(String),
    #[error("poll timeout")]
    PollTimeout,
    #[error("cancelled")]
    Cancelled,
    #[error("spawn depth exceeded: {current} >= max {max}")]
    SpawnDepthExceeded { current: u32, max: u32 },
    #[error("handle not valid for this attempt: {0}")]
    StaleHandle(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl EngineError {
    /// Credential problems: unknown, forged or expired (HTTP 401).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            EngineError::BadSignature
                | EngineError::TokenExpired
                | EngineError::TokenNotFound(_)
                | EngineError::TokenUsesExhausted
                | EngineError::TokenRevoked
        )
    }

    /// Valid credential, operation not allowed (HTTP 403).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            EngineError::RoleViolation { .. } | EngineError::TokenTaskMismatch { .. }
        )
    }
}
