//! The data plane `/v1/data/*` (http-api.md §8): workers store large outputs
//! by id or producer name; they never influence flow results.
//!
//! Emit credential: `Authorization: Bearer` if the header is present (used
//! exclusively), else `?token=`. A full token is verified for `emit_output` and
//! bound to the body's `task_id`; a worker handle is accepted too (§14.15) and
//! must belong to that task. The store assigns ids (`out-` + 10 hex from the OS
//! RNG, §14.5).
//! Reads need no credential unless an admin token is configured (W11); then a
//! worker credential or the admin token is required.

use crate::auth::{bearer, classify, has_admin, Credential};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use mse_engine::{OutputEvent, TaskId, Verb};
use mse_store::OutputRecord;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct EmitBody {
    task_id: String,
    attempt: u32,
    producer_agent: String,
    event: OutputEvent,
    #[serde(default)]
    parent_refs: Vec<String>,
}

/// `POST /v1/data/{name}`: the producer is the path segment.
#[derive(Deserialize)]
pub struct NamedEmitBody {
    task_id: String,
    attempt: u32,
    event: OutputEvent,
    #[serde(default)]
    parent_refs: Vec<String>,
}

#[derive(Serialize)]
pub struct EmitReply {
    out_id: String,
}

/// The bearer of a data route: the header if present, else `?token=`.
fn credential<'a>(headers: &'a HeaderMap, query: &'a TokenQuery) -> Result<&'a str, ApiError> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        return bearer(headers, "token");
    }
    match query.token.as_deref().map(str::trim) {
        None => Err(ApiError::unauthorized(
            "missing token: pass 'Authorization: Bearer <token>' or '?token=<token>'",
        )),
        Some("") => Err(ApiError::unauthorized("token is empty")),
        Some(t) => Ok(t),
    }
}

/// Check that the credential may emit outputs for `task`.
fn authorize_emit(state: &AppState, value: &str, task: &TaskId) -> Result<(), ApiError> {
    let engine = state.engine();
    match classify(value)? {
        Credential::Handle(h) => {
            let target = engine
                .resolve_handle(h)
                .map_err(|e| ApiError::engine("data_emit verify", e))?;
            if &target.task_id != task {
                return Err(ApiError::forbidden(format!(
                    "data_emit verify: handle is bound to task {}, not {}",
                    target.task_id, task
                )));
            }
        }
        Credential::Token(token) => {
            engine
                .verify_for_task(&token, Verb::EmitOutput, task)
                .map_err(|e| ApiError::engine("data_emit verify", e))?;
        }
    }
    Ok(())
}

async fn store(state: &AppState, record: OutputRecord) -> Result<Json<EmitReply>, ApiError> {
    let out_id = state
        .outputs()
        .append(record)
        .await
        .map_err(|e| ApiError::store("output store", e))?;
    Ok(Json(EmitReply { out_id }))
}

pub async fn emit(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EmitBody>,
) -> Result<Json<EmitReply>, ApiError> {
    let value = credential(&headers, &q)?;
    let tid = TaskId::from(body.task_id.as_str());
    authorize_emit(&state, value, &tid)?;
    let record = OutputRecord {
        id: String::new(), // assigned by the store (`out-` + 10 hex, OS RNG)
        task_id: body.task_id,
        attempt: body.attempt,
        producer_agent: body.producer_agent,
        event: body.event,
        parent_refs: body.parent_refs,
    };
    store(&state, record).await
}

pub async fn emit_named(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NamedEmitBody>,
) -> Result<Json<EmitReply>, ApiError> {
    let value = credential(&headers, &q)?;
    let tid = TaskId::from(body.task_id.as_str());
    authorize_emit(&state, value, &tid)?;
    let record = OutputRecord {
        id: String::new(), // assigned by the store (`out-` + 10 hex, OS RNG)
        task_id: body.task_id,
        attempt: body.attempt,
        producer_agent: name,
        event: body.event,
        parent_refs: body.parent_refs,
    };
    store(&state, record).await
}

/// With an admin token configured: the admin token, a live worker handle, or a
/// valid token allowed to fetch data.
fn authorize_read(state: &AppState, headers: &HeaderMap, q: &TokenQuery) -> Result<(), ApiError> {
    if state.config().admin_token.is_none() || has_admin(state, headers, true) {
        return Ok(());
    }
    let value = credential(headers, q)?;
    let engine = state.engine();
    let cred = classify(value).map_err(|_| {
        ApiError::unauthorized("reading outputs requires the admin token or a worker credential")
    })?;
    match cred {
        Credential::Handle(h) => engine
            .resolve_handle(h)
            .map(|_| ())
            .map_err(|e| ApiError::engine("data read", e)),
        Credential::Token(token) => engine
            .verify(&token, Verb::FetchData)
            .map(|_| ())
            .map_err(|e| ApiError::engine("data read", e)),
    }
}

pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Json<OutputRecord>, ApiError> {
    authorize_read(&state, &headers, &q)?;
    match state.outputs().get(&key).await {
        Ok(Some(record)) => Ok(Json(record)),
        Ok(None) => Err(ApiError::not_found(format!(
            "output not found (id nor name): {key}"
        ))),
        Err(e) => Err(ApiError::store("output store", e)),
    }
}
