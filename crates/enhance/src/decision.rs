//! Strict parse of a run's `final_ctx.commit` (enhance.md §9.2) and the patch hash.
//!
//! The orchestrator is a stored Blueprint that operators may replace, so its output
//! is validated before anything is written: every failure is a "commit shape" error
//! and the issue is rejected.

use mse_blueprint::version::content_hash;
use mse_blueprint::{Blueprint, BlueprintVersion};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One verifier verdict as the enhance log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub axis: String,
    /// `pass` or `deny`.
    pub status: String,
    /// The pass evidence or the deny reason.
    pub detail: String,
}

impl Verdict {
    /// The log form `{axis, status, detail}`.
    pub fn to_log(&self) -> Value {
        json!({"axis": self.axis, "status": self.status, "detail": self.detail})
    }
}

/// What the committer decided, validated.
#[derive(Clone, Debug)]
pub enum Decision {
    Committed {
        /// The new Blueprint; its id is the issue's series and its version is
        /// `new_version` (both checked).
        blueprint: Arc<Blueprint>,
        new_version: BlueprintVersion,
        bump: String,
        rationale: String,
        verdicts: Vec<Verdict>,
    },
    Denied {
        /// At least one.
        reasons: Vec<String>,
        rationale: String,
        verdicts: Vec<Verdict>,
    },
}

impl Decision {
    pub fn rationale(&self) -> &str {
        match self {
            Decision::Committed { rationale, .. } | Decision::Denied { rationale, .. } => rationale,
        }
    }

    pub fn verdicts(&self) -> &[Verdict] {
        match self {
            Decision::Committed { verdicts, .. } | Decision::Denied { verdicts, .. } => verdicts,
        }
    }
}

fn string(obj: &Map<String, Value>, key: &str, what: &str) -> Result<String, String> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{what}.{key} missing or not a string"))
}

fn verdict(item: &Value, i: usize) -> Result<Verdict, String> {
    let what = format!("commit.verdicts_summary[{i}]");
    let obj = item
        .as_object()
        .ok_or_else(|| format!("{what} is not an object"))?;
    let axis = string(obj, "axis", &what)?;
    let status = string(obj, "status", &what)?;
    let detail = match status.as_str() {
        "pass" => string(obj, "evidence", &what)?,
        "deny" => string(obj, "reason", &what)?,
        other => return Err(format!("{what}.status {other:?} is neither pass nor deny")),
    };
    Ok(Verdict {
        axis,
        status,
        detail,
    })
}

/// Parse `final_ctx.commit` for an issue on series `blueprint_id`. The error text
/// is the detail of a `commit shape: ...` rejection.
pub fn parse(final_ctx: &Value, blueprint_id: &str) -> Result<Decision, String> {
    let commit = final_ctx
        .get("commit")
        .ok_or("commit missing from the final context")?
        .as_object()
        .ok_or("commit is not an object")?;
    let committed = commit
        .get("committed")
        .and_then(Value::as_bool)
        .ok_or("commit.committed missing or not a boolean")?;
    let rationale = string(commit, "rationale", "commit")?;
    let verdicts = commit
        .get("verdicts_summary")
        .and_then(Value::as_array)
        .ok_or("commit.verdicts_summary missing or not an array")?
        .iter()
        .enumerate()
        .map(|(i, v)| verdict(v, i))
        .collect::<Result<Vec<_>, _>>()?;
    if !committed {
        let reasons = commit
            .get("reasons")
            .and_then(Value::as_array)
            .ok_or("commit.reasons missing or not an array")?
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("commit.reasons has an item that is not a string")?;
        if reasons.is_empty() {
            return Err("commit.reasons is empty although committed is false".into());
        }
        return Ok(Decision::Denied {
            reasons,
            rationale,
            verdicts,
        });
    }
    if let Some(d) = verdicts.iter().find(|v| v.status == "deny") {
        return Err(format!(
            "committed is true although axis {} denied: {}",
            d.axis, d.detail
        ));
    }
    let claimed = string(commit, "new_version", "commit")?;
    if claimed.is_empty() {
        return Err("commit.new_version is empty".into());
    }
    let bump = string(commit, "bump", "commit")?;
    let new_bp = commit
        .get("new_bp_json")
        .ok_or("commit.new_bp_json missing")?;
    let blueprint = Blueprint::from_value(new_bp.clone())
        .map_err(|e| format!("commit.new_bp_json is not a valid blueprint: {e}"))?;
    if blueprint.id != blueprint_id {
        return Err(format!(
            "commit.new_bp_json has id {:?}, but the issue targets {blueprint_id:?}",
            blueprint.id
        ));
    }
    let new_version = BlueprintVersion::of(&blueprint);
    if claimed != new_version.to_hex() {
        return Err(format!(
            "new_version mismatch: committer={claimed} computed={}",
            new_version.to_hex()
        ));
    }
    Ok(Decision::Committed {
        blueprint: Arc::new(blueprint),
        new_version,
        bump,
        rationale,
        verdicts,
    })
}

