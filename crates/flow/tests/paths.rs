//! Path read/write semantics (`flow-ir.md` §3) through the public helpers.

use mse_flow::{read_path, write_path, FlowError};
use serde_json::{json, Value};

#[test]
fn read_root_forms() {
    let ctx = json!({"a": {"b": 1}});
    assert_eq!(read_path(&ctx, "$").unwrap(), &ctx);
    assert_eq!(read_path(&ctx, "$.").unwrap(), &ctx);
    assert_eq!(read_path(&ctx, "$.a.b").unwrap(), &json!(1));
    assert_eq!(read_path(&ctx, "$a.b").unwrap(), &json!(1));
}

#[test]
fn read_returns_a_reference_into_ctx() {
    let ctx = json!({"a": {"b": [1, 2]}});
    let r = read_path(&ctx, "$.a.b").unwrap();
    assert!(std::ptr::eq(r, &ctx["a"]["b"]));
}

#[test]
fn read_invalid_syntax() {
    let ctx = json!({"a": 1});
    for bad in ["a.b", "", "a", ".a", " $.a"] {
        let e = read_path(&ctx, bad).unwrap_err();
        assert_eq!(
            e,
            FlowError::InvalidPath(format!("path must start with $ or $.: {bad}"))
        );
        assert_eq!(
            e.to_string(),
            format!("invalid path syntax: path must start with $ or $.: {bad}")
        );
    }
}

#[test]
fn read_missing_and_non_objects() {
    let ctx = json!({"arr": [1], "a": 5, "s": "str", "n": null, "o": {}});
    for path in [
        "$.arr.0",
        "$.a.b",
        "$.s.x",
        "$.n.x",
        "$.o.x",
        "$.missing",
        "$.o.",
    ] {
        let e = read_path(&ctx, path).unwrap_err();
        assert_eq!(e, FlowError::PathNotFound(path.to_owned()));
        assert_eq!(e.to_string(), format!("path not found: {path}"));
    }
    // scalar / array roots
    assert!(read_path(&json!([1]), "$.0").is_err());
    assert!(read_path(&json!(null), "$.a").is_err());
}

#[test]
fn read_present_null() {
    let ctx = json!({"n": null});
    assert_eq!(read_path(&ctx, "$.n").unwrap(), &Value::Null);
}

#[test]
fn read_empty_segments_are_keys() {
    let ctx = json!({"a": {"": {"b": 1}, "c": 2}});
    assert_eq!(read_path(&ctx, "$.a..b").unwrap(), &json!(1));
    assert_eq!(read_path(&ctx, "$.a.").unwrap(), &json!({"b": 1}));
    assert!(read_path(&json!({"a": {"b": 1}}), "$.a..b").is_err());
}

fn written(before: Value, path: &str, v: Value) -> Value {
    let mut ctx = before;
    write_path(&mut ctx, path, v).unwrap();
    ctx
}

#[test]
fn write_table_of_spec() {
    assert_eq!(
        written(json!({}), "$.deep.nested.n", json!(1)),
        json!({"deep": {"nested": {"n": 1}}})
    );
    assert_eq!(
        written(json!({"a": 5}), "$.a.b", json!(1)),
        json!({"a": {"b": 1}})
    );
    assert_eq!(
        written(json!({"a": [9]}), "$.a.0", json!(1)),
        json!({"a": {"0": 1}})
    );
    assert_eq!(written(json!([1, 2]), "$.x", json!(1)), json!({"x": 1}));
    assert_eq!(written(json!(null), "$.x", json!(1)), json!({"x": 1}));
    assert_eq!(written(json!("s"), "$.x", json!(1)), json!({"x": 1}));
    assert_eq!(written(json!({"a": 5}), "$", json!(7)), json!(7));
    assert_eq!(
        written(json!({}), "$.a..b", json!(1)),
        json!({"a": {"b": 1}})
    );
}

#[test]
fn write_root_forms_and_overwrite() {
    assert_eq!(written(json!({"a": 1}), "$.", json!([1])), json!([1]));
    assert_eq!(written(json!({"a": 1}), "$..", json!(2)), json!(2));
    assert_eq!(written(json!({"a": 1}), "$a", json!(2)), json!({"a": 2}));
    assert_eq!(
        written(json!({"a": {"b": 1, "c": 2}}), "$.a.b", json!(null)),
        json!({"a": {"b": null, "c": 2}})
    );
    assert_eq!(written(json!({"a": 1}), "$.a.", json!(3)), json!({"a": 3}));
}

#[test]
fn write_keeps_integer_float_distinction() {
    let ctx = written(json!({}), "$.f", json!(1.0));
    assert_eq!(ctx.to_string(), r#"{"f":1.0}"#);
}

#[test]
fn write_invalid_path_leaves_ctx_unchanged() {
    let mut ctx = json!({"a": 1});
    let e = write_path(&mut ctx, "a", json!(2)).unwrap_err();
    assert!(matches!(e, FlowError::InvalidPath(_)));
    assert_eq!(ctx, json!({"a": 1}));
}
