//! The enhance surface over HTTP (http-api.md §10–§12): issues, enhance settings
//! and the enhance log. JSON errors (decision 3); every write needs the admin
//! token when one is configured (decision 9).
//!
//! | Route | Success | Errors |
//! |---|---|---|
//! | `POST /v1/issues` `{blueprint_id, intent}` | 201 `{issue_id, status:"pending"}` | 400 blank intent or invalid id, 404 unknown blueprint, 409 archived |
//! | `GET /v1/issues?status=&limit=` | 200 issues, newest first (default 50, at most 1000) | 400 unknown status |
//! | `GET /v1/issues/{id}` | 200 `{issue_id, status, blueprint_id, intent, reason, new_version, attempts, …}` | 404 |
//! | `GET /v1/enhance-settings` | 200 ids ascending | |
//! | `POST /v1/enhance-settings` | 201 stored form (upsert) | 400/409/503 committing its Blueprint |
//! | `GET /v1/enhance-settings/{id}` | 200 stored form | 404 |
//! | `PUT /v1/enhance-settings/{id}` | 200 stored form (creates if absent) | 400 path id ≠ body id |
//! | `DELETE /v1/enhance-settings/{id}` | 204 | 404 |
//! | `GET /v1/enhance/log?blueprint_id=&status=&limit=` | 200 entries, oldest first | 400 |
//! | `GET /v1/enhance/log/{issue_id}` | 200 entry | 404 |

use crate::auth::AdminGuard;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mse_blueprint::Blueprint;
use mse_store::{validate_blueprint_id, EnhanceSetting, IssueStatus, VersionSelector};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

const DEFAULT_LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub struct NewIssue {
    blueprint_id: String,
    intent: String,
}

/// `POST /v1/issues`: queue an enhance issue against a live Blueprint.
pub async fn create_issue(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    JsonBody(body): JsonBody<NewIssue>,
) -> Result<Response, ApiError> {
    if body.intent.trim().is_empty() {
        return Err(ApiError::bad_request("intent must be non-empty"));
    }
    validate_blueprint_id(&body.blueprint_id).map_err(|e| ApiError::store("blueprint_id", e))?;
    state
        .blueprints()
        .read_head(&body.blueprint_id)
        .await
        .map_err(|e| ApiError::store("blueprint", e))?;
    let issue = state
        .issues()
        .create(&body.blueprint_id, &body.intent)
        .await
        .map_err(|e| ApiError::store("issue store", e))?;
    let reply = json!({"issue_id": issue.id, "status": issue.status.as_str()});
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

#[derive(Deserialize)]
pub struct IssueQuery {
    status: Option<String>,
    limit: Option<usize>,
}

fn limit_of(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT)
}

/// `GET /v1/issues`: newest first, optionally by status.
pub async fn list_issues(
    State(state): State<AppState>,
    Query(q): Query<IssueQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<IssueStatus>().map_err(|_| {
            ApiError::bad_request(format!(
                "unknown status {s:?}: expected pending, in_flight, applied or rejected"
            ))
        })?),
    };
    let issues = state
        .issues()
        .list(status, limit_of(q.limit))
        .await
        .map_err(|e| ApiError::store("issue store", e))?;
    Ok(Json(json!(issues)))
}

/// `GET /v1/issues/{id}`.
pub async fn get_issue(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.issues().get(&id).await {
        Ok(Some(issue)) => Ok(Json(json!(issue))),
        Ok(None) => Err(ApiError::not_found(format!("issue not found: {id}"))),
        Err(e) => Err(ApiError::store("issue store", e)),
    }
}

/// The input form of a setting: the orchestrator Blueprint inline (committed to
/// the store), or the id of one already stored.
#[derive(Deserialize)]
pub struct SettingInput {
    id: String,
    blueprint: Option<Value>,
    blueprint_id: Option<String>,
    ttl_secs: u64,
    #[serde(default)]
    version: VersionSelector,
    verifier_axes: Option<Vec<String>>,
    meta: Option<Value>,
}

