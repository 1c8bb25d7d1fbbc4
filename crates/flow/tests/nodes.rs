//! Node semantics (`flow-ir.md` §6): step, seq, branch, assign, with non-suspending dispatchers.
//! Together with the other test files this covers the §9 edge-case table.

mod common;

use common::*;
use mse_flow::FlowError;
use serde_json::{json, Value};

// ---------------------------------------------------------------- step

#[test]
fn step_dispatches_and_writes() {
    let d = echo();
    let out = run_with(step("s", p("$.a"), "$.r.x"), json!({"a": [1, 2.0]}), &d).unwrap();
    assert_json(
        &out,
        &json!({"a": [1, 2.0], "r": {"x": {"got": [1, 2.0], "ref": "s"}}}),
    );
    assert_eq!(d.calls(), vec![("s".to_owned(), json!([1, 2.0]))]);
}

#[test]
fn step_failure_is_wrapped_once() {
    let d = echo();
    let e = run_with(step("fail", lit(json!({"k": 1})), "$.r"), json!({}), &d).unwrap_err();
    assert_eq!(
        e,
        FlowError::Dispatcher {
            step_ref: "fail".into(),
            msg: "boom {\"k\":1}".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "dispatcher error for ref 'fail': boom {\"k\":1}"
    );
    // a dispatcher message that already carries the prefix gets exactly one more
    let d2 = FnDispatcher::new(|r: &str, _: &Value| {
        Err(format!("dispatcher error for ref '{r}': inner"))
    });
    let e = run_with(step("x", lit(json!(1)), "$.r"), json!({}), &d2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dispatcher error for ref 'x': dispatcher error for ref 'x': inner"
    );
}

#[test]
fn step_out_lit_fails_after_dispatch() {
    let d = echo();
    let flow = json!({"kind": "step", "ref": "s", "in": lit(json!(1)), "out": lit(json!("$.r"))});
    let e = run_with(flow, json!({}), &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid path syntax: expected Path expr for write target"
    );
    assert_eq!(d.calls().len(), 1, "dispatch happened before the out check");
}

#[test]
fn step_input_errors_propagate_unwrapped_without_dispatch() {
    let d = echo();
    let e = run_with(step("s", p("$.missing"), "$.r"), json!({}), &d).unwrap_err();
    assert_eq!(e, FlowError::PathNotFound("$.missing".into()));
    let e = run_with(
        step("s", json!({"op": "len", "of": lit(json!(1))}), "$.r"),
        json!({}),
        &d,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dispatcher error for ref 'expr.len': len: unsupported type Number(1)"
    );
    assert!(d.calls().is_empty());
}

#[test]
fn step_out_invalid_path_string() {
    let d = echo();
    let e = run_with(step("s", lit(json!(1)), "r"), json!({}), &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid path syntax: path must start with $ or $.: r"
    );
}

// ---------------------------------------------------------------- seq

#[test]
fn seq_runs_in_order_and_stops_at_first_failure() {
    let d = echo();
    let flow = seq(vec![
        step("a", lit(json!(1)), "$.a"),
        step("fail", lit(json!(2)), "$.b"),
        step("c", lit(json!(3)), "$.c"),
    ]);
    assert!(run_with(flow, json!({}), &d).is_err());
    let refs: Vec<String> = d.calls().into_iter().map(|(r, _)| r).collect();
    assert_eq!(refs, vec!["a", "fail"]);
    assert_eq!(run(noop(), json!({"x": 1})).unwrap(), json!({"x": 1}));
}

#[test]
fn later_nodes_see_earlier_writes() {
    let flow = seq(vec![
        assign("$.a", lit(json!(1))),
        assign(
            "$.b",
            json!({"op": "add", "lhs": p("$.a"), "rhs": p("$.a")}),
        ),
        assign("$.c", p("$.b")),
    ]);
    assert_json(
        &run(flow, json!({})).unwrap(),
        &json!({"a": 1, "b": 2.0, "c": 2.0}),
    );
}

// ---------------------------------------------------------------- branch

#[test]
fn branch_takes_arms_on_exact_booleans() {
    assert_eq!(
        run(branch(lit(json!(true))), json!({})).unwrap(),
        json!({"r": "then"})
    );
    assert_eq!(
        run(branch(lit(json!(false))), json!({})).unwrap(),
        json!({"r": "else"})
    );
}

#[test]
fn branch_rejects_non_booleans() {
    for (v, text) in [
        (json!(null), "null"),
        (json!(1), "1"),
        (json!("yes"), "\"yes\""),
        (json!({"a": "b"}), "{\"a\":\"b\"}"),
        (json!([]), "[]"),
        (json!(1.5), "1.5"),
    ] {
        let e = run(branch(lit(v.clone())), json!({})).unwrap_err();
        assert_eq!(e, FlowError::NonBoolCond(v));
        assert_eq!(
            e.to_string(),
            format!("branch cond must be boolean, got: {text}")
        );
    }
}

#[test]
fn branch_cond_errors_propagate() {
    assert_eq!(
        run(branch(p("$.nope")), json!({})).unwrap_err(),
        FlowError::PathNotFound("$.nope".into())
    );
}

// ---------------------------------------------------------------- assign

#[test]
fn assign_writes_and_checks_target() {
    assert_json(
        &run(assign("$.a.b", lit(json!(1.0))), json!({"a": 5})).unwrap(),
        &json!({"a": {"b": 1.0}}),
    );
    let e = run(
        json!({"kind": "assign", "at": lit(json!("$.a")), "value": lit(json!(1))}),
        json!({}),
    )
    .unwrap_err();
    assert_eq!(
        e,
        FlowError::InvalidPath("expected Path expr for write target".into())
    );
    // value errors come first
    let e = run(
        json!({"kind": "assign", "at": lit(json!("$.a")), "value": p("$.nope")}),
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e, FlowError::PathNotFound("$.nope".into()));
    // self-referential assign reads the value before writing
    assert_json(
        &run(assign("$.a.inner", p("$.a")), json!({"a": {"v": 1}})).unwrap(),
        &json!({"a": {"inner": {"v": 1}, "v": 1}}),
    );
    assert_eq!(
        run(assign("$", lit(json!(7))), json!({"a": 5})).unwrap(),
        json!(7)
    );
}

#[test]
fn initial_ctx_of_any_type_becomes_object_on_first_write() {
    for init in [
        json!(null),
        json!([1, 2]),
        json!(3),
        json!("s"),
        json!(true),
    ] {
        assert_eq!(
            run(assign("$.x", lit(json!(1))), init.clone()).unwrap(),
            json!({"x": 1}),
            "{init}"
        );
        assert_eq!(run(noop(), init.clone()).unwrap(), init);
    }
}

#[test]
fn failed_run_returns_error_only() {
    let flow = seq(vec![
        assign("$.a", lit(json!(1))),
        assign("$.b", p("$.nope")),
    ]);
    assert!(run(flow, json!({})).is_err());
}
