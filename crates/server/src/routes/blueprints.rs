//! The Blueprint store over HTTP (http-api.md §9, enhance.md §2.6), versions as
//! 64-char lowercase hex everywhere (decision 2), JSON errors (decision 3), the
//! admin token on every write when one is configured (decision 9).
//!
//! | Route | Success | Errors |
//! |---|---|---|
//! | `POST /v1/blueprints/{id}` | 201 new head `{id, version, seeded:true, parent}`; 200 same as head `{id, version, seeded:false}` | 400 invalid id / ref expansion / parse / path≠body id; 409 archived or a concurrent write moved the head |
//! | `DELETE /v1/blueprints/{id}` | 204 (also when already archived) | 400 invalid id, 404 unknown |
//! | `POST /v1/blueprints/{id}/unarchive` | 204 (also when live) | 400, 404 |
//! | `GET /v1/blueprints` | 200 `[{id, head, version_label, archived}]` sorted by id | |
//! | `GET /v1/blueprints/{id}/head` | 200 `{id, version, blueprint, version_label, rationale, parents, created_at_ms}` | 400, 404 unknown, 409 archived |
//! | `GET /v1/blueprints/{id}/history?limit=` | 200 `{count, entries}` newest first (default 20, at most 1000); unknown id → empty | 400 |
//! | `GET /v1/blueprints/{id}/versions/{version}` | 200 like head (archived ids too) | 400 invalid id or hex, 404 unknown |
//! | `GET /v1/schema/blueprint` | 200 the Blueprint JSON Schema | |
//!
//! A store that cannot be used answers 503 on every route.
//!
//! Registration is a compare-and-set on the head: the handler reads the head and
//! writes with that head as the expected one, so of two concurrent writers on one
//! id exactly one wins and the other gets 409 (never a lost update, §14.18).

use crate::auth::AdminGuard;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mse_blueprint::{Blueprint, BlueprintVersion};
use mse_store::{validate_blueprint_id, StoreError, StoredBlueprint, VersionMeta};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// Default and ceiling of `history?limit=`.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
pub const MAX_HISTORY_LIMIT: usize = 1000;

fn check_id(id: &str) -> Result<(), ApiError> {
    validate_blueprint_id(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn hexes(versions: &[BlueprintVersion]) -> Vec<String> {
    versions.iter().map(BlueprintVersion::to_hex).collect()
}

fn meta_json(meta: &VersionMeta) -> Value {
    json!({
        "hash": meta.version.to_hex(),
        "version": meta.version.to_hex(),
        "version_label": meta.version_label,
        "rationale": meta.rationale,
        "parents": hexes(&meta.parents),
        "created_at_ms": meta.created_at_ms,
    })
}

fn stored_json(stored: &StoredBlueprint) -> Value {
    let m = &stored.meta;
    json!({
        "id": stored.id,
        "version": m.version.to_hex(),
        "blueprint": stored.blueprint.to_value(),
        "version_label": m.version_label,
        "rationale": m.rationale,
        "parents": hexes(&m.parents),
        "created_at_ms": m.created_at_ms,
    })
}

/// `POST /v1/blueprints/{id}`: register a version (idempotent against the head).
pub async fn seed(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let body = match state.config().blueprint_ref_base.clone() {
        Some(base) if crate::refs::has_refs(&body) => {
            let default_kind = state.config().default_agent_kind;
            tokio::task::spawn_blocking(move || crate::refs::expand(body, &base, default_kind))
                .await
                .map_err(|e| ApiError::internal(format!("ref expand: task failed: {e}")))?
                .map_err(|e| ApiError::bad_request(format!("ref expand: {e}")))?
        }
        _ => body,
    };
    let bp = Blueprint::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("blueprint parse: {e}")))?;
    if bp.id != id {
        return Err(ApiError::bad_request(format!(
            "path id={id} != body.id={}",
            bp.id
        )));
    }
    let version = BlueprintVersion::of(&bp);
    let store = state.blueprints();
    let head = match store.read_head(&id).await {
        Ok(head) => Some(head.meta.version),
        Err(StoreError::NotFound(_)) => None,
        Err(StoreError::Archived(_)) => return Err(archived(&id)),
        Err(e) => return Err(ApiError::store("read_head", e)),
    };
    if head == Some(version) {
        return Ok(unchanged(&id, version));
    }
    match store
        .write_new(Arc::new(bp), Some(head), "seed", None, None)
        .await
    {
        Ok((meta, true)) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "id": id,
                "version": meta.version.to_hex(),
                "seeded": true,
                "parent": meta.parents.first().map(BlueprintVersion::to_hex),
            })),
        )
            .into_response()),
        Ok((meta, false)) => Ok(unchanged(&id, meta.version)),
        Err(StoreError::Archived(_)) => Err(archived(&id)),
        Err(e @ StoreError::HeadMoved { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("write_new: {e}; a concurrent write won, read the head and retry"),
        )),
        Err(e) => Err(ApiError::store("write_new", e)),
    }
}

fn unchanged(id: &str, version: BlueprintVersion) -> Response {
    Json(json!({"id": id, "version": version.to_hex(), "seeded": false})).into_response()
}

fn archived(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("blueprint {id} is archived; POST /v1/blueprints/{id}/unarchive first"),
    )
}

/// `DELETE /v1/blueprints/{id}`: archive (soft delete).
pub async fn archive(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    state
        .blueprints()
        .archive(&id)
        .await
        .map_err(|e| ApiError::store("archive_id", e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/blueprints/{id}/unarchive`.
pub async fn unarchive(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    state
        .blueprints()
        .unarchive(&id)
        .await
        .map_err(|e| ApiError::store("unarchive_id", e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/blueprints`: every id with its head, archived ones included.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = state
        .blueprints()
        .list()
        .await
        .map_err(|e| ApiError::store("list", e))?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|(id, head, archived)| {
                json!({
                    "id": id,
                    "head": head.version.to_hex(),
                    "version_label": head.version_label,
                    "archived": archived,
                })
            })
            .collect(),
    )))
}

/// `GET /v1/blueprints/{id}/head`.
pub async fn head(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let stored = state
        .blueprints()
        .read_head(&id)
        .await
        .map_err(|e| ApiError::store("read_head", e))?;
    Ok(Json(stored_json(&stored)))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/blueprints/{id}/history?limit=N`: newest first, head included.
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .min(MAX_HISTORY_LIMIT);
    let entries = state
        .blueprints()
        .history(&id, limit)
        .await
        .map_err(|e| ApiError::store("history", e))?;
    Ok(Json(json!({
        "count": entries.len(),
        "entries": entries.iter().map(meta_json).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/blueprints/{id}/versions/{version}`: one stored version, archived or not.
pub async fn version(
    State(state): State<AppState>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let v: BlueprintVersion = version
        .parse()
        .map_err(|_| ApiError::store("read_version", StoreError::BadVersion(version.clone())))?;
    let stored = state
        .blueprints()
        .read_version(&id, &v)
        .await
        .map_err(|e| ApiError::store("read_version", e))?;
    Ok(Json(stored_json(&stored)))
}

/// `GET /v1/schema/blueprint`: the JSON Schema of the Blueprint document.
pub async fn schema() -> Json<Value> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    Json(
        SCHEMA
            .get_or_init(mse_blueprint::schema::json_schema)
            .clone(),
    )
}
