//! The optional patch-spawner override of an enhance setting: `meta.patch_spawner
//! = {program, args?}` runs the patch spawner as a subprocess instead of asking an
//! operator (only where the server allows subprocess agents).

use mse_blueprint::{AgentKind, Blueprint};
use serde_json::{json, Value};

/// Name of the orchestrator agent a setting's `meta.patch_spawner` replaces.
pub const PATCH_SPAWNER_AGENT: &str = "patch-spawner";

/// Replace the orchestrator's patch spawner with the subprocess a setting's
/// `meta.patch_spawner = {program, args?}` names (`None`: no override). The child
/// gets the step input (`issue`, `prev_bp_json`, ...) as JSON on stdin and prints
/// the patch JSON on stdout.
pub fn spawner_override(
    orchestrator: &Blueprint,
    meta: &Value,
    allowed: bool,
) -> Result<Option<Blueprint>, String> {
    let Some(spec) = meta.get("patch_spawner").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let what = "setting meta.patch_spawner";
    let obj = spec
        .as_object()
        .ok_or_else(|| format!("{what} must be an object {{program, args?}}"))?;
    let program = obj
        .get("program")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("{what}.program (non-empty string) required"))?;
    let args = match obj.get("args").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{what}.args must be an array of strings"))?,
        Some(_) => return Err(format!("{what}.args must be an array of strings")),
    };
    if !allowed {
        return Err(format!(
            "{what} runs a subprocess, but subprocess patch spawners are disabled on this \
             server; start it with --allow-subprocess (or set allow_subprocess = true in the \
             config) to enable them"
        ));
    }
    let mut bp = orchestrator.clone();
    let agent = bp
        .agents
        .iter_mut()
        .find(|a| a.name == PATCH_SPAWNER_AGENT)
        .ok_or_else(|| {
            format!(
                "{what}: orchestrator {} has no {PATCH_SPAWNER_AGENT} agent",
                orchestrator.id
            )
        })?;
    agent.kind = AgentKind::Subprocess;
    agent.spec = json!({"program": program, "args": args, "use_stdin": true});
    Ok(Some(bp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawner_override_replaces_the_agent() {
        let bp = crate::default_blueprint();
        assert!(spawner_override(&bp, &json!({}), false).unwrap().is_none());
        let meta = json!({"patch_spawner": {"program": "/bin/sh", "args": ["-c", "cat"]}});
        let err = spawner_override(&bp, &meta, false).unwrap_err();
        assert!(err.contains("--allow-subprocess"), "{err}");
        let out = spawner_override(&bp, &meta, true).unwrap().unwrap();
        let agent = out.agent(PATCH_SPAWNER_AGENT).unwrap();
        assert_eq!(agent.kind, AgentKind::Subprocess);
        assert_eq!(
            agent.spec,
            json!({"program": "/bin/sh", "args": ["-c", "cat"], "use_stdin": true})
        );
        for bad in [
            json!("sh"),
            json!({"args": []}),
            json!({"program": "x", "args": [1]}),
        ] {
            assert!(spawner_override(&bp, &json!({"patch_spawner": bad}), true).is_err());
        }
    }
}
