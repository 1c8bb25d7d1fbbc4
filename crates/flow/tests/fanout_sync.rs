//! Fanout semantics (`flow-ir.md` §6.7) with dispatchers that never suspend:
//! the §7.2 degenerate case (sequential evaluation in item order), isolation,
//! validation order and limits.

mod common;

use common::*;
use mse_flow::{FlowError, Limits};
use serde_json::{json, Value};

fn fanout(items: Value, bind: Value, body: Value, join: &str, out: Value) -> Value {
    json!({"kind": "fanout", "items": items, "bind": bind, "body": body, "join": join, "out": out})
}

/// fanout over literal items with `step work($.item) -> $.res`.
fn work_fanout(items: Value, join: &str) -> Value {
    fanout(
        lit(items),
        p("$.item"),
        step("work", p("$.item"), "$.res"),
        join,
        p("$.out"),
    )
}

/// Fails for items that are strings starting with "bad", echoes otherwise.
fn worker() -> FnDispatcher<impl Fn(&str, &Value) -> Result<Value, String> + Send + Sync> {
    FnDispatcher::new(|_: &str, input: &Value| match input.as_str() {
        Some(s) if s.starts_with("bad") => Err(format!("rejected {s}")),
        _ => Ok(json!({"done": input})),
    })
}

fn inputs(
    d: &FnDispatcher<impl Fn(&str, &Value) -> Result<Value, String> + Send + Sync>,
) -> Vec<Value> {
    d.calls().into_iter().map(|(_, i)| i).collect()
}

const JOINS: [&str; 4] = ["all", "any", "race", "all_settled"];

#[test]
fn items_must_be_an_array() {
    for (items, dbg) in [
        (json!("abc"), "String(\"abc\")"),
        (json!({"a": 1}), "Object {\"a\": Number(1)}"),
        (json!(null), "Null"),
        (json!(2.5), "Number(2.5)"),
    ] {
        for join in JOINS {
            let e = run(work_fanout(items.clone(), join), json!({})).unwrap_err();
            assert_eq!(
                e,
                FlowError::Dispatcher {
                    step_ref: "fanout.items".into(),
                    msg: format!("expected array, got {dbg}")
                }
            );
            assert_eq!(
                e.to_string(),
                format!("dispatcher error for ref 'fanout.items': expected array, got {dbg}")
            );
        }
    }
}

#[test]
fn empty_items_write_empty_array_for_every_join() {
    for join in JOINS {
        let out = run(work_fanout(json!([]), join), json!({"a": 1})).unwrap();
        assert_eq!(out, json!({"a": 1, "out": []}), "{join}");
    }
}

#[test]
fn bind_must_be_a_path_and_no_branch_runs() {
    for items in [json!([1, 2]), json!([])] {
        let d = worker();
        let flow = fanout(
            lit(items),
            lit(json!("$.item")),
            step("work", lit(json!(1)), "$.r"),
            "all",
            p("$.out"),
        );
        let e = run_with(flow, json!({}), &d).unwrap_err();
        assert_eq!(
            e,
            FlowError::InvalidPath("Step.out must be a Path expr".into())
        );
        assert_eq!(
            e.to_string(),
            "invalid path syntax: Step.out must be a Path expr"
        );
        assert!(d.calls().is_empty());
    }
}

#[test]
fn out_is_checked_after_branches_ran() {
    let d = worker();
    let flow = fanout(
        lit(json!([1, 2])),
        p("$.item"),
        step("work", p("$.item"), "$.r"),
        "all",
        lit(json!("$.out")),
    );
    let e = run_with(flow, json!({}), &d).unwrap_err();
    assert_eq!(
        e,
        FlowError::InvalidPath("expected Path expr for write target".into())
    );
    assert_eq!(d.calls().len(), 2);
}

#[test]
fn all_results_are_full_branch_ctxs_in_item_order() {
    let d = worker();
    let out = run_with(
        work_fanout(json!([1, 2.0, "x"]), "all"),
        json!({"p": true}),
        &d,
    )
    .unwrap();
    assert_json(
        &out,
        &json!({"out": [
            {"item": 1, "p": true, "res": {"done": 1}},
            {"item": 2.0, "p": true, "res": {"done": 2.0}},
            {"item": "x", "p": true, "res": {"done": "x"}}
        ], "p": true}),
    );
    assert_eq!(inputs(&d), vec![json!(1), json!(2.0), json!("x")]);
}

