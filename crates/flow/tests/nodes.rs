//! Node semantics (`flow-ir.md` §6) and the §9 edge-case table, with
//! non-suspending dispatchers.

mod common;

use common::*;
use mse_flow::{FlowError, Limits};
use serde_json::{json, Value};

fn echo() -> FnDispatcher<impl Fn(&str, &Value) -> Result<Value, String> + Send + Sync> {
    FnDispatcher::new(|r: &str, input: &Value| {
        if r == "fail" {
            Err(format!("boom {input}"))
        } else {
            Ok(json!({"ref": r, "got": input}))
        }
    })
}

const NOOP: fn() -> Value = || seq(vec![]);

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
    assert_eq!(run(NOOP(), json!({"x": 1})).unwrap(), json!({"x": 1}));
}

#[test]
fn later_nodes_see_earlier_writes() {
    let flow = seq(vec![
        assign("$.a", lit(json!(1))),
        assign("$.b", json!({"op": "add", "lhs": p("$.a"), "rhs": p("$.a")})),
        assign("$.c", p("$.b")),
    ]);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"a": 1, "b": 2.0, "c": 2.0}));
}

// ---------------------------------------------------------------- branch

fn branch(cond: Value) -> Value {
    json!({"kind": "branch", "cond": cond,
           "then": assign("$.r", lit(json!("then"))),
           "else": assign("$.r", lit(json!("else")))})
}

#[test]
fn branch_takes_arms_on_exact_booleans() {
    assert_eq!(run(branch(lit(json!(true))), json!({})).unwrap(), json!({"r": "then"}));
    assert_eq!(run(branch(lit(json!(false))), json!({})).unwrap(), json!({"r": "else"}));
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
        assert_eq!(e.to_string(), format!("branch cond must be boolean, got: {text}"));
    }
}

#[test]
fn branch_cond_errors_propagate() {
    assert_eq!(
        run(branch(p("$.nope")), json!({})).unwrap_err(),
        FlowError::PathNotFound("$.nope".into())
    );
}

// ---------------------------------------------------------------- loop

fn looped(counter: Value, cond: Value, body: Value, max: u32) -> Value {
    json!({"kind": "loop", "counter": counter, "cond": cond, "body": body, "max": max})
}

#[test]
fn loop_counts_iterations() {
    let body = assign("$.seen", json!({"op": "add", "lhs": p("$.seen"), "rhs": p("$.i")}));
    let flow = looped(p("$.i"), lit(json!(true)), body, 4);
    // seen = 0 + 0 + 1 + 2 + 3 (0-based index inside the body)
    assert_json(&run(flow, json!({"seen": 0})).unwrap(), &json!({"i": 4, "seen": 6.0}));
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
    let flow = looped(p("$.i"), lit(json!(0)), NOOP(), 3);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 3}));
}

#[test]
fn loop_stops_when_cond_falsy() {
    let cond = json!({"op": "lt", "lhs": p("$.i"), "rhs": lit(json!(2))});
    let flow = looped(p("$.i"), cond, NOOP(), 10);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 2}));
    let flow = looped(p("$.i"), lit(json!(null)), NOOP(), 10);
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
    assert_json(&run(flow, json!({"x": 0})).unwrap(), &json!({"i": 1, "x": "str"}));
}

#[test]
fn loop_body_overwriting_counter_is_rewritten() {
    let flow = looped(p("$.i"), lit(json!(true)), assign("$.i", lit(json!("junk"))), 2);
    assert_json(&run(flow, json!({})).unwrap(), &json!({"i": 2}));
}

