//! Replays the reference implementation's recorded flow cases
//! (`shared/conformance/flow-cases.json`, or `$MSE_FLOW_CASES`) with the rules of
//! `shared/conformance/run_flow_cases.py`: a 200 case must succeed with an equal
//! `final_ctx` (integers and floats distinct; the value at key `err` only needs to
//! be a non-empty string); any other status means the run (or the parse) must fail.

use std::path::PathBuf;

use mse_flow::{evaluate, Dispatcher, Limits, Node};
use serde_json::Value;

struct NoDispatch;

#[async_trait::async_trait]
impl Dispatcher for NoDispatch {
    async fn dispatch(&self, step_ref: &str, _input: Value) -> Result<Value, String> {
        Err(format!(
            "conformance cases contain no steps (got {step_ref})"
        ))
    }
}

fn cases_path() -> PathBuf {
    match std::env::var_os("MSE_FLOW_CASES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("../shared/conformance/flow-cases.json"),
    }
}

/// `same()` of run_flow_cases.py: `actual` vs `expected`.
fn same(actual: &Value, expected: &Value, key: Option<&str>) -> bool {
    if key == Some("err") {
        return matches!((actual, expected), (Value::String(a), Value::String(_)) if !a.is_empty());
    }
    match (actual, expected) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => {
            let int = |n: &serde_json::Number| n.is_i64() || n.is_u64();
            match (int(a), int(b)) {
                (true, true) => {
                    a.as_i64().map(i128::from).or(a.as_u64().map(i128::from))
                        == b.as_i64().map(i128::from).or(b.as_u64().map(i128::from))
                }
                (false, false) => a.as_f64() == b.as_f64(),
                _ => false,
            }
        }
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y, None))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same(v, w, Some(k))))
        }
        _ => false,
    }
}

fn short(v: &impl std::fmt::Display) -> String {
    let s = v.to_string();
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

#[test]
fn reference_flow_cases() {
    let path = cases_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read conformance cases {}: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_str(&text).expect("cases file is JSON");
    assert!(!cases.is_empty(), "no cases in {}", path.display());
    let limits = Limits::default();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let id = case["blueprint"]["id"].as_str().unwrap_or("?");
        let status = case["status"].as_u64().expect("status");
        let outcome = serde_json::from_value::<Node>(case["blueprint"]["flow"].clone())
            .map_err(|e| format!("parse error: {e}"))
            .and_then(|node| {
                futures::executor::block_on(evaluate(
                    &node,
                    case["init_ctx"].clone(),
                    &NoDispatch,
                    &limits,
                ))
                .map_err(|e| format!("run error: {e}"))
            });
        let problem = match (status, &outcome) {
            (200, Ok(ctx)) if same(ctx, &case["final_ctx"], None) => None,
            (200, Ok(ctx)) => Some(format!(
                "final_ctx differs\n    got:      {}\n    expected: {}",
                short(ctx),
                short(&case["final_ctx"])
            )),
            (200, Err(e)) => Some(format!("expected success, {e}")),
            (_, Err(_)) => None,
            (_, Ok(ctx)) => Some(format!(
                "expected failure (status {status}), got success: {}",
                short(ctx)
            )),
        };
        if let Some(p) = problem {
            failures.push(format!(
                "case {i} ({id}): {p}\n    flow: {}",
                short(&case["blueprint"]["flow"])
            ));
        }
    }
    println!(
        "{} passed, {} failed (of {} cases from {})",
        cases.len() - failures.len(),
        failures.len(),
        cases.len(),
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} conformance case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn same_follows_the_python_rules() {
    use serde_json::json;
    assert!(same(&json!(3), &json!(3), None));
    assert!(!same(&json!(3), &json!(3.0), None));
    assert!(same(&json!(-0.0), &json!(0.0), None));
    assert!(!same(&json!(true), &json!(1), None));
    assert!(same(&json!({"err": "x"}), &json!({"err": "other"}), None));
    assert!(!same(&json!({"err": ""}), &json!({"err": "other"}), None));
    assert!(!same(&json!({"err": 1}), &json!({"err": "other"}), None));
    assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2}), None));
    assert!(!same(&json!([1]), &json!([1, 2]), None));
}
