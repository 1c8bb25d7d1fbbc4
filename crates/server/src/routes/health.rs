//! `GET /v1/healthz` (liveness) and `GET /v1/doctor` (configuration snapshot with
//! secrets redacted, engine counts, registered Blueprint ids, the database's path,
//! size and schema version).

use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

pub async fn healthz() -> &'static str {
    "ok"
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

pub async fn doctor(State(state): State<AppState>) -> Json<Value> {
    let cfg = state.config();
    let l = &cfg.limits;
    // Archived ids excluded, sorted; an unreadable store lists nothing.
    let mut ids: Vec<String> = match state.blueprints().list().await {
        Ok(list) => list
            .into_iter()
            .filter(|(_, _, archived)| !archived)
            .map(|(id, _, _)| id)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "doctor: blueprint listing failed");
            Vec::new()
        }
    };
    ids.sort();
    let output_count = state.outputs().count().await.ok();
    let database = match state.database() {
        Some(db) => {
            let db = db.clone();
            // Both touch the file system / the connection: off the async workers.
            let (size, schema) =
                tokio::task::spawn_blocking(move || (db.size_bytes(), db.schema_version()))
                    .await
                    .unwrap_or((0, 0));
            json!({
                "path": state.database().and_then(|d| d.path()).map(|p| p.display().to_string()),
                "size_bytes": size,
                "schema_version": schema,
            })
        }
        None => Value::Null,
    };
    let storage = state.storage().as_str();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "bind": state.local_addr().to_string(),
        "data_dir": cfg.data_dir.display().to_string(),
        "token_secret": "<redacted>",
        "admin_token": cfg.admin_token.as_ref().map(|_| "<redacted>"),
        "allow_subprocess": cfg.allow_subprocess,
        "shutdown_grace_ms": ms(cfg.shutdown_grace),
        "blueprint_backend": if storage == "sqlite" { "sqlite" } else { "in_memory" },
        "blueprint_store_root": null,
        "blueprint_ref_base": cfg.blueprint_ref_base.as_ref().map(|p| p.display().to_string()),
        "default_agent_kind": cfg.default_agent_kind.map(|k| k.as_str()),
        "enhance_flow_enabled": false,
        "storage": storage,
        "database": database,
        "stores": {
            "blueprints": state.blueprint_store_kind(),
            "outputs": state.output_store_kind(),
            "issues": storage,
            "enhance_settings": storage,
            "enhance_log": storage,
        },
        "caches": {
            "compiled_blueprints": state.compiled_cache_len(),
            "resolved_blueprints": state.resolve_cache_len(),
        },
        "seed_blueprint_id": cfg.seed_blueprint_id,
        "registered_blueprint_count": ids.len(),
        "registered_blueprint_ids": ids,
        "limits": {
            "max_body_bytes": l.max_body_bytes,
            "max_json_depth": l.max_json_depth,
            "max_fanout_width": l.max_fanout_width,
            "max_fanout_depth": l.max_fanout_depth,
            "max_loop_iterations": l.max_loop_iterations,
            "max_concurrent_runs": l.max_concurrent_runs,
            "max_run_ttl_ms": ms(l.max_run_ttl),
            "lua_time_limit_ms": ms(l.lua_time_limit),
            "lua_memory_limit": l.lua_memory_limit,
            "subprocess_time_limit_ms": ms(l.subprocess_time_limit),
            "subprocess_max_output": l.subprocess_max_output,
            "operator_reply_timeout_ms": ms(l.operator_reply_timeout),
            "operator_reconnect_grace_ms": ms(l.operator_reconnect_grace),
            "operator_idle_ttl_ms": ms(l.operator_idle_ttl),
            "operator_ping_interval_ms": ms(l.operator_ping_interval),
            "task_retention_ms": ms(l.task_retention),
            "max_retained_tasks": l.max_retained_tasks,
            "max_output_records": l.max_output_records,
        },
        "engine": state.engine().stats(),
        "sessions": state.sessions().len(),
        "operators": {
            "sessions": state.operators().len(),
            "public_base_url": state.operators().config().public_base_url,
        },
        "outputs": output_count,
    }))
}