#[test]
fn loop_counter_lit_fails_before_anything_runs() {
    let d = echo();
    let flow = looped(lit(json!("$.i")), p("$.missing"), step("s", lit(json!(1)), "$.r"), 3);
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
fn loop_counter_holds_completed_iterations_in_the_failed_iteration() {
    // Body: step reads the counter; fails on the 3rd call. The input seen on the
    // failing call is the counter value at that time (= 2 completed iterations).
    let d = FnDispatcher::new(|_: &str, input: &Value| {
        if input == &json!(2) {
            Err("x".into())
        } else {
            Ok(json!(null))
        }
    });
    let flow = looped(p("$.i"), lit(json!(true)), step("s", p("$.i"), "$.r"), 10);
    assert!(run_with(flow, json!({}), &d).is_err());
    assert_eq!(d.calls().last().unwrap().1, json!(2));
}

#[test]
fn loop_ceiling_limit() {
    let limits = Limits {
        max_loop_iterations: 10,
        ..Limits::default()
    };
    let flow = looped(p("$.i"), lit(json!(true)), NOOP(), 1000);
    let e = run_limits(flow, json!({}), &NoSteps, &limits).unwrap_err();
    assert!(matches!(e, FlowError::Limit(_)), "{e:?}");
    assert!(e.to_string().contains("10 iterations"), "{e}");
    // reaching the loop's own max at the ceiling is fine
    let flow = looped(p("$.i"), lit(json!(true)), NOOP(), 10);
    assert_json(&run_limits(flow, json!({}), &NoSteps, &limits).unwrap(), &json!({"i": 10}));
    // cond turning falsy exactly at the ceiling is fine
    let cond = json!({"op": "lt", "lhs": p("$.i"), "rhs": lit(json!(10))});
    let flow = looped(p("$.i"), cond, NOOP(), 1000);
    assert_json(&run_limits(flow, json!({}), &NoSteps, &limits).unwrap(), &json!({"i": 10}));
}

#[test]
fn loop_default_ceiling_stops_huge_max() {
    let flow = looped(p("$.i"), lit(json!(true)), NOOP(), u32::MAX);
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
                   "else": NOOP()})
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
    let a = run(try_node(body.clone(), NOOP(), None), json!({"x": 1})).unwrap();
    let b = run(try_node(body, NOOP(), Some(Value::Null)), json!({"x": 1})).unwrap();
    assert_eq!(a, json!({"x": 1}));
    assert_eq!(a, b);
}

#[test]
fn try_err_at_lit_is_not_caught() {
    let d = echo();
    let flow = try_node(
        seq(vec![assign("$.a", lit(json!(1))), assign("$.b", p("$.nope"))]),
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
    let inner = try_node(assign("$.b", p("$.nope")), NOOP(), Some(lit(json!(1))));
    let outer = try_node(inner, NOOP(), Some(p("$.err")));
    assert_json(
        &run(outer, json!({})).unwrap(),
        &json!({"err": "invalid path syntax: expected Path expr for write target"}),
    );
}

#[test]
fn try_catch_failure_propagates_to_enclosing_try() {
    let inner = try_node(
        assign("$.x", p("$.nope1")),
        seq(vec![assign("$.in_catch", lit(json!(1))), assign("$.y", p("$.nope2"))]),
        Some(p("$.inner_err")),
    );
    let outer = try_node(
        seq(vec![assign("$.before", lit(json!(1))), inner]),
        NOOP(),
        Some(p("$.outer_err")),
    );
    // the outer rollback discards inner_err, in_catch and before
    assert_json(
        &run(outer.clone(), json!({})).unwrap(),
        &json!({"outer_err": "path not found: $.nope2"}),
    );
    // without an enclosing try the run fails
    let inner = try_node(assign("$.x", p("$.nope1")), assign("$.y", p("$.nope2")), None);
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
        assign("$.x", json!({"op": "div", "lhs": lit(json!(1)), "rhs": lit(json!(0))})),
        branch(lit(json!(1))),
        assign("$.x", p("nope")),
        json!({"kind": "assign", "at": lit(json!(1)), "value": lit(json!(1))}),
        step("s", lit(json!(1)), "$.x"),
        looped(p("$.i"), lit(json!(true)), NOOP(), 5),
        json!({"kind": "fanout", "items": lit(json!(1)), "bind": p("$.i"), "body": NOOP(), "join": "all", "out": p("$.o")}),
    ];
    for body in failing {
        let flow = try_node(body.clone(), assign("$.caught", lit(json!(true))), Some(p("$.err")));
        let out = run_limits(flow, json!({}), &NoSteps, &limits).unwrap();
        assert_eq!(out["caught"], json!(true), "{body}");
        assert!(out["err"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    }
}

#[test]
fn try_does_not_undo_dispatches() {
    let d = echo();
    let flow = try_node(
        seq(vec![step("a", lit(json!(1)), "$.r"), assign("$.x", p("$.nope"))]),
        NOOP(),
        None,
    );
    assert_eq!(run_with(flow, json!({}), &d).unwrap(), json!({}));
    assert_eq!(d.calls().len(), 1);
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
    assert_eq!(run(assign("$", lit(json!(7))), json!({"a": 5})).unwrap(), json!(7));
}

#[test]
fn initial_ctx_of_any_type_becomes_object_on_first_write() {
    for init in [json!(null), json!([1, 2]), json!(3), json!("s"), json!(true)] {
        assert_eq!(
            run(assign("$.x", lit(json!(1))), init.clone()).unwrap(),
            json!({"x": 1}),
            "{init}"
        );
        assert_eq!(run(NOOP(), init.clone()).unwrap(), init);
    }
}

#[test]
fn failed_run_returns_error_only() {
    let flow = seq(vec![assign("$.a", lit(json!(1))), assign("$.b", p("$.nope"))]);
    assert!(run(flow, json!({})).is_err());
}
