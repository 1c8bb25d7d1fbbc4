//! `patch-applier`: RFC 6902 application, the system-prompt version-hash post-hook
//! and the version-label bump (enhance.md §7).
//!
//! Unlike the reference's hand-written subset, patches follow RFC 6902 strictly
//! (via the `json-patch` crate): array indices must be decimal without leading
//! zeros; `add` to a missing parent, `remove`/`replace` of a missing target and a
//! failed `test` are errors; `test` compares structurally (objects and arrays too);
//! `copy` makes an independent copy; an empty array is an array; `move` into its
//! own child is an error. Any error fails the step and the whole patch is void.

use mse_blueprint::version::content_hash;
use mse_blueprint::{Blueprint, BlueprintVersion};
use serde_json::{json, Map, Value};

/// The patch proposed for an issue: `{ops, bump, rationale}`. A JSON string that
/// parses to that object is accepted too.
pub fn normalize_patch(patch: &Value) -> Result<Value, String> {
    let patch = match patch {
        Value::String(s) => serde_json::from_str(s.trim())
            .map_err(|e| format!("patch is a string that is not JSON: {e}"))?,
        other => other.clone(),
    };
    if !patch.is_object() {
        return Err(format!(
            "patch must be an object {{ops, bump, rationale}}, got {patch}"
        ));
    }
    Ok(patch)
}

/// Apply `ops` to `doc` (all or nothing).
pub fn apply_ops(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(ops.clone()).map_err(|e| format!("invalid RFC 6902 patch: {e}"))?;
    json_patch::patch(doc, &ops).map_err(|e| format!("patch failed: {e}"))
}

/// `major` → M+1.0.0, `minor` → M.m+1.0, anything else → M.m.p+1. Labels are read
/// from their leading `M.m.p`; anything else counts as 0.0.0.
pub fn bump_label(label: Option<&str>, bump: &str) -> String {
    let (mut ma, mut mi, mut pa) = label.map(leading_version).unwrap_or((0, 0, 0));
    match bump {
        "major" => (ma, mi, pa) = (ma + 1, 0, 0),
        "minor" => (mi, pa) = (mi + 1, 0),
        _ => pa += 1,
    }
    format!("{ma}.{mi}.{pa}")
}

fn leading_version(label: &str) -> (u64, u64, u64) {
    let mut parts = [0u64; 3];
    let mut rest = label;
    for (i, part) in parts.iter_mut().enumerate() {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = digits.parse() else {
            return (0, 0, 0);
        };
        *part = n;
        rest = &rest[digits.len()..];
        if i < 2 {
            let Some(r) = rest.strip_prefix('.') else {
                return (0, 0, 0);
            };
            rest = r;
        }
    }
    (parts[0], parts[1], parts[2])
}

/// Re-hash the system prompt of every agent an `add`/`replace` op touched.
fn rehash_system_prompts(doc: &mut Value, ops: &Value) {
    for op in ops.as_array().into_iter().flatten() {
        if !matches!(op["op"].as_str(), Some("add" | "replace")) {
            continue;
        }
        let Some(path) = op["path"].as_str() else {
            continue;
        };
        let Some(index) = path
            .strip_prefix("/agents/")
            .and_then(|r| r.strip_suffix("/profile/system_prompt"))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(profile) = doc
            .pointer_mut(&format!("/agents/{index}/profile"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if let Some(prompt) = profile.get("system_prompt").and_then(Value::as_str) {
            let hash = content_hash(prompt.as_bytes());
            profile.insert("version_hash".into(), Value::String(hash));
        }
    }
}

/// The step: `{prev_bp_json, prev_hash, epoch_id, patch}` →
/// `{prev_bp_json, prev_hash, patch, new_bp_json, new_hash, epoch_id}`.
pub fn apply_step(ctx: &Value) -> Result<Value, String> {
    let before = ctx
        .get("prev_bp_json")
        .filter(|v| v.is_object())
        .ok_or("prev_bp_json (object) required")?;
    let patch = normalize_patch(ctx.get("patch").unwrap_or(&Value::Null))?;
    let ops = patch.get("ops").cloned().unwrap_or_else(|| json!([]));
    let bump = patch.get("bump").and_then(Value::as_str).unwrap_or("patch");
    let mut doc = before.clone();
    apply_ops(&mut doc, &ops)?;
    rehash_system_prompts(&mut doc, &ops);
    if &doc != before {
        let obj = doc
            .as_object_mut()
            .ok_or("the patched document is not an object")?;
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let meta = meta.as_object_mut().ok_or("metadata is not an object")?;
        let label = meta.get("version_label").and_then(Value::as_str);
        let next = bump_label(label, bump);
        meta.insert("version_label".into(), Value::String(next));
    }
    let bp =
        Blueprint::from_value(doc).map_err(|e| format!("patched blueprint is invalid: {e}"))?;
    let new_hash = BlueprintVersion::of(&bp).to_hex();
    Ok(json!({
        "prev_bp_json": before,
        "prev_hash": ctx.get("prev_hash").cloned().unwrap_or(Value::Null),
        "patch": patch,
        "new_bp_json": bp.to_value(),
        "new_hash": new_hash,
        "epoch_id": ctx.get("epoch_id").cloned().unwrap_or(Value::Null),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps() {
        assert_eq!(bump_label(Some("1.0.0"), "minor"), "1.1.0");
        assert_eq!(bump_label(Some("2.3.4-rc.1"), "patch"), "2.3.5");
        assert_eq!(bump_label(None, "whatever"), "0.0.1");
        assert_eq!(bump_label(Some("1.9.9"), "major"), "2.0.0");
        assert_eq!(bump_label(Some("v1"), "patch"), "0.0.1");
    }

    #[test]
    fn string_patches_are_parsed() {
        let p = normalize_patch(&json!(
            "{\"ops\":[],\"bump\":\"patch\",\"rationale\":\"r\"}"
        ))
        .unwrap();
        assert_eq!(p["rationale"], "r");
        assert!(normalize_patch(&json!("not json")).is_err());
        assert!(normalize_patch(&json!([1])).is_err());
    }
}
