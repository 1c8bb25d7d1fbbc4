//! `/v1/worker/*`: a dispatched worker fetches its prompt and posts its result.
//!
//! Credentials (tokens.md §8, §10, hardened per decisions 6–7): a `wh-` handle
//! resolves to its task and attempt (unknown, expired or revoked → 401); a
//! capability token is fully verified — signature, expiry, role, record, task
//! binding — on every route, `/v1/worker/submit` included (W3). Verification
//! happens before any task lookup (§14.7). A handle may only submit for the
//! attempt it was minted for while that attempt runs (409 otherwise, W2).

use crate::auth::{bearer, classify, decode_token, is_handle, Credential};
use crate::error::ApiError;
use crate::extract::{JsonBody, Query, RawBody};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use mse_engine::{TaskId, WorkerPayload};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub struct PromptQuery {
    task_id: String,
}

pub async fn prompt(
    State(state): State<AppState>,
    Query(q): Query<PromptQuery>,
    headers: HeaderMap,
) -> Result<Json<WorkerPayload>, ApiError> {
    let value = bearer(&headers, "token")?;
    let engine = state.engine();
    let tid = TaskId::from(q.task_id);
    let payload = match classify(value)? {
        Credential::Handle(h) => {
            let target = engine
                .resolve_handle(h)
                .map_err(|e| ApiError::engine("worker handle", e))?;
            if target.task_id != tid {
                return Err(ApiError::forbidden(format!(
                    "handle is bound to task {}, not {}",
                    target.task_id, tid
                )));
            }
            engine.fetch_worker_payload_trusted(&target)
        }
        Credential::Token(token) => engine.fetch_worker_payload(&token, &tid),
    };
    payload
        .map(Json)
        .map_err(|e| ApiError::engine("fetch_worker_payload", e))
}

#[derive(Deserialize)]
pub struct ResultBody {
    task_id: String,
    /// Required; `null` allowed.
    value: Value,
    #[serde(default = "yes")]
    ok: bool,
    #[serde(default)]
    attempt: Option<u32>,
}

fn yes() -> bool {
    true
}

pub async fn result(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ResultBody>,
) -> Result<StatusCode, ApiError> {
    let value = bearer(&headers, "token")?;
    if is_handle(value) {
        return Err(ApiError::bad_request(
            "invalid token: /v1/worker/result takes a capability token, not a worker handle \
             (use /v1/worker/submit with a handle)",
        ));
    }
    let token = decode_token(value)?;
    let tid = TaskId::from(body.task_id);
    // post_result verifies the token (and the task binding) before it looks the
    // task up, so an unknown task is only reported to its own worker.
    state
        .engine()
        .post_result(&token, &tid, body.value, body.ok, body.attempt)
        .map_err(|e| ApiError::engine("post_result", e))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct SubmitQuery {
    #[serde(default)]
    ok: Option<bool>,
}

/// Raw body → lossy UTF-8 → trailing whitespace removed → JSON string.
fn submitted_text(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    Value::String(text.trim_end().to_string())
}

pub async fn submit(
    State(state): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<StatusCode, ApiError> {
    let ok = q.ok.unwrap_or(true);
    let value = bearer(&headers, "token")?;
    let engine = state.engine();
    match classify(value)? {
        Credential::Handle(h) => {
            let target = engine
                .resolve_handle(h)
                .map_err(|e| ApiError::engine("worker handle", e))?;
            engine
                .submit_result_trusted(&target, submitted_text(&bytes), ok)
                .map_err(|e| ApiError::engine("submit", e))?;
        }
        Credential::Token(token) => {
            let tid = engine
                .task_from_token(&token)
                .map_err(|e| ApiError::engine("task_from_token", e))?;
            engine
                .post_result(&token, &tid, submitted_text(&bytes), ok, None)
                .map_err(|e| ApiError::engine("post_result", e))?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submitted_text_is_trimmed_at_the_end_only() {
        assert_eq!(submitted_text(b"  BLOCKED\n\t "), Value::from("  BLOCKED"));
        assert_eq!(submitted_text(b""), Value::from(""));
        assert_eq!(submitted_text(b"a\xffb"), Value::from("a\u{fffd}b"));
    }
}
