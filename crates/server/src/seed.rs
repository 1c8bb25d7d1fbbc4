//! The boot seed Blueprint (http-api.md §13.5): a one-step `identity` flow,
//! written under the configured seed id when that id has no head yet.
//!
//! An archived seed id counts as present (§14.13: a persistent store must not
//! make every later start fail); any other read failure leads to a write, and a
//! failed write aborts startup.

use crate::error::ServerError;
use mse_blueprint::Blueprint;
use mse_store::{BlueprintStore, StoreError};
use serde_json::json;
use std::sync::Arc;

/// The seed Blueprint document for `id`.
pub fn seed_blueprint(id: &str) -> Result<Blueprint, String> {
    Blueprint::from_value(json!({
        "schema_version": "0.1.0",
        "id": id,
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": "hello"},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"},
                    "profile": null, "meta": null}],
        "operators": [],
        "hints": {"per_agent": {}, "global": null},
        "strategy": {"strict_refs": true, "strict_kind": true},
        "metadata": {"description": "mse serve enhance seed", "origin": {"kind": "inline"},
                     "tags": [], "version_label": "0.1.0"},
        "spawner_hints": {"layers": []},
        "default_agent_kind": "operator"
    }))
    .map_err(|e| e.to_string())
}

/// Write the seed unless `id` already has a head (live or archived).
pub async fn seed(store: &dyn BlueprintStore, id: &str) -> Result<(), ServerError> {
    mse_store::validate_blueprint_id(id).map_err(|e| ServerError::Seed {
        id: id.to_string(),
        source: e,
    })?;
    match store.read_head(id).await {
        Ok(_) | Err(StoreError::Archived(_)) => return Ok(()),
        Err(_) => {}
    }
    let bp = seed_blueprint(id).map_err(ServerError::Config)?;
    store
        .write_new(Arc::new(bp), None, "seed", None, None)
        .await
        .map(|_| ())
        .map_err(|e| ServerError::Seed {
            id: id.to_string(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mse_blueprint::BlueprintVersion;

    #[test]
    fn seed_parses_and_has_a_stable_version() {
        let a = seed_blueprint("main").unwrap();
        let b = seed_blueprint("main").unwrap();
        assert_eq!(BlueprintVersion::of(&a), BlueprintVersion::of(&b));
        assert_ne!(
            BlueprintVersion::of(&a),
            BlueprintVersion::of(&seed_blueprint("other").unwrap())
        );
    }
}
