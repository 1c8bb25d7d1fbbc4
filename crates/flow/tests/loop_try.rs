//! Node semantics (`flow-ir.md` §6): loop and try, with non-suspending dispatchers.
//! Together with the other test files this covers the §9 edge-case table.

mod common;

use common::*;
use mse_flow::{FlowError, Limits};
use serde_json::{json, Value};

// ---------------------------------------------------------------- loop

#[test]
fn loop_counts_iterations() {
    let body = assign(
        "$.seen",
        json!({"op": "add", "lhs": p("$.seen"), "rhs": p("$.i")}),
    );
    let flow = looped(p("$.i"), lit(json!(true)), body, 4);
    // seen = 0 + 0 + 1 + 2 + 3 (0-based index inside the body)
    assert_json(
        &run(flow, json!({"seen": 0})).unwrap(),
        &json!({"i": 4, "seen": 6.0}),
    );
}

#[test]
fn loop_max_zero_writes_counter_only() {
    let d = echo();
    let flow = looped(p("$.i"), p("$.missing"), step("s", lit(json!(1)), "$.r"), 0);
    assert_json(&run_with(flow, json!({}), &d).unwrap(), &json!({"i": 0}));
    assert!(d.calls().is_empty());
}

#[test]
fn loop_cond_zero_is_truthy() {
    let flow = looped(p("$.i"), lit(json!(0)), noop(), 3);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 3}));
}

#[test]
fn loop_stops_when_cond_falsy() {
    let cond = json!({"op": "lt", "lhs": p("$.i"), "rhs": lit(json!(2))});
    let flow = looped(p("$.i"), cond, noop(), 10);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 2}));
    let flow = looped(p("$.i"), lit(json!(null)), noop(), 10);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 0}));
}

#[test]
fn loop_cond_missing_path_fails_on_first_check() {
    let d = echo();
    let flow = looped(p("$.i"), p("$.missing"), step("s", lit(json!(1)), "$.r"), 5);
    assert_eq!(
        run_with(flow, json!({}), &d).unwrap_err(),
        FlowError::PathNotFound("$.missing".into())
    );
    assert!(d.calls().is_empty());
}

#[test]
fn loop_cond_not_evaluated_once_max_reached() {
    // After the single iteration x is a string, so evaluating cond would fail.
    let cond = json!({"op": "lt", "lhs": p("$.x"), "rhs": lit(json!(100))});
    let flow = looped(p("$.i"), cond, assign("$.x", lit(json!("str"))), 1);
    assert_json(
        &run(flow, json!({"x": 0})).unwrap(),
        &json!({"i": 1, "x": "str"}),
    );
}

#[test]
fn loop_body_overwriting_counter_is_rewritten() {
    let flow = looped(
        p("$.i"),
        lit(json!(true)),
        assign("$.i", lit(json!("junk"))),
        2,
    );
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 2}));
}

#[test]
fn loop_counter_lit_fails_before_anything_runs() {
    let d = echo();
    let flow = looped(
        lit(json!("$.i")),
        p("$.missing"),
        step("s", lit(json!(1)), "$.r"),
        3,
    );
    let e = run_with(flow, json!({}), &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid path syntax: expected Path expr for write target"
    );
    assert!(d.calls().is_empty());
}

#[test]
fn loop_body_failure_at_iteration_two() {
    let d = FnDispatcher::new(|_: &str, input: &Value| {
        if input == &json!(2) {
            Err("third".into())
        } else {
            Ok(json!("ok"))
        }
    });
    let flow = looped(p("$.i"), lit(json!(true)), step("s", p("$.i"), "$.r"), 10);
    let e = run_with(flow.clone(), json!({}), &d).unwrap_err();
    assert_eq!(e.to_string(), "dispatcher error for ref 's': third");
    let inputs: Vec<Value> = d.calls().into_iter().map(|(_, i)| i).collect();
    // the body saw the 0-based index; the failing iteration saw counter = 2
    assert_eq!(inputs, vec![json!(0), json!(1), json!(2)]);
}

#[test]
fn loop_ceiling_limit() {
    let limits = Limits {
        max_loop_iterations: 10,
        ..Limits::default()
    };
    let flow = looped(p("$.i"), lit(json!(true)), noop(), 1000);
    let e = run_limits(flow, json!({}), &NoSteps, &limits).unwrap_err();
    assert!(matches!(e, FlowError::Limit(_)), "{e:?}");
    assert!(e.to_string().contains("10 iterations"), "{e}");
    // reaching the loop's own max at the ceiling is fine
    let flow = looped(p("$.i"), lit(json!(true)), noop(), 10);
    assert_json(
        &run_limits(flow, json!({}), &NoSteps, &limits).unwrap(),
        &json!({"i": 10}),
    );
    // cond turning falsy exactly at the ceiling is fine
    let cond = json!({"op": "lt", "lhs": p("$.i"), "rhs": lit(json!(10))});
    let flow = looped(p("$.i"), cond, noop(), 1000);
    assert_json(
        &run_limits(flow, json!({}), &NoSteps, &limits).unwrap(),
        &json!({"i": 10}),
    );
}

#[test]
fn loop_default_ceiling_stops_huge_max() {
    let flow = looped(p("$.i"), lit(json!(true)), noop(), u32::MAX);
    let e = run(flow, json!({})).unwrap_err();
    assert!(e.to_string().contains("100000"), "{e}");
}

