//! Expression semantics (`flow-ir.md` §5) for every op, with exact error texts.

mod common;

use common::*;
use serde_json::{json, Value};

fn bin(op: &str, l: Value, r: Value) -> Value {
    json!({"op": op, "lhs": lit(l), "rhs": lit(r)})
}

fn ev0(e: Value) -> Result<Value, mse_flow::FlowError> {
    ev(e, &json!({}))
}

#[test]
fn debug_rendering_matches_reference() {
    // serde_json's Debug output is the reference's rendering.
    let cases = [
        (json!(null), "Null"),
        (json!(true), "Bool(true)"),
        (json!(1), "Number(1)"),
        (json!(2.5), "Number(2.5)"),
        (json!("abc"), "String(\"abc\")"),
        (json!([1]), "Array [Number(1)]"),
        (json!({"a": 1}), "Object {\"a\": Number(1)}"),
    ];
    for (v, want) in cases {
        assert_eq!(format!("{v:?}"), want);
        if !v.is_number() {
            let msg = err_text(ev0(bin("lt", v.clone(), json!(1))));
            assert_eq!(
                msg,
                format!("dispatcher error for ref 'expr.cmp': expected number, got {want}")
            );
        }
    }
}

#[test]
fn path_reads_copy_and_lit_is_verbatim() {
    let ctx = json!({"a": {"b": [1, 2.0]}, "n": null});
    assert_json(&ev(p("$.a.b"), &ctx).unwrap(), &json!([1, 2.0]));
    assert_eq!(ev(p("$.n"), &ctx).unwrap(), Value::Null);
    assert_eq!(ev(p("$"), &ctx).unwrap(), ctx);
    assert_eq!(err_text(ev(p("$.zz"), &ctx)), "path not found: $.zz");
    assert_eq!(
        err_text(ev(p("zz"), &ctx)),
        "invalid path syntax: path must start with $ or $.: zz"
    );
    let looks_like_expr = json!({"op": "path", "at": "$.a"});
    assert_eq!(
        ev(lit(looks_like_expr.clone()), &ctx).unwrap(),
        looks_like_expr
    );
    assert_eq!(ev(lit(json!(null)), &ctx).unwrap(), Value::Null);
}

#[test]
fn eq_and_ne_structural() {
    let t = |l: Value, r: Value, want: bool| {
        assert_eq!(
            ev0(bin("eq", l.clone(), r.clone())).unwrap(),
            json!(want),
            "{l} eq {r}"
        );
        assert_eq!(
            ev0(bin("ne", l.clone(), r.clone())).unwrap(),
            json!(!want),
            "{l} ne {r}"
        );
    };
    t(json!(2), json!(2), true);
    t(json!(2), json!(2.0), false);
    t(json!(-0.0), json!(0.0), true);
    t(json!(-1), json!(-1), true);
    t(json!(u64::MAX), json!(u64::MAX), true);
    t(json!(1), json!(true), false);
    t(json!(null), json!(null), true);
    t(json!(null), json!(false), false);
    t(json!("a"), json!("a"), true);
    t(json!([1, [2]]), json!([1, [2]]), true);
    t(json!([1, 2]), json!([2, 1]), false);
    t(json!([1]), json!([1.0]), false);
    t(
        json!({"a": 1, "b": [1, 2]}),
        json!({"b": [1, 2], "a": 1}),
        true,
    );
    t(json!({"a": 1}), json!({"a": 1, "b": 2}), false);
    t(json!({"a": 1}), json!({"a": 1.0}), false);
    t(json!({}), json!([]), false);
}

#[test]
fn eq_i64_and_u64_same_integer() {
    // Value::from(i64) and a parsed u64 hold the same integer.
    let a = Value::from(5i64);
    let b: Value = serde_json::from_str("5").unwrap();
    assert!(mse_flow::values_equal(&a, &b));
    assert!(!mse_flow::values_equal(&a, &Value::from(5.0)));
}

#[test]
fn comparisons() {
    let t = |op: &str, l: Value, r: Value, want: bool| {
        assert_eq!(
            ev0(bin(op, l.clone(), r.clone())).unwrap(),
            json!(want),
            "{l} {op} {r}"
        );
    };
    t("lt", json!(1), json!(2), true);
    t("lt", json!(2), json!(2.0), false);
    t("le", json!(2), json!(2.0), true);
    t("gt", json!(2.5), json!(2), true);
    t("ge", json!(-1), json!(-1.5), true);
    t("ge", json!(-0.0), json!(0), true);
    t("gt", json!(1), json!(1), false);
    t("le", json!(3), json!(1), false);
}