async fn store_setting(
    state: &AppState,
    input: SettingInput,
    verb: &str,
) -> Result<EnhanceSetting, ApiError> {
    let blueprint_id = match (input.blueprint, input.blueprint_id) {
        (Some(raw), _) => {
            let bp = Blueprint::from_value(raw)
                .map_err(|e| ApiError::bad_request(format!("blueprint parse: {e}")))?;
            let bp = Arc::new(bp);
            let rationale = format!(
                "enhance-setting {verb} id={} blueprint_id={}",
                input.id, bp.id
            );
            state
                .blueprints()
                .write_new(bp.clone(), None, &rationale, None, None)
                .await
                .map_err(|e| ApiError::store("bp commit", e))?;
            bp.id.clone()
        }
        (None, Some(id)) => {
            state
                .blueprints()
                .read_head(&id)
                .await
                .map_err(|e| ApiError::store("blueprint", e))?;
            id
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "either blueprint or blueprint_id is required",
            ))
        }
    };
    let mut setting = EnhanceSetting::new(input.id, blueprint_id, input.ttl_secs);
    setting.version = input.version;
    if let Some(axes) = input.verifier_axes {
        setting.verifier_axes = axes;
    }
    if let Some(meta) = input.meta {
        setting.meta = meta;
    }
    state
        .enhance_settings()
        .put(setting.clone())
        .await
        .map_err(|e| ApiError::store("setting store", e))?;
    Ok(setting)
}

/// `GET /v1/enhance-settings`: ids, ascending.
pub async fn list_settings(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let ids = state
        .enhance_settings()
        .list()
        .await
        .map_err(|e| ApiError::store("setting store", e))?;
    Ok(Json(json!(ids)))
}

/// `POST /v1/enhance-settings`: create or overwrite.
pub async fn create_setting(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    JsonBody(input): JsonBody<SettingInput>,
) -> Result<Response, ApiError> {
    let setting = store_setting(&state, input, "POST").await?;
    Ok((StatusCode::CREATED, Json(json!(setting))).into_response())
}

/// `GET /v1/enhance-settings/{id}`.
pub async fn get_setting(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.enhance_settings().get(&id).await {
        Ok(Some(s)) => Ok(Json(json!(s))),
        Ok(None) => Err(ApiError::not_found(format!(
            "enhance setting not found: {id}"
        ))),
        Err(e) => Err(ApiError::store("setting store", e)),
    }
}

/// `PUT /v1/enhance-settings/{id}`: the body's id must equal the path's.
pub async fn put_setting(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SettingInput>,
) -> Result<Json<Value>, ApiError> {
    if input.id != id {
        return Err(ApiError::bad_request(format!(
            "path id {id:?} != body id {:?}",
            input.id
        )));
    }
    Ok(Json(json!(store_setting(&state, input, "PUT").await?)))
}

/// `DELETE /v1/enhance-settings/{id}` (the Blueprint history is untouched).
pub async fn delete_setting(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.enhance_settings().delete(&id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(format!(
            "enhance setting not found: {id}"
        ))),
        Err(e) => Err(ApiError::store("setting store", e)),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    blueprint_id: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/enhance/log`: oldest first, filtered by Blueprint id and status.
pub async fn list_log(
    State(state): State<AppState>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = q.status.as_deref() {
        if !matches!(s, "applied" | "rejected") {
            return Err(ApiError::bad_request(format!(
                "unknown status {s:?}: expected applied or rejected"
            )));
        }
    }
    let entries = state
        .enhance_log()
        .list(
            q.blueprint_id.as_deref(),
            q.status.as_deref(),
            limit_of(q.limit.or(Some(MAX_LIST_LIMIT))),
        )
        .await
        .map_err(|e| ApiError::store("enhance log store", e))?;
    Ok(Json(json!(entries)))
}

/// `GET /v1/enhance/log/{issue_id}`.
pub async fn get_log(
    State(state): State<AppState>,
    Path(issue_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.enhance_log().get(&issue_id).await {
        Ok(Some(e)) => Ok(Json(json!(e))),
        Ok(None) => Err(ApiError::not_found(format!(
            "enhance log entry not found: {issue_id}"
        ))),
        Err(e) => Err(ApiError::store("enhance log store", e)),
    }
}