// ---------------------------------------------------------------- try

fn try_node(body: Value, catch: Value, err_at: Option<Value>) -> Value {
    match err_at {
        Some(e) => json!({"kind": "try", "body": body, "catch": catch, "err_at": e}),
        None => json!({"kind": "try", "body": body, "catch": catch}),
    }
}

#[test]
fn try_success_leaves_err_at_and_skips_catch() {
    let flow = try_node(
        assign("$.a", lit(json!(1))),
        assign("$.caught", lit(json!(true))),
        Some(p("$.err")),
    );
    assert_json(&run(flow, json!({})).unwrap(), &json!({"a": 1}));
}

#[test]
fn try_rolls_back_records_error_and_runs_catch() {
    let body = seq(vec![
        assign("$.a", lit(json!(1))),
        assign("$.keep", lit(json!("changed"))),
        {
            // nested write deep inside a branch, then failure
            json!({"kind": "branch", "cond": lit(json!(true)),
                   "then": seq(vec![assign("$.deep.x", lit(json!(1))), assign("$.z", p("$.nope"))]),
                   "else": noop()})
        },
    ]);
    let flow = try_node(body, assign("$.caught", p("$.err")), Some(p("$.err")));
    assert_json(
        &run(flow, json!({"keep": "orig"})).unwrap(),
        &json!({"caught": "path not found: $.nope", "err": "path not found: $.nope", "keep": "orig"}),
    );
}

#[test]
fn try_err_at_null_equals_absent() {
    let body = assign("$.a", p("$.nope"));
    let a = run(try_node(body.clone(), noop(), None), json!({"x": 1})).unwrap();
    let b = run(try_node(body, noop(), Some(Value::Null)), json!({"x": 1})).unwrap();
    assert_eq!(a, json!({"x": 1}));
    assert_eq!(a, b);
}

#[test]
fn try_err_at_lit_is_not_caught() {
    let d = echo();
    let flow = try_node(
        seq(vec![
            assign("$.a", lit(json!(1))),
            assign("$.b", p("$.nope")),
        ]),
        step("catch", lit(json!(1)), "$.c"),
        Some(lit(json!(null))),
    );
    let e = run_with(flow, json!({}), &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid path syntax: expected Path expr for write target"
    );
    assert!(d.calls().is_empty(), "catch must not run");
    // ...but an enclosing try catches it
    let inner = try_node(assign("$.b", p("$.nope")), noop(), Some(lit(json!(1))));
    let outer = try_node(inner, noop(), Some(p("$.err")));
    assert_json(
        &run(outer, json!({})).unwrap(),
        &json!({"err": "invalid path syntax: expected Path expr for write target"}),
    );
}

#[test]
fn try_catch_failure_propagates_to_enclosing_try() {
    let inner = try_node(
        assign("$.x", p("$.nope1")),
        seq(vec![
            assign("$.in_catch", lit(json!(1))),
            assign("$.y", p("$.nope2")),
        ]),
        Some(p("$.inner_err")),
    );
    let outer = try_node(
        seq(vec![assign("$.before", lit(json!(1))), inner]),
        noop(),
        Some(p("$.outer_err")),
    );
    // the outer rollback discards inner_err, in_catch and before
    assert_json(
        &run(outer.clone(), json!({})).unwrap(),
        &json!({"outer_err": "path not found: $.nope2"}),
    );
    // without an enclosing try the run fails
    let inner = try_node(
        assign("$.x", p("$.nope1")),
        assign("$.y", p("$.nope2")),
        None,
    );
    assert_eq!(
        run(inner, json!({})).unwrap_err(),
        FlowError::PathNotFound("$.nope2".into())
    );
}

#[test]
fn try_catches_every_error_kind() {
    let limits = Limits {
        max_loop_iterations: 2,
        ..Limits::default()
    };
    let failing = [
        assign("$.x", p("$.nope")),
        assign(
            "$.x",
            json!({"op": "div", "lhs": lit(json!(1)), "rhs": lit(json!(0))}),
        ),
        branch(lit(json!(1))),
        assign("$.x", p("nope")),
        json!({"kind": "assign", "at": lit(json!(1)), "value": lit(json!(1))}),
        step("s", lit(json!(1)), "$.x"),
        looped(p("$.i"), lit(json!(true)), noop(), 5),
        json!({"kind": "fanout", "items": lit(json!(1)), "bind": p("$.i"), "body": noop(), "join": "all", "out": p("$.o")}),
    ];
    for body in failing {
        let flow = try_node(
            body.clone(),
            assign("$.caught", lit(json!(true))),
            Some(p("$.err")),
        );
        let out = run_limits(flow, json!({}), &NoSteps, &limits).unwrap();
        assert_eq!(out["caught"], json!(true), "{body}");
        assert!(out["err"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    }
}

#[test]
fn try_does_not_undo_dispatches() {
    let d = echo();
    let flow = try_node(
        seq(vec![
            step("a", lit(json!(1)), "$.r"),
            assign("$.x", p("$.nope")),
        ]),
        noop(),
        None,
    );
    assert_eq!(run_with(flow, json!({}), &d).unwrap(), json!({}));
    assert_eq!(d.calls().len(), 1);
}
