//! The shared flow conformance cases replayed through the full launch path,
//! compared with the rules of `run_flow_cases.py`.

mod common;
use common::*;
use serde_json::Value;

fn same(a: &Value, b: &Value, key: Option<&str>) -> bool {
    if key == Some("err") {
        return matches!((a, b), (Value::String(x), Value::String(_)) if !x.is_empty());
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, w, Some(k))))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w, None))
        }
        (Value::Number(x), Value::Number(y)) => {
            x.is_f64() == y.is_f64() && x.as_f64() == y.as_f64()
        }
        _ => a == b,
    }
}

fn cases_path() -> std::path::PathBuf {
    match std::env::var_os("MSE_FLOW_CASES") {
        Some(p) => p.into(),
        None => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/conformance/flow-cases.json"
        )
        .into(),
    }
}

#[tokio::test]
async fn all_flow_cases_pass_through_launch() {
    let path = cases_path();
    let raw = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("conformance cases at {}: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    assert_eq!(cases.len(), 200);
    let h = harness();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let parsed = mse_blueprint::Blueprint::from_value(c["blueprint"].clone());
        let outcome = match parsed {
            Ok(bp) => {
                let bp = std::sync::Arc::new(bp);
                let req = mse_blueprint::RunRequest::new(
                    c["init_ctx"].clone(),
                    std::time::Duration::from_secs(30),
                );
                h.launcher
                    .run(&bp, req)
                    .await
                    .map(|o| o.final_ctx)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let ok = match (c["status"].as_u64(), &outcome) {
            (Some(200), Ok(v)) => same(v, &c["final_ctx"], None),
            (Some(200), Err(_)) => false,
            (_, r) => r.is_err(),
        };
        if !ok {
            failures.push(format!(
                "case {i}: expected {} {}, got {:?}",
                c["status"], c["final_ctx"], outcome
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
