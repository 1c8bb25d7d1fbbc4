//! `POST /v1/tasks`: run a Blueprint's flow to completion inside the request.
//!
//! Processing order (http-api.md §5.2, decision-3 statuses): body (415/413/400/422)
//! → `operator_sid` must name a registered operator backend (400) → operator kinds
//! (400) → resolve the Blueprint once (§14.17; 400 invalid id, malformed hex or
//! semver requirement, 404 unknown id/version/no semver match, 409 archived, 503
//! store unavailable) → TTL cascade
//! (body `ttl_secs` > `metadata.default_run_ttl_secs` > 1800 s, capped at
//! `limits.max_run_ttl`; the capped value is reported) → compile and run
//! (`run: launch: ...`, 400; 429 when too many runs). Runs by id resolve through
//! the resolution cache (`AppState::resolve`) and reuse the compiled form of a
//! version (`AppState::compiled`).
//!
//! The body is parsed once into typed structs (the inline Blueprint included) and
//! the run is wrapped in a `run` span so its logs carry the Blueprint and TTL.

use crate::auth::AdminGuard;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::{AppState, SERVER_DEFAULT_TTL_SECS};
use axum::extract::State;
use axum::Json;
use mse_blueprint::{Blueprint, BlueprintVersion, LaunchError, RunRequest};
use mse_engine::OperatorKind;
use mse_store::VersionSelector;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

#[derive(Deserialize)]
pub struct TaskBody {
    blueprint: BlueprintRef,
    /// Required, may be `null`.
    init_ctx: Value,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    operator: Option<OperatorBody>,
    #[serde(default)]
    operator_sid: Option<String>,
}

/// `{"kind":"inline","value":<Blueprint>}` or `{"kind":"id","id":..,"version"?:..}`,
/// read as one struct so the Blueprint is parsed in a single pass (an
/// internally tagged enum would buffer it first).
#[derive(Deserialize)]
struct BlueprintRef {
    kind: RefKind,
    #[serde(default)]
    value: Option<Box<Blueprint>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    version: Option<VersionSelector>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RefKind {
    Inline,
    Id,
}

#[derive(Deserialize, Default)]
struct OperatorBody {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    spawn_hook_id: Option<String>,
    #[serde(default)]
    senior_bridge_id: Option<String>,
    #[serde(default)]
    operator_backend_id: Option<String>,
    #[serde(default)]
    per_agent_kinds: Option<HashMap<String, String>>,
}

#[derive(Serialize)]
pub struct TaskReply {
    final_ctx: Value,
    /// 64-char hex of the resolved version; `null` for inline Blueprints.
    bound_version: Option<String>,
    effective_ttl_secs: u64,
    ttl_source: &'static str,
}

fn operator_kind(v: &str) -> Result<OperatorKind, ApiError> {
    OperatorKind::parse(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "operator kind: unknown value '{v}' (expected main_ai|automate|composite)"
        ))
    })
}

fn unprocessable(msg: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        format!("invalid request body: {msg}"),
    )
}

/// The Blueprint to run and, for stored ones, its version.
async fn resolve(
    state: &AppState,
    r: BlueprintRef,
) -> Result<(Arc<Blueprint>, Option<BlueprintVersion>), ApiError> {
    match r.kind {
        RefKind::Inline => {
            let bp = r
                .value
                .ok_or_else(|| unprocessable("blueprint: kind 'inline' requires `value`"))?;
            Ok((Arc::from(bp), None))
        }
        RefKind::Id => {
            let id =
                r.id.ok_or_else(|| unprocessable("blueprint: kind 'id' requires `id`"))?;
            let selector = r.version.unwrap_or_default();
            let stored = state
                .resolve(&id, &selector)
                .await
                .map_err(|e| ApiError::store("bp resolve", e))?;
            Ok((stored.blueprint, Some(stored.meta.version)))
        }
    }
}

pub async fn run(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    JsonBody(body): JsonBody<TaskBody>,
) -> Result<Json<TaskReply>, ApiError> {
    let mut op = body.operator.unwrap_or_default();
    if let Some(sid) = body.operator_sid {
        if state.engine().registries().operator_backend(&sid).is_none() {
            return Err(ApiError::bad_request(format!(
                "operator_sid: no such registered operator session '{sid}'"
            )));
        }
        op.operator_backend_id = Some(sid);
    }
    let kind = op.kind.as_deref().map(operator_kind).transpose()?;
    let per_agent_kinds = op
        .per_agent_kinds
        .unwrap_or_default()
        .into_iter()
        .map(|(agent, k)| Ok((agent, operator_kind(&k)?)))
        .collect::<Result<HashMap<_, _>, ApiError>>()?;

    let (bp, version) = resolve(&state, body.blueprint).await?;

    let (ttl, ttl_source) = match (body.ttl_secs, bp.metadata.default_run_ttl_secs) {
        (Some(t), _) => (t, "request_body"),
        (None, Some(t)) => (t, "bp_metadata"),
        (None, None) => (SERVER_DEFAULT_TTL_SECS, "server_default"),
    };
    let ttl = ttl.min(state.config().limits.max_run_ttl.as_secs());

    let request = RunRequest {
        init_ctx: body.init_ctx,
        ttl: Duration::from_secs(ttl),
        operator_id: op.id.unwrap_or_else(|| "http-run".to_string()),
        operator_kind: kind,
        per_agent_kinds,
        spawn_hook_id: op.spawn_hook_id,
        senior_bridge_id: op.senior_bridge_id,
        operator_backend_id: op.operator_backend_id,
    };
    let bound_version = version.map(|v| v.to_hex());
    let span = tracing::debug_span!(
        "run",
        blueprint = %bp.id,
        version = bound_version.as_deref().unwrap_or("inline"),
        ttl_secs = ttl,
    );
    let outcome = match version {
        // Stored versions are compiled once and reused (state.compiled).
        Some(v) => {
            let compiled = state
                .compiled(v, &bp)
                .map_err(|e| ApiError::launch(LaunchError::Compile(e)))?;
            state
                .launcher()
                .run_compiled(&compiled, request)
                .instrument(span)
                .await
        }
        None => state.launcher().run(&bp, request).instrument(span).await,
    }
    .map_err(ApiError::launch)?;
    Ok(Json(TaskReply {
        final_ctx: outcome.final_ctx,
        bound_version,
        effective_ttl_secs: ttl,
        ttl_source,
    }))
}
