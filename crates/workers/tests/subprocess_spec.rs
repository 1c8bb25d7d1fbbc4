//! Subprocess workers: spec validation (InvalidSpec details).

use mse_workers::subprocess::{SubprocessConfig, SubprocessFactory};
use serde_json::{json, Value};

fn err(spec: Value) -> String {
    match SubprocessFactory::new(SubprocessConfig::default()).build("a", &spec) {
        Ok(_) => panic!("accepted {spec}"),
        Err(e) => e,
    }
}

fn ok(spec: Value) {
    if let Err(e) = SubprocessFactory::new(SubprocessConfig::default()).build("a", &spec) {
        panic!("rejected {spec}: {e}");
    }
}

#[test]
fn program_required() {
    const E: &str = "shell spec: 'program' (string) required";
    for spec in [
        json!({}),
        json!({"program": 5}),
        json!({"program": null}),
        json!("sh"),
        json!(null),
    ] {
        assert_eq!(err(spec), E);
    }
}

#[test]
fn args_must_be_strings() {
    const E: &str = "shell spec: 'args' must be an array of strings";
    for args in [
        json!("x"),
        json!(1),
        json!({"a": "b"}),
        json!(["ok", 1]),
        json!([null]),
    ] {
        assert_eq!(err(json!({"program": "p", "args": args})), E);
    }
}

#[test]
fn use_stdin_must_be_bool() {
    const E: &str = "shell spec: 'use_stdin' must be a boolean";
    for v in [json!("true"), json!(1), json!([])] {
        assert_eq!(err(json!({"program": "p", "use_stdin": v})), E);
    }
}

#[test]
fn stream_mode_rules() {
    assert_eq!(
        err(json!({"program": "p", "stream_mode": "bogus"})),
        "unknown stream_mode: bogus"
    );
    assert_eq!(
        err(json!({"program": "p", "stream_mode": "NDJSON_LINES"})),
        "unknown stream_mode: NDJSON_LINES"
    );
    for v in [json!(1), json!(true), json!({})] {
        assert_eq!(
            err(json!({"program": "p", "stream_mode": v})),
            "shell spec: 'stream_mode' must be a string or null"
        );
    }
}

#[test]
fn valid_specs_are_accepted() {
    ok(json!({"program": "p"}));
    ok(json!({"program": "p", "args": [], "use_stdin": false, "stream_mode": null}));
    ok(json!({"program": "p", "args": null, "use_stdin": null, "extra": 1}));
    for m in ["ndjson_lines", "sse_events", "length_prefixed"] {
        ok(json!({"program": "/bin/p", "args": ["a", "b"], "use_stdin": true, "stream_mode": m}));
    }
}
