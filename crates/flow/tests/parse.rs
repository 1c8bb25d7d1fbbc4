//! Wire form of the IR (`flow-ir.md` §2): strict parsing and stable serialization.

mod common;

use common::*;
use mse_flow::{Expr, JoinMode, Node};
use serde_json::{json, Value};

fn parse_node(s: &str) -> Result<Node, String> {
    serde_json::from_str::<Node>(s).map_err(|e| e.to_string())
}

fn parse_expr(s: &str) -> Result<Expr, String> {
    serde_json::from_str::<Expr>(s).map_err(|e| e.to_string())
}

const NOOP: &str = r#"{"kind":"seq","children":[]}"#;
const TRUE: &str = r#"{"op":"lit","value":true}"#;

#[test]
fn lit_value_is_required_but_may_be_null() {
    let e = parse_expr(r#"{"op":"lit"}"#).unwrap_err();
    assert!(e.contains("missing field `value`"), "{e}");
    assert_eq!(
        parse_expr(r#"{"op":"lit","value":null}"#).unwrap(),
        Expr::Lit { value: Value::Null }
    );
    // also through from_value
    assert!(serde_json::from_value::<Expr>(json!({"op": "lit"})).is_err());
    assert_eq!(
        serde_json::from_value::<Expr>(json!({"op": "lit", "value": null})).unwrap(),
        Expr::Lit { value: Value::Null }
    );
}

#[test]
fn unknown_field_in_expr_is_rejected() {
    let e = parse_expr(r#"{"op":"path","at":"$","x":1}"#).unwrap_err();
    assert!(e.contains("unknown field `x`"), "{e}");
    assert!(e.contains("expected `at`"), "{e}");
}

#[test]
fn unknown_field_in_node_is_rejected() {
    let e = parse_node(r#"{"kind":"seq","children":[],"extra":true}"#).unwrap_err();
    assert!(e.contains("unknown field `extra`"), "{e}");
    let e = parse_node(&format!(
        r#"{{"kind":"try","body":{NOOP},"catch":{NOOP},"err_at":null,"finally":{NOOP}}}"#
    ))
    .unwrap_err();
    assert!(e.contains("unknown field `finally`"), "{e}");
    // nested unknown field fails the whole document
    let e = parse_node(
        r#"{"kind":"assign","at":{"op":"path","at":"$.a"},"value":{"op":"lit","value":1,"y":2}}"#,
    )
    .unwrap_err();
    assert!(e.contains("unknown field `y`"), "{e}");
}

#[test]
fn missing_fields_are_rejected() {
    let e = parse_node(&format!(
        r#"{{"kind":"branch","cond":{TRUE},"then":{NOOP}}}"#
    ))
    .unwrap_err();
    assert!(e.contains("missing field `else`"), "{e}");
    let e = parse_node(r#"{"kind":"seq"}"#).unwrap_err();
    assert!(e.contains("missing field `children`"), "{e}");
    let e = parse_node(r#"{"kind":"step","ref":"x","in":{"op":"lit","value":1}}"#).unwrap_err();
    assert!(e.contains("missing field `out`"), "{e}");
    let e = parse_expr(r#"{"op":"and"}"#).unwrap_err();
    assert!(e.contains("missing field `operands`"), "{e}");
    let e = parse_expr(r#"{"at":"$"}"#).unwrap_err();
    assert!(e.contains("missing field `op`"), "{e}");
}

#[test]
fn unknown_or_miscased_tags_are_rejected() {
    let e = parse_node(
        r#"{"kind":"Step","ref":"x","in":{"op":"lit","value":1},"out":{"op":"path","at":"$"}}"#,
    )
    .unwrap_err();
    assert!(e.contains("unknown variant `Step`"), "{e}");
    assert!(e.contains("expected one of `step`"), "{e}");
    let e = parse_expr(r#"{"op":"xor","lhs":{"op":"lit","value":1},"rhs":{"op":"lit","value":1}}"#)
        .unwrap_err();
    assert!(e.contains("unknown variant `xor`"), "{e}");
}

fn loop_with_max(max: &str) -> String {
    format!(
        r#"{{"kind":"loop","counter":{{"op":"path","at":"$.i"}},"cond":{TRUE},"body":{NOOP},"max":{max}}}"#
    )
}

#[test]
fn loop_max_must_be_u32() {
    for bad in ["-1", "3.0", "\"3\"", "4294967296", "null"] {
        let e = parse_node(&loop_with_max(bad)).unwrap_err();
        assert!(e.contains("u32") || e.contains("invalid"), "{bad}: {e}");
    }
    for good in ["0", "3", "4294967295"] {
        let n = parse_node(&loop_with_max(good)).unwrap();
        let Node::Loop { max, .. } = n else {
            panic!("not a loop")
        };
        assert_eq!(max.to_string(), good);
    }
}

#[test]
fn join_mode_is_case_sensitive() {
    let fan = |join: &str| {
        format!(
            r#"{{"kind":"fanout","items":{{"op":"lit","value":[]}},"bind":{{"op":"path","at":"$.i"}},"body":{NOOP},"join":"{join}","out":{{"op":"path","at":"$.o"}}}}"#
        )
    };
    let e = parse_node(&fan("All")).unwrap_err();
    assert!(e.contains("unknown variant `All`"), "{e}");
    for (s, mode) in [
        ("all", JoinMode::All),
        ("any", JoinMode::Any),
        ("race", JoinMode::Race),
        ("all_settled", JoinMode::AllSettled),
    ] {
        let Node::Fanout { join, .. } = parse_node(&fan(s)).unwrap() else {
            panic!()
        };
        assert_eq!(join, mode);
    }
}

#[test]
fn err_at_absent_equals_null() {
    let a = parse_node(&format!(r#"{{"kind":"try","body":{NOOP},"catch":{NOOP}}}"#)).unwrap();
    let b = parse_node(&format!(
        r#"{{"kind":"try","body":{NOOP},"catch":{NOOP},"err_at":null}}"#
    ))
    .unwrap();
    assert_eq!(a, b);
    let Node::Try { err_at, .. } = a else {
        panic!()
    };
    assert!(err_at.is_none());
    // serialized with an explicit null
    assert_eq!(
        serde_json::to_string(&b).unwrap(),
        format!(r#"{{"kind":"try","body":{NOOP},"catch":{NOOP},"err_at":null}}"#)
    );
}

#[test]
fn write_targets_accept_any_expr_at_parse_time() {
    let n = parse_node(
        r#"{"kind":"assign","at":{"op":"lit","value":"x"},"value":{"op":"lit","value":1}}"#,
    );
    assert!(n.is_ok());
}

/// One document using every node kind and every expression op.
fn everything() -> Value {
    let two = |op: &str| json!({"op": op, "lhs": lit(json!(1)), "rhs": lit(json!(2.5))});
    json!({"kind": "seq", "children": [
        {"kind": "step", "ref": "s1", "in": p("$.a"), "out": p("$.b")},
        {"kind": "branch", "cond": two("eq"),
         "then": {"kind": "assign", "at": p("$.x"), "value": two("ne")},
         "else": {"kind": "seq", "children": []}},
        {"kind": "loop", "counter": p("$.i"), "cond": {"op": "and", "operands": [two("lt"), two("le")]},
         "body": {"kind": "step", "ref": "s2", "in": lit(json!(null)), "out": p("$.c")}, "max": 3},
        {"kind": "fanout", "items": lit(json!([1, 2])), "bind": p("$.item"),
         "body": {"kind": "step", "ref": "s3", "in": {"op": "or", "operands": [two("gt"), two("ge")]}, "out": p("$.d")},
         "join": "all_settled", "out": p("$.e")},
        {"kind": "try", "body": {"kind": "step", "ref": "s4", "in": {"op": "not", "operand": {"op": "exists", "at": "$.q"}}, "out": p("$.f")},
         "catch": {"kind": "assign", "at": p("$.g"), "value": two("add")}, "err_at": p("$.err")},
        {"kind": "try", "body": {"kind": "seq", "children": []}, "catch": {"kind": "seq", "children": []}, "err_at": null},
        {"kind": "assign", "at": p("$.h"), "value": {"op": "in", "needle": two("sub"),
            "haystack": {"op": "len", "of": two("mul")}}},
        {"kind": "assign", "at": p("$.k"), "value": two("div")}
    ]})
}

#[test]
fn round_trip_is_identical() {
    let src = everything();
    let text = serde_json::to_string(&src).unwrap();
    let n: Node = serde_json::from_str(&text).unwrap();
    let back = serde_json::to_value(&n).unwrap();
    assert_eq!(back, src);
    let n2: Node = serde_json::from_value(back).unwrap();
    assert_eq!(n, n2);
}

#[test]
fn serialization_puts_tag_first_and_fields_in_spec_order() {
    let cases = [
        r#"{"kind":"step","ref":"r","in":{"op":"path","at":"$.a"},"out":{"op":"path","at":"$.b"}}"#,
        r#"{"kind":"branch","cond":{"op":"lit","value":true},"then":{"kind":"seq","children":[]},"else":{"kind":"seq","children":[]}}"#,
        r#"{"kind":"loop","counter":{"op":"path","at":"$.i"},"cond":{"op":"lit","value":null},"body":{"kind":"seq","children":[]},"max":2}"#,
        r#"{"kind":"fanout","items":{"op":"lit","value":[]},"bind":{"op":"path","at":"$.i"},"body":{"kind":"seq","children":[]},"join":"race","out":{"op":"path","at":"$.o"}}"#,
        r#"{"kind":"try","body":{"kind":"seq","children":[]},"catch":{"kind":"seq","children":[]},"err_at":{"op":"path","at":"$.e"}}"#,
        r#"{"kind":"assign","at":{"op":"path","at":"$.a"},"value":{"op":"in","needle":{"op":"lit","value":1},"haystack":{"op":"len","of":{"op":"not","operand":{"op":"exists","at":"$"}}}}}"#,
        r#"{"kind":"assign","at":{"op":"path","at":"$.a"},"value":{"op":"or","operands":[{"op":"div","lhs":{"op":"lit","value":1},"rhs":{"op":"lit","value":2.0}}]}}"#,
    ];
    for c in cases {
        let n: Node = serde_json::from_str(c).unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), c);
    }
}

#[test]
fn lit_value_is_kept_verbatim_including_number_kinds() {
    let e = parse_expr(r#"{"op":"lit","value":{"b":7,"a":7.0,"op":"path","at":"$"}}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"op":"lit","value":{"a":7.0,"at":"$","b":7,"op":"path"}}"#
    );
}

#[test]
fn floats_round_trip_exactly() {
    // Needs serde_json's `float_roundtrip` (the default parser may be off by an ulp).
    let text = r#"{"op":"lit","value":[-503005.2304829326,0.1,1e+21,5e-324,8.0]}"#;
    let e: Expr = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_string(&e).unwrap(), text);
}

#[test]
fn object_keys_are_sorted_no_preserve_order() {
    // Guards against serde_json's preserve_order being enabled by feature unification.
    let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    assert_eq!(v.to_string(), r#"{"a":2,"b":1}"#);
}

#[test]
fn step_refs_in_pre_order() {
    let n = node(everything());
    assert_eq!(n.step_refs(), vec!["s1", "s2", "s3", "s4"]);
    let n = node(json!({"kind": "try",
        "body": {"kind": "branch", "cond": lit(json!(true)),
                 "then": step("a", lit(json!(1)), "$.x"),
                 "else": seq(vec![step("b", lit(json!(1)), "$.x"), step("c", lit(json!(1)), "$.x")])},
        "catch": {"kind": "fanout", "items": lit(json!([])), "bind": p("$.i"), "join": "all", "out": p("$.o"),
                  "body": {"kind": "loop", "counter": p("$.n"), "cond": lit(json!(true)), "max": 1,
                           "body": step("d", lit(json!(1)), "$.x")}}}));
    assert_eq!(n.step_refs(), vec!["a", "b", "c", "d"]);
}
