//! The four worked examples of `flow-ir.md` §10.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use mse_flow::{Dispatcher, JoinMode, Node};
use serde_json::{json, Value};

/// The example dispatcher, producing the reference engine's error texts (which
/// already carry one `dispatcher error for ref` prefix; the evaluator adds one).
#[derive(Default)]
struct ExampleDispatcher {
    review_calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Dispatcher for ExampleDispatcher {
    async fn dispatch(&self, step_ref: &str, input: Value) -> Result<Value, String> {
        match step_ref {
            "classify" => {
                let high = input.as_f64().is_some_and(|n| n > 5.0);
                Ok(json!({"label": if high { "high" } else { "low" }}))
            }
            "review" => {
                let n = self.review_calls.fetch_add(1, Ordering::SeqCst);
                Ok(json!(if n == 0 { "retry" } else { "ok" }))
            }
            "publish" => Err(
                "dispatcher error for ref 'publish': blocked: {\"reason\":\"quota\"}".to_owned(),
            ),
            "lint" if input == json!("b.rs") => Err(
                "dispatcher error for ref 'lint': dispatch_attempt: dispatch failed: worker fn returned error: parse error"
                    .to_owned(),
            ),
            "lint" => Ok(json!({"file": input, "warnings": 0})),
            other => Err(format!("unknown ref {other}")),
        }
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn example_1_assign_step_branch() {
    let flow = parse(
        r#"{"kind":"seq","children":[
  {"kind":"assign","at":{"op":"path","at":"$.score_next"},
   "value":{"op":"add","lhs":{"op":"path","at":"$.score"},"rhs":{"op":"lit","value":1}}},
  {"kind":"step","ref":"classify","in":{"op":"path","at":"$.score"},
   "out":{"op":"path","at":"$.result.class"}},
  {"kind":"branch",
   "cond":{"op":"eq","lhs":{"op":"path","at":"$.result.class.label"},"rhs":{"op":"lit","value":"high"}},
   "then":{"kind":"assign","at":{"op":"path","at":"$.route"},"value":{"op":"lit","value":"escalate"}},
   "else":{"kind":"assign","at":{"op":"path","at":"$.route"},"value":{"op":"lit","value":"auto"}}}]}"#,
    );
    let d = ExampleDispatcher::default();
    let out = run_with(flow, json!({"ticket": "T-9", "score": 7}), &d).unwrap();
    assert_eq!(
        out.to_string(),
        r#"{"result":{"class":{"label":"high"}},"route":"escalate","score":7,"score_next":8.0,"ticket":"T-9"}"#
    );
}

#[test]
fn example_2_retry_loop() {
    let flow = parse(
        r#"{"kind":"loop","counter":{"op":"path","at":"$.attempts"},"max":3,
 "cond":{"op":"eq","lhs":{"op":"path","at":"$.verdict"},"rhs":{"op":"lit","value":"retry"}},
 "body":{"kind":"step","ref":"review","in":{"op":"path","at":"$.draft"},"out":{"op":"path","at":"$.verdict"}}}"#,
    );
    let d = ExampleDispatcher::default();
    let out = run_with(flow, json!({"draft": "v1", "verdict": "retry"}), &d).unwrap();
    assert_eq!(
        out.to_string(),
        r#"{"attempts":2,"draft":"v1","verdict":"ok"}"#
    );
    assert_eq!(d.review_calls.load(Ordering::SeqCst), 2);
}

#[test]
fn example_3_try_with_rollback() {
    let flow = parse(
        r#"{"kind":"try","err_at":{"op":"path","at":"$.error"},
 "body":{"kind":"seq","children":[
   {"kind":"assign","at":{"op":"path","at":"$.draft"},"value":{"op":"lit","value":"final text"}},
   {"kind":"step","ref":"publish","in":{"op":"path","at":"$.draft"},"out":{"op":"path","at":"$.receipt"}}]},
 "catch":{"kind":"assign","at":{"op":"path","at":"$.status"},"value":{"op":"lit","value":"failed"}}}"#,
    );
    let d = ExampleDispatcher::default();
    let out = run_with(flow, json!({"status": "pending"}), &d).unwrap();
    assert_eq!(
        out.to_string(),
        r#"{"error":"dispatcher error for ref 'publish': dispatcher error for ref 'publish': blocked: {\"reason\":\"quota\"}","status":"failed"}"#
    );
}

const EXAMPLE_4: &str = r#"{"kind":"fanout","items":{"op":"path","at":"$.files"},"bind":{"op":"path","at":"$.file"},
 "join":"all_settled","out":{"op":"path","at":"$.lint"},
 "body":{"kind":"step","ref":"lint","in":{"op":"path","at":"$.file"},"out":{"op":"path","at":"$.report"}}}"#;

const LINT_ERROR: &str = "dispatcher error for ref 'lint': dispatcher error for ref 'lint': dispatch_attempt: dispatch failed: worker fn returned error: parse error";

fn example_4_with(join: JoinMode) -> Result<Value, mse_flow::FlowError> {
    let mut n: Node = serde_json::from_str(EXAMPLE_4).unwrap();
    if let Node::Fanout { join: j, .. } = &mut n {
        *j = join;
    }
    let d = ExampleDispatcher::default();
    run_with(
        serde_json::to_value(n).unwrap(),
        json!({"files": ["a.rs", "b.rs"], "repo": "demo"}),
        &d,
    )
}

#[test]
fn example_4_fanout_all_settled() {
    let out = example_4_with(JoinMode::AllSettled).unwrap();
    let expected = json!({"files": ["a.rs", "b.rs"],
        "lint": [
            {"status": "fulfilled", "value": {"file": "a.rs", "files": ["a.rs", "b.rs"], "repo": "demo",
                                              "report": {"file": "a.rs", "warnings": 0}}},
            {"reason": LINT_ERROR, "status": "rejected"}],
        "repo": "demo"});
    assert_json(&out, &expected);
}

#[test]
fn example_4_variants() {
    assert_eq!(
        example_4_with(JoinMode::All).unwrap_err().to_string(),
        LINT_ERROR
    );
    let single = json!({"file": "a.rs", "files": ["a.rs", "b.rs"], "repo": "demo",
                        "report": {"file": "a.rs", "warnings": 0}});
    for join in [JoinMode::Any, JoinMode::Race] {
        let out = example_4_with(join).unwrap();
        assert_json(&out["lint"], &single);
        assert!(out.get("file").is_none());
    }
}
