//! `/v1/sessions`: attach an engine session (the token stays server-side; its
//! nonce is the session id) and detach it again.
//!
//! Hardening (tokens.md W4/W7): `senior` and `worker` sessions are refused (403),
//! and `DELETE` ends the session and revokes its token. With an admin token
//! configured both routes require it (`DELETE` only via `X-Admin-Token`, since
//! its Bearer is the session id).

use crate::auth::{bearer, AdminGuard};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use mse_engine::{AttachRequest, Role};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Deserialize)]
pub struct AttachBody {
    agent_id: String,
    role: String,
    ttl_secs: u64,
}

#[derive(Serialize)]
pub struct AttachReply {
    session_id: String,
    role: String,
}

pub async fn attach(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    JsonBody(body): JsonBody<AttachBody>,
) -> Result<Json<AttachReply>, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!("unknown role: {}", body.role.to_lowercase()))
    })?;
    if matches!(role, Role::Senior | Role::Worker) {
        return Err(ApiError::forbidden(format!(
            "role {} cannot be attached over HTTP (allowed: operator, observer)",
            role.as_str()
        )));
    }
    let attached = state.engine().attach(AttachRequest::new(
        body.agent_id,
        role,
        Duration::from_secs(body.ttl_secs),
    ));
    let token = attached.token;
    state
        .sessions()
        .insert(token.nonce.clone(), token.expire_at);
    Ok(Json(AttachReply {
        session_id: token.nonce.clone(),
        role: body.role,
    }))
}

pub async fn detach(
    State(state): State<AppState>,
    _admin: AdminGuard<false>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let sid = bearer(&headers, "sid")?;
    let expire_at = state
        .sessions()
        .remove(sid)
        .ok_or_else(|| ApiError::not_found("session: unknown session id"))?;
    // The id is consumed either way; the engine drops the session and its token.
    state.engine().end_session(sid);
    if mse_engine::now_unix() >= expire_at {
        return Err(ApiError::unauthorized("session token expired"));
    }
    Ok(StatusCode::NO_CONTENT)
}
