//! `verifier-router`: one axis per fanout branch (enhance.md §8, plus `compile`).

use mse_blueprint::{Blueprint, BlueprintVersion};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// Compiles a Blueprint with the server's factories; `Err` is the compile error.
pub type CompileCheck = Arc<dyn Fn(&Blueprint) -> Result<(), String> + Send + Sync>;

fn pass(axis: &str, evidence: impl Into<String>) -> Value {
    json!({"axis": axis, "outcome": {"Pass": {"evidence": evidence.into()}}})
}

fn deny(axis: &str, reason: impl Into<String>) -> Value {
    json!({"axis": axis, "outcome": {"Deny": {"reason": reason.into()}}})
}

/// Verdict `{axis, outcome: {"Pass": {evidence}} | {"Deny": {reason}}}` for the
/// branch's `$.axis`, judging `$.applied`.
pub fn route(ctx: &Value, compile: Option<&CompileCheck>) -> Value {
    let axis = ctx.get("axis").and_then(Value::as_str).unwrap_or("");
    let applied = ctx.get("applied").unwrap_or(&Value::Null);
    let new_bp = applied.get("new_bp_json").filter(|v| v.is_object());
    let hash = |k: &str| applied.get(k).and_then(Value::as_str).unwrap_or("");
    match axis {
        "des" => des(new_bp),
        "canonical" => match new_bp.map(|v| Blueprint::from_value(v.clone())) {
            None => deny(axis, "new_bp_json missing"),
            Some(Err(e)) => deny(axis, format!("new blueprint does not parse: {e}")),
            Some(Ok(bp)) => {
                let canonical = BlueprintVersion::of(&bp).to_hex();
                if canonical == hash("new_hash") {
                    pass(axis, "canonical hash matches input hash")
                } else {
                    let input = hash("new_hash");
                    deny(
                        axis,
                        format!("canonical hash mismatch: input={input} canonical={canonical}"),
                    )
                }
            }
        },
        "noop" => {
            if hash("new_hash") != hash("prev_hash") {
                pass(axis, "patch produces new hash")
            } else {
                deny(axis, "patch is no-op (new_hash == prev_hash)")
            }
        }
        "agent-ref" => agent_refs(new_bp),
        "compile" => match (new_bp.map(|v| Blueprint::from_value(v.clone())), compile) {
            (_, None) => deny(axis, "compile axis is not available on this server"),
            (None, _) => deny(axis, "new_bp_json missing"),
            (Some(Err(e)), _) => deny(axis, format!("new blueprint does not parse: {e}")),
            (Some(Ok(bp)), Some(check)) => match check(&bp) {
                Ok(()) => pass(axis, "blueprint compiles"),
                Err(e) => deny(axis, format!("compile error: {e}")),
            },
        },
        other => deny(other, format!("unknown verifier axis: {other}")),
    }
}

fn des(bp: Option<&Value>) -> Value {
    let Some(bp) = bp else {
        return deny("des", "new_bp_json missing");
    };
    if bp
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return deny("des", "blueprint.id missing or not string");
    }
    if !bp.get("flow").is_some_and(Value::is_object) {
        return deny("des", "blueprint.flow missing or not table");
    }
    if !bp.get("agents").is_some_and(Value::is_array) {
        return deny("des", "blueprint.agents missing or not array");
    }
    pass("des", "blueprint shape ok (id/flow/agents present)")
}

fn agent_refs(bp: Option<&Value>) -> Value {
    let parsed = bp.and_then(|v| Blueprint::from_value(v.clone()).ok());
    let Some(bp) = parsed else {
        return deny("agent-ref", "blueprint shape invalid for agent-ref verify");
    };
    let names: HashSet<&str> = bp.agents.iter().map(|a| a.name.as_str()).collect();
    let missing: Vec<&str> = bp
        .flow
        .step_refs()
        .into_iter()
        .filter(|r| !names.contains(r))
        .collect();
    if missing.is_empty() {
        pass(
            "agent-ref",
            format!("all {} step refs resolved", bp.agents.len()),
        )
    } else {
        deny(
            "agent-ref",
            format!("unresolved step refs: {}", missing.join(", ")),
        )
    }
}