#[test]
fn branches_are_isolated_from_each_other_and_the_parent() {
    // Each branch appends to $.acc; no branch sees another's write and the parent
    // keeps its own $.acc.
    let body = seq(vec![
        assign("$.seen_acc", p("$.acc")),
        assign("$.acc", p("$.item")),
    ]);
    let flow = seq(vec![
        fanout(lit(json!(["a", "b"])), p("$.item"), body, "all", p("$.out")),
        assign("$.after", p("$.acc")),
    ]);
    let out = run(flow, json!({"acc": "parent"})).unwrap();
    assert_json(
        &out,
        &json!({"acc": "parent", "after": "parent", "out": [
            {"acc": "a", "item": "a", "seen_acc": "parent"},
            {"acc": "b", "item": "b", "seen_acc": "parent"}
        ]}),
    );
    assert!(out.get("item").is_none());
}

#[test]
fn bind_root_makes_the_item_the_branch_ctx() {
    let flow = fanout(
        lit(json!([{"k": 1}, 5, [1]])),
        p("$"),
        assign("$.w", lit(json!(true))),
        "all",
        p("$.out"),
    );
    assert_json(
        &run(flow, json!({"parent": 1})).unwrap(),
        &json!({"out": [{"k": 1, "w": true}, {"w": true}, {"w": true}], "parent": 1}),
    );
    let flow = fanout(
        lit(json!([5, "s"])),
        p("$."),
        seq(vec![]),
        "all",
        p("$.out"),
    );
    assert_json(&run(flow, json!({})).unwrap(), &json!({"out": [5, "s"]}));
}

#[test]
fn bind_invalid_path_string() {
    let flow = fanout(lit(json!([1])), p("item"), seq(vec![]), "all", p("$.out"));
    assert_eq!(
        run(flow, json!({})).unwrap_err().to_string(),
        "invalid path syntax: path must start with $ or $.: item"
    );
}

#[test]
fn out_equal_to_bind_path() {
    let flow = fanout(lit(json!([1, 2])), p("$.x"), seq(vec![]), "all", p("$.x"));
    assert_json(
        &run(flow, json!({"x": "orig"})).unwrap(),
        &json!({"x": [{"x": 1}, {"x": 2}]}),
    );
}

#[test]
fn items_from_ctx_path() {
    let flow = fanout(p("$.files"), p("$.f"), seq(vec![]), "all", p("$.files"));
    assert_json(
        &run(flow, json!({"files": ["a", "b"]})).unwrap(),
        &json!({"files": [{"f": "a", "files": ["a", "b"]}, {"f": "b", "files": ["a", "b"]}]}),
    );
}

#[test]
fn degenerate_all_stops_at_first_failing_item() {
    let d = worker();
    let e = run_with(
        work_fanout(json!(["ok0", "bad1", "ok2", "bad3"]), "all"),
        json!({}),
        &d,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dispatcher error for ref 'work': rejected bad1"
    );
    assert_eq!(inputs(&d), vec![json!("ok0"), json!("bad1")]);
}

#[test]
fn degenerate_any_runs_until_first_success() {
    let d = worker();
    let out = run_with(
        work_fanout(json!(["bad0", "bad1", "ok2", "ok3"]), "any"),
        json!({}),
        &d,
    )
    .unwrap();
    assert_json(&out["out"], &json!({"item": "ok2", "res": {"done": "ok2"}}));
    assert_eq!(inputs(&d), vec![json!("bad0"), json!("bad1"), json!("ok2")]);
}

#[test]
fn degenerate_any_all_fail_reports_last_item() {
    let d = worker();
    let e = run_with(
        work_fanout(json!(["bad0", "bad1", "bad2"]), "any"),
        json!({}),
        &d,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dispatcher error for ref 'work': rejected bad2"
    );
    assert_eq!(d.calls().len(), 3);
}