#[test]
fn comparison_errors() {
    for (l, r, dbg) in [
        (json!("1"), json!(2), "String(\"1\")"),
        (json!(true), json!(1), "Bool(true)"),
        (json!(null), json!(1), "Null"),
        (json!(1), json!([1]), "Array [Number(1)]"),
    ] {
        for op in ["lt", "le", "gt", "ge"] {
            assert_eq!(
                err_text(ev0(bin(op, l.clone(), r.clone()))),
                format!("dispatcher error for ref 'expr.cmp': expected number, got {dbg}")
            );
        }
    }
}

#[test]
fn operands_left_first_and_errors_abort() {
    // lhs error wins over rhs error
    let e = json!({"op": "eq", "lhs": p("$.a"), "rhs": p("$.b")});
    assert_eq!(err_text(ev0(e)), "path not found: $.a");
    let e = json!({"op": "add", "lhs": p("$.a"), "rhs": lit(json!("x"))});
    assert_eq!(err_text(ev0(e)), "path not found: $.a");
    let e = json!({"op": "add", "lhs": lit(json!("x")), "rhs": p("$.a")});
    assert_eq!(err_text(ev0(e)), "path not found: $.a");
}

#[test]
fn not_uses_truthiness() {
    for (v, want) in [
        (json!(null), true),
        (json!(false), true),
        (json!(true), false),
        (json!(0), false),
        (json!(0.0), false),
        (json!(""), false),
        (json!([]), false),
        (json!({}), false),
    ] {
        assert_eq!(
            ev0(json!({"op": "not", "operand": lit(v.clone())})).unwrap(),
            json!(want),
            "not {v}"
        );
    }
}

#[test]
fn and_or_short_circuit_and_always_boolean() {
    let and = |ops: Vec<Value>| ev0(json!({"op": "and", "operands": ops}));
    let or = |ops: Vec<Value>| ev0(json!({"op": "or", "operands": ops}));
    assert_eq!(and(vec![]).unwrap(), json!(true));
    assert_eq!(or(vec![]).unwrap(), json!(false));
    assert_eq!(
        and(vec![lit(json!(false)), p("$.missing")]).unwrap(),
        json!(false)
    );
    assert_eq!(
        and(vec![lit(json!(null)), p("$.missing")]).unwrap(),
        json!(false)
    );
    assert_eq!(
        err_text(and(vec![lit(json!(1)), p("$.missing")])),
        "path not found: $.missing"
    );
    assert_eq!(
        and(vec![lit(json!(1)), lit(json!("x"))]).unwrap(),
        json!(true)
    );
    assert_eq!(
        or(vec![lit(json!(0)), p("$.missing")]).unwrap(),
        json!(true)
    );
    assert_eq!(
        err_text(or(vec![p("$.missing"), lit(json!(true))])),
        "path not found: $.missing"
    );
    assert_eq!(
        or(vec![lit(json!(null)), lit(json!(false))]).unwrap(),
        json!(false)
    );
    assert_eq!(
        or(vec![lit(json!(null)), lit(json!("x"))]).unwrap(),
        json!(true)
    );
}

#[test]
fn exists_never_fails() {
    let ctx = json!({"n": null, "arr": [1], "a": {"b": 2}});
    let ex = |at: &str| ev(json!({"op": "exists", "at": at}), &ctx).unwrap();
    assert_eq!(ex("$.n"), json!(true));
    assert_eq!(ex("$.a.b"), json!(true));
    assert_eq!(ex("$"), json!(true));
    assert_eq!(ex("$.arr.0"), json!(false));
    assert_eq!(ex("$.missing"), json!(false));
    assert_eq!(ex("x"), json!(false));
    assert_eq!(ex(""), json!(false));
}

#[test]
fn arithmetic_always_float() {
    let t = |op: &str, l: Value, r: Value, want: &str| {
        let v = ev0(bin(op, l, r)).unwrap();
        assert!(v.is_f64(), "{v}");
        assert_eq!(v.to_string(), want);
    };
    t("add", json!(1), json!(1), "2.0");
    t("add", json!(2), json!(3), "5.0");
    t("sub", json!(1), json!(3), "-2.0");
    t("mul", json!(2.5), json!(2), "5.0");
    t("div", json!(1), json!(4), "0.25");
    t("div", json!(-3), json!(2), "-1.5");
    t("mul", json!(1e20), json!(10), "1e+21");
    // eq(add(n,1), 3) is false; compare with the float literal
    let e = json!({"op": "eq", "lhs": bin("add", json!(2), json!(1)), "rhs": lit(json!(3))});
    assert_eq!(ev0(e).unwrap(), json!(false));
    let e = json!({"op": "eq", "lhs": bin("add", json!(2), json!(1)), "rhs": lit(json!(3.0))});
    assert_eq!(ev0(e).unwrap(), json!(true));
}

