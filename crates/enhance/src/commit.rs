//! `committer`: fold the verdicts into the commit decision (enhance.md §9.1).
//! With no verifier axes configured a valid patch commits (decision 15).

use serde_json::{json, Value};

pub fn decide(ctx: &Value) -> Result<Value, String> {
    let verdicts = ctx
        .get("verdicts")
        .and_then(Value::as_array)
        .ok_or("verdicts (array) required")?;
    let mut reasons = Vec::new();
    let mut summary = Vec::new();
    for branch in verdicts {
        let verdict = branch
            .get("verdict")
            .filter(|v| v.is_object())
            .ok_or("branch without a verdict")?;
        let axis = verdict
            .get("axis")
            .and_then(Value::as_str)
            .ok_or("verdict without an axis")?;
        let outcome = verdict.get("outcome").ok_or("verdict without an outcome")?;
        if let Some(d) = outcome.get("Deny") {
            let reason = d
                .get("reason")
                .and_then(Value::as_str)
                .ok_or("deny without a reason")?;
            reasons.push(format!("{axis}: {reason}"));
            summary.push(json!({"axis": axis, "status": "deny", "reason": reason}));
        } else if let Some(p) = outcome.get("Pass") {
            let evidence = p.get("evidence").and_then(Value::as_str).unwrap_or("");
            summary.push(json!({"axis": axis, "status": "pass", "evidence": evidence}));
        } else {
            return Err(format!(
                "verdict outcome for {axis} is neither Pass nor Deny"
            ));
        }
    }
    let patch = ctx
        .get("patch")
        .map(crate::patch::normalize_patch)
        .transpose()?
        .ok_or("patch required")?;
    let rationale = patch
        .get("rationale")
        .and_then(Value::as_str)
        .ok_or("patch.rationale (string) required")?;
    let bump = patch.get("bump").and_then(Value::as_str).unwrap_or("patch");
    if !reasons.is_empty() {
        return Ok(
            json!({"committed": false, "reasons": reasons, "rationale": rationale, "verdicts_summary": summary}),
        );
    }
    let applied = ctx.get("applied").ok_or("applied required")?;
    let new_hash = applied
        .get("new_hash")
        .and_then(Value::as_str)
        .ok_or("applied.new_hash required")?;
    let new_bp = applied
        .get("new_bp_json")
        .filter(|v| v.is_object())
        .ok_or("applied.new_bp_json required")?;
    Ok(json!({
        "committed": true,
        "new_version": new_hash,
        "new_bp_json": new_bp,
        "bump": bump,
        "rationale": rationale,
        "verdicts_summary": summary,
    }))
}