/// `patch_hash` of a run: BLAKE3 hex of the patch's `ops` as canonical JSON (compact,
/// object keys sorted by byte order at every level, so the hash does not depend on
/// how the operator ordered keys). The ops are taken from the applier's normalised
/// patch (`$.applied.patch`), falling back to `$.patch`; missing ops count as `[]`.
pub fn patch_hash(final_ctx: &Value) -> String {
    let patch = final_ctx
        .pointer("/applied/patch")
        .filter(|p| p.is_object())
        .cloned()
        .or_else(|| {
            final_ctx
                .get("patch")
                .and_then(|p| crate::patch::normalize_patch(p).ok())
        });
    let ops = patch
        .as_ref()
        .and_then(|p| p.get("ops"))
        .cloned()
        .unwrap_or_else(|| json!([]));
    let mut out = String::new();
    write_canonical(&ops, &mut out);
    content_hash(out.as_bytes())
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(desc: &str) -> Blueprint {
        Blueprint::from_value(json!({"id":"demo","flow":{"kind":"seq","children":[]},
            "metadata":{"description":desc}}))
        .unwrap()
    }

    fn committed(bp: &Blueprint) -> Value {
        json!({"commit":{"committed":true,"new_version":BlueprintVersion::of(bp).to_hex(),
            "new_bp_json":bp.to_value(),"bump":"patch","rationale":"r",
            "verdicts_summary":[{"axis":"des","status":"pass","evidence":"ok"}]}})
    }

    #[test]
    fn committed_is_checked_against_the_blueprint() {
        let b = bp("x");
        match parse(&committed(&b), "demo").unwrap() {
            Decision::Committed {
                new_version,
                verdicts,
                ..
            } => {
                assert_eq!(new_version, BlueprintVersion::of(&b));
                assert_eq!(
                    verdicts[0].to_log(),
                    json!({"axis":"des","status":"pass","detail":"ok"})
                );
            }
            d => panic!("{d:?}"),
        }
        let err = parse(&committed(&b), "other").unwrap_err();
        assert!(err.contains("the issue targets \"other\""), "{err}");
        let mut c = committed(&b);
        c["commit"]["new_version"] = json!("ab".repeat(32));
        assert!(parse(&c, "demo")
            .unwrap_err()
            .starts_with("new_version mismatch"));
        let mut c = committed(&b);
        c["commit"]["new_bp_json"]["bogus"] = json!(1);
        assert!(parse(&c, "demo")
            .unwrap_err()
            .contains("not a valid blueprint"));
        let mut c = committed(&b);
        c["commit"]["verdicts_summary"] = json!({});
        assert_eq!(
            parse(&c, "demo").unwrap_err(),
            "commit.verdicts_summary missing or not an array"
        );
        let mut c = committed(&b);
        c["commit"]["verdicts_summary"][0]["status"] = json!("maybe");
        assert!(parse(&c, "demo").is_err());
        let mut c = committed(&b);
        c["commit"]["verdicts_summary"] = json!([{"axis":"x","status":"deny","reason":"no"}]);
        assert!(parse(&c, "demo").unwrap_err().contains("axis x denied"));
        let mut c = committed(&b);
        c["commit"].as_object_mut().unwrap().remove("bump");
        assert_eq!(
            parse(&c, "demo").unwrap_err(),
            "commit.bump missing or not a string"
        );
    }

    #[test]
    fn denied_needs_reasons() {
        let c = json!({"commit":{"committed":false,"rationale":"r","reasons":["noop: same"],
            "verdicts_summary":[{"axis":"noop","status":"deny","reason":"same"}]}});
        match parse(&c, "demo").unwrap() {
            Decision::Denied { reasons, .. } => assert_eq!(reasons, ["noop: same"]),
            d => panic!("{d:?}"),
        }
        let c = json!({"commit":{"committed":false,"rationale":"r","reasons":[],"verdicts_summary":[]}});
        assert!(parse(&c, "demo").is_err());
        assert_eq!(
            parse(&json!({}), "demo").unwrap_err(),
            "commit missing from the final context"
        );
        assert!(parse(&json!({"commit":{"committed":"yes"}}), "demo").is_err());
    }

    #[test]
    fn patch_hash_ignores_key_order() {
        let a =
            json!({"applied":{"patch":{"ops":[{"op":"add","path":"/a","value":{"x":1,"y":2}}]}}});
        let b = json!({"patch":"{\"ops\":[{\"value\":{\"y\":2,\"x\":1},\"path\":\"/a\",\"op\":\"add\"}]}"});
        assert_eq!(patch_hash(&a), patch_hash(&b));
        assert_eq!(patch_hash(&json!({})), content_hash(b"[]"));
        assert_ne!(patch_hash(&a), patch_hash(&json!({})));
    }
}