#[test]
fn arithmetic_errors() {
    for op in ["add", "sub", "mul", "div"] {
        assert_eq!(
            err_text(ev0(bin(op, json!("a"), json!(1)))),
            format!("dispatcher error for ref 'expr.{op}': expected number, got String(\"a\")")
        );
        assert_eq!(
            err_text(ev0(bin(op, json!(1), json!(null)))),
            format!("dispatcher error for ref 'expr.{op}': expected number, got Null")
        );
    }
    for zero in [json!(0), json!(0.0), json!(-0.0)] {
        assert_eq!(
            err_text(ev0(bin("div", json!(1), zero))),
            "dispatcher error for ref 'expr.div': arithmetic failure (e.g. division by zero)"
        );
    }
    assert!(err_text(ev0(bin("div", json!(0), json!(0.0)))).contains("expr.div"));
    assert_eq!(
        err_text(ev0(bin("mul", json!(1e308), json!(10)))),
        "dispatcher error for ref 'expr.mul': result not f64-representable: inf"
    );
    assert_eq!(
        err_text(ev0(bin("sub", json!(-1e308), json!(1e308)))),
        "dispatcher error for ref 'expr.sub': result not f64-representable: -inf"
    );
    assert_eq!(
        err_text(ev0(bin("add", json!(1.7e308), json!(1.7e308)))),
        "dispatcher error for ref 'expr.add': result not f64-representable: inf"
    );
    assert!(err_text(ev0(bin("div", json!(1e308), json!(1e-308))))
        .starts_with("dispatcher error for ref 'expr.div': result not f64-representable"));
}

#[test]
fn len_counts() {
    let len = |v: Value| ev0(json!({"op": "len", "of": lit(v)}));
    assert_json(&len(json!([1, 2, 3])).unwrap(), &json!(3));
    assert_json(&len(json!("héllo日本")).unwrap(), &json!(7));
    assert_json(&len(json!("")).unwrap(), &json!(0));
    assert_json(&len(json!({"a": 1, "b": 2})).unwrap(), &json!(2));
    assert!(len(json!([])).unwrap().is_u64());
    assert_eq!(
        err_text(len(json!(42))),
        "dispatcher error for ref 'expr.len': len: unsupported type Number(42)"
    );
    assert_eq!(
        err_text(len(json!(null))),
        "dispatcher error for ref 'expr.len': len: unsupported type Null"
    );
    assert_eq!(
        err_text(len(json!(true))),
        "dispatcher error for ref 'expr.len': len: unsupported type Bool(true)"
    );
}

#[test]
fn membership() {
    let inn = |n: Value, h: Value| ev0(json!({"op": "in", "needle": lit(n), "haystack": lit(h)}));
    assert_eq!(inn(json!(1), json!([0, 1])).unwrap(), json!(true));
    assert_eq!(inn(json!(1), json!([1.0])).unwrap(), json!(false));
    assert_eq!(
        inn(json!({"a": [1]}), json!([{"a": [1]}])).unwrap(),
        json!(true)
    );
    assert_eq!(inn(json!(null), json!([])).unwrap(), json!(false));
    assert_eq!(
        err_text(inn(json!(1), json!({"a": 1}))),
        "dispatcher error for ref 'expr.in': in: haystack must be array, got Object {\"a\": Number(1)}"
    );
    assert_eq!(
        err_text(inn(json!("a"), json!("abc"))),
        "dispatcher error for ref 'expr.in': in: haystack must be array, got String(\"abc\")"
    );
    // needle evaluated first
    let e = json!({"op": "in", "needle": p("$.x"), "haystack": lit(json!(5))});
    assert_eq!(err_text(ev0(e)), "path not found: $.x");
}

#[test]
fn expressions_never_modify_ctx() {
    let ctx = json!({"a": 1});
    let before = ctx.clone();
    let _ = ev(bin("add", json!(1), json!(2)), &ctx);
    let _ = ev(p("$.a"), &ctx);
    assert_eq!(ctx, before);
}