#[test]
fn degenerate_race_runs_only_the_first_item() {
    let d = worker();
    let e = run_with(work_fanout(json!(["bad0", "ok1"]), "race"), json!({}), &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dispatcher error for ref 'work': rejected bad0"
    );
    assert_eq!(inputs(&d), vec![json!("bad0")]);
    let d = worker();
    let out = run_with(work_fanout(json!(["ok0", "bad1"]), "race"), json!({}), &d).unwrap();
    assert_eq!(out["out"]["item"], json!("ok0"));
    assert_eq!(d.calls().len(), 1);
}

#[test]
fn degenerate_all_settled_runs_all() {
    let d = worker();
    let out = run_with(
        work_fanout(json!(["bad0", "ok1", "bad2"]), "all_settled"),
        json!({}),
        &d,
    )
    .unwrap();
    assert_json(
        &out,
        &json!({"out": [
            {"reason": "dispatcher error for ref 'work': rejected bad0", "status": "rejected"},
            {"status": "fulfilled", "value": {"item": "ok1", "res": {"done": "ok1"}}},
            {"reason": "dispatcher error for ref 'work': rejected bad2", "status": "rejected"}
        ]}),
    );
    assert_eq!(d.calls().len(), 3);
}

#[test]
fn all_settled_all_fail_is_not_an_error() {
    let out = run(work_fanout(json!([1, 2]), "all_settled"), json!({})).unwrap();
    let arr = out["out"].as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert!(arr.iter().all(|r| r["status"] == "rejected"));
}

#[test]
fn branch_errors_surface_unchanged() {
    let flow = fanout(
        lit(json!([1])),
        p("$.i"),
        assign("$.x", p("$.nope")),
        "all",
        p("$.out"),
    );
    assert_eq!(
        run(flow, json!({})).unwrap_err(),
        FlowError::PathNotFound("$.nope".into())
    );
}

#[test]
fn nested_fanouts() {
    let inner = fanout(
        p("$.row"),
        p("$.cell"),
        assign("$.v", p("$.cell")),
        "all",
        p("$.cells"),
    );
    let flow = fanout(
        lit(json!([[1, 2], [3]])),
        p("$.row"),
        inner,
        "all",
        p("$.rows"),
    );
    let out = run(flow, json!({})).unwrap();
    assert_eq!(out["rows"][0]["cells"][1]["v"], json!(2));
    assert_eq!(out["rows"][1]["cells"][0]["v"], json!(3));
    assert_eq!(out["rows"].as_array().unwrap().len(), 2);
}

#[test]
fn width_limit_fails_before_any_branch() {
    let limits = Limits {
        max_fanout_width: 2,
        ..Limits::default()
    };
    let d = worker();
    let e = run_limits(
        work_fanout(json!([1, 2, 3]), "all_settled"),
        json!({}),
        &d,
        &limits,
    )
    .unwrap_err();
    assert!(matches!(e, FlowError::Limit(_)));
    assert!(e.to_string().contains("fanout width of 2"), "{e}");
    assert!(d.calls().is_empty());
    // at the limit is fine
    assert!(run_limits(
        work_fanout(json!([1, 2]), "all_settled"),
        json!({}),
        &d,
        &limits
    )
    .is_ok());
}

#[test]
fn default_width_limit() {
    let items: Vec<u32> = (0..1025).collect();
    let e = run(work_fanout(json!(items), "all_settled"), json!({})).unwrap_err();
    assert!(e.to_string().contains("1024"), "{e}");
}

fn nest(levels: usize) -> Value {
    let mut body = assign("$.leaf", lit(json!(true)));
    for _ in 0..levels {
        body = fanout(lit(json!([1])), p("$.i"), body, "all", p("$.o"));
    }
    body
}

#[test]
fn depth_limit() {
    let limits = Limits {
        max_fanout_depth: 2,
        ..Limits::default()
    };
    assert!(run_limits(nest(2), json!({}), &NoSteps, &limits).is_ok());
    let e = run_limits(nest(3), json!({}), &NoSteps, &limits).unwrap_err();
    assert!(matches!(e, FlowError::Limit(_)));
    assert!(e.to_string().contains("fanout depth of 2"), "{e}");
    assert!(run(nest(8), json!({})).is_ok());
    assert!(matches!(
        run(nest(9), json!({})).unwrap_err(),
        FlowError::Limit(_)
    ));
}
