//! §9.2 contract through the engine: result shapes, marshalling, globals, bridges,
//! spec resolution and error texts.

#[path = "lua_common.rs"]
mod common;

use common::{assert_eval_error, Got, Harness};
use mse_workers::lua::{HostBridge, LuaScript};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

// ---------------------------------------------------------------- result table

#[tokio::test]
async fn result_table_rows() {
    let h = Harness::single();
    let rows: &[(&str, Got)] = &[
        (
            "return {value={1}, ok=false, extra=1}",
            Got::Blocked(json!([1])),
        ),
        ("return {ok=false}", Got::Blocked(json!({"ok": false}))),
        (
            "return {value=nil, ok=true}",
            Got::Pass(json!({"ok": true})),
        ),
        ("return {ok=\"no\", value=3}", Got::Pass(json!(3))),
        ("return {}", Got::Pass(json!({}))),
        ("return {1,2}", Got::Pass(json!([1, 2]))),
        ("return \"x\"", Got::Pass(json!("x"))),
        ("local x = 1", Got::Pass(Value::Null)),
        ("return nil", Got::Pass(Value::Null)),
    ];
    for (src, want) in rows {
        assert_eq!(&h.inline(src, "").await, want, "script: {src}");
    }
}

#[tokio::test]
async fn envelope_edge_cases() {
    let h = Harness::single();
    // a present JSON null `value` is the value
    assert_eq!(
        h.inline("return {value=_CTX.n, ok=true}", r#"{"n":null}"#)
            .await,
        Got::Pass(Value::Null)
    );
    // `ok` alone that is not a boolean: ok=true, value = the whole object
    assert_eq!(
        h.inline("return {ok=1}", "").await,
        Got::Pass(json!({"ok": 1}))
    );
    // only the first return value counts
    assert_eq!(h.inline("return 1, 2", "").await, Got::Pass(json!(1)));
    // an array is never an envelope
    assert_eq!(
        h.inline("return {{ok=false}}", "").await,
        Got::Pass(json!([{"ok": false}]))
    );
}

// ---------------------------------------------------------------- marshalling

#[tokio::test]
async fn json_round_trips_unchanged() {
    let h = Harness::single();
    let docs = [
        json!({"a": null, "b": [], "c": {}, "d": [1, 2.5, "x", null, true, false],
               "e": {"f": [[]], "g": [{}]}, "u": "héllo ✓ 日本 🎉", "i": 9007199254740993_i64,
               "f": 1.0, "neg": -3, "negf": -0.5, "big": 1e300, "min": i64::MIN}),
        json!([null, null]),
        json!([[], {}, [null]]),
        json!("just a string"),
        json!(42),
        json!(4.25),
        json!(true),
        json!([]),
        json!({}),
    ];
    for doc in docs {
        let directive = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            h.pass("return _CTX", &directive).await,
            doc,
            "directive {directive}"
        );
    }
}

#[tokio::test]
async fn null_sentinel_is_not_nil() {
    let h = Harness::single();
    let src = r#"
        return {
            eq_nil = (_CTX.a == nil), ty = type(_CTX.a), same = (_CTX.a == _CTX.b[1]),
            absent = (_CTX.zzz == nil), len = #_CTX.b,
        }"#;
    assert_eq!(
        h.pass(src, r#"{"a":null,"b":[null,1]}"#).await,
        json!({"eq_nil": false, "ty": "userdata", "same": true, "absent": true, "len": 2})
    );
    // top-level null directive: _CTX is the sentinel, returned as null
    assert_eq!(
        h.pass("assert(_CTX ~= nil) return _CTX", "null").await,
        Value::Null
    );
    // nested sentinel round-trips inside a script-built table
    assert_eq!(
        h.pass("return {x = _CTX[1]}", "[null]").await,
        json!({"x": null})
    );
}

#[tokio::test]
async fn integers_and_floats_are_preserved() {
    let h = Harness::single();
    assert_eq!(
        h.pass(
            "return {1, 1.0, 2^53, 3//2, 3/2, -0.0, math.maxinteger}",
            ""
        )
        .await,
        json!([1, 1.0, 9007199254740992.0, 1, 1.5, -0.0, i64::MAX])
    );
    let types = "return {math.type(_CTX.i), math.type(_CTX.f), math.type(_CTX.u)}";
    assert_eq!(
        h.pass(types, r#"{"i":3,"f":3.0,"u":18446744073709551615}"#)
            .await,
        json!(["integer", "float", "float"])
    );
    assert_eq!(
        h.pass("return {0/0, math.huge, -math.huge, 1.5}", "").await,
        json!([null, null, null, 1.5])
    );
}

#[tokio::test]
async fn tables_to_arrays_and_objects() {
    let h = Harness::single();
    // holes become null, non-sequence keys are dropped from arrays
    assert_eq!(h.pass("return {1, nil, 3}", "").await, json!([1, null, 3]));
    assert_eq!(
        h.pass("local t = {1, 2} t.x = 'dropped' return t", "")
            .await,
        json!([1, 2])
    );
    // the array mark keeps an emptied array an array, and table.insert keeps working
    assert_eq!(
        h.pass("local t = _CTX table.remove(t) return t", "[1]")
            .await,
        json!([])
    );
    assert_eq!(
        h.pass("table.insert(_CTX, 'x') return _CTX", "[]").await,
        json!(["x"])
    );
    assert_eq!(
        h.pass("return getmetatable(_CTX)", "[]").await,
        json!("array")
    );
    // nested objects, unicode keys
    assert_eq!(
        h.pass("return {['ключ'] = {deep = {deeper = {'✓'}}}}", "")
            .await,
        json!({"ключ": {"deep": {"deeper": ["✓"]}}})
    );
    // the same table twice (not a cycle) is fine
    assert_eq!(
        h.pass("local t = {1} return {t, t}", "").await,
        json!([[1], [1]])
    );
}

#[tokio::test]
async fn unconvertible_returns_are_json_errors() {
    let h = Harness::single();
    let cases = [
        (
            "return {[true] = 1}",
            "table key must be a string, got boolean",
        ),
        (
            "return {[1.5] = 1}",
            "table key must be a string, got number (1.5)",
        ),
        ("return {x = print}", "$.x: cannot convert a Lua function"),
        (
            "return coroutine.create(function() end)",
            "cannot convert a Lua thread",
        ),
        (
            "return {1, {f = string.len}}",
            "$[1].f: cannot convert a Lua function",
        ),
        ("return '\\xff'", "string is not valid UTF-8"),
        ("local t = {} t.t = t return t", "cycle"),
    ];
    for (src, needle) in cases {
        let text = h.fail(src).await;
        assert!(
            text.starts_with("worker fn returned error: lua → json [inline:a]: "),
            "{src}: {text}"
        );
        assert!(text.contains(needle), "{src}: {text:?} lacks {needle:?}");
    }
    // the pool keeps working afterwards
    assert_eq!(h.pass("return 1", "").await, json!(1));
}

// ---------------------------------------------------------------- globals

#[tokio::test]
async fn globals_are_set_per_dispatch() {
    let h = Harness::single();
    let spawner = h
        .factory
        .build(
            "greeter",
            &json!({"source": r#"
        return {prompt = _PROMPT, agent = _AGENT, task = _TASK_ID, attempt = _ATTEMPT,
                attempt_type = math.type(_ATTEMPT), ctx = _CTX, host = type(host),
                g = (_G == _ENV), name = _CTX and _CTX.name}
    "#}),
        )
        .unwrap();
    let tid = h.start("greeter", r#"{"name":"world"}"#);
    let out = h
        .engine
        .dispatch_attempt(&h.token, &tid, spawner.as_ref())
        .await
        .unwrap();
    let mse_engine::DispatchOutcome::Pass(v) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        v,
        json!({"prompt": "{\"name\":\"world\"}", "agent": "greeter", "task": tid.as_str(),
               "attempt": 1, "attempt_type": "integer", "ctx": {"name": "world"},
               "host": "nil", "g": true, "name": "world"})
    );
    // not JSON: _CTX is nil
    let got = h
        .dispatch_with(spawner.as_ref(), "greeter", "hello there")
        .await;
    let Got::Pass(v) = got else { panic!("{got:?}") };
    assert_eq!(v["prompt"], json!("hello there"));
    assert!(v.get("ctx").is_none() && v.get("name").is_none(), "{v}");
}

// ---------------------------------------------------------------- bridges

fn bridges() -> BTreeMap<String, HostBridge> {
    let mut b: BTreeMap<String, HostBridge> = BTreeMap::new();
    b.insert("echo".into(), Arc::new(|v: Value| Ok(json!({"got": v}))));
    b.insert("fail".into(), Arc::new(|_v: Value| Err("boom".to_string())));
    b.insert(
        "hash".into(),
        Arc::new(|v: Value| {
            let s = v.as_str().ok_or("expected a string")?;
            Ok(Value::String(
                blake3::hash(s.as_bytes()).to_hex().to_string(),
            ))
        }),
    );
    b
}

#[tokio::test]
async fn host_bridges_success_and_errors() {
    let h = Harness::single();
    h.factory.register_script(
        "bridged",
        LuaScript {
            label: "bridged-script".into(),
            source: r#"
            local caught, err = pcall(host.fail, 1)
            local ro = pcall(function() host.echo = nil end)
            return {
                echo = host.echo({x = {1, 2}, n = _CTX, e = {}}),
                missing = host.echo(),
                caught = caught, err = err, ro = ro,
                hash = host.hash("abc"),
            }"#
            .into(),
            bridges: bridges(),
        },
    );
    let got = h.dispatch("b", json!({"fn_id": "bridged"}), "null").await;
    let Got::Pass(v) = got else { panic!("{got:?}") };
    assert_eq!(v["echo"], json!({"got": {"x": [1, 2], "n": null, "e": {}}}));
    assert_eq!(v["missing"], json!({"got": null}));
    assert_eq!(v["caught"], json!(false));
    assert_eq!(v["ro"], json!(false));
    assert_eq!(v["hash"], json!(blake3::hash(b"abc").to_hex().to_string()));
    let err = v["err"].as_str().unwrap();
    assert!(err.contains("host.fail: boom"), "{err}");

    // an uncaught bridge error fails the step with the script's label
    h.factory.register_script(
        "raiser",
        LuaScript {
            label: "raiser-label".into(),
            source: "return host.hash(42)".into(),
            bridges: bridges(),
        },
    );
    let got = h.dispatch("r", json!({"fn_id": "raiser"}), "").await;
    let Got::Failed(text) = got else {
        panic!("{got:?}")
    };
    assert!(
        text.starts_with("worker fn returned error: lua eval [raiser-label]: "),
        "{text}"
    );
    assert!(text.contains("host.hash: expected a string"), "{text}");
    // a function argument cannot cross the bridge
    h.factory.register_script(
        "badarg",
        LuaScript {
            label: "badarg".into(),
            source: "local ok, e = pcall(host.echo, print) return {e = e}".into(),
            bridges: bridges(),
        },
    );
    let got = h.dispatch("x", json!({"fn_id": "badarg"}), "").await;
    let Got::Pass(v) = got else { panic!("{got:?}") };
    assert!(
        v["e"].as_str().unwrap().contains("host.echo: argument"),
        "{v}"
    );
}

// ---------------------------------------------------------------- spec & errors

#[tokio::test]
async fn fn_id_and_inline_specs() {
    let h = Harness::single();
    h.factory.register_script(
        "double",
        LuaScript {
            label: "double".into(),
            source: "return _CTX * 2".into(),
            bridges: BTreeMap::new(),
        },
    );
    assert_eq!(
        h.dispatch("d", json!({"fn_id": "double", "extra": 1}), "21")
            .await,
        Got::Pass(json!(42))
    );
    // fn_id wins over source
    assert_eq!(
        h.dispatch("d", json!({"fn_id": "double", "source": "return 0"}), "2")
            .await,
        Got::Pass(json!(4))
    );
    assert_eq!(
        h.dispatch("d", json!({"source": "return _CTX + 1", "x": true}), "1")
            .await,
        Got::Pass(json!(2))
    );
    // re-registering replaces the script for new builds
    h.factory.register_script(
        "double",
        LuaScript {
            label: "double".into(),
            source: "return _CTX * 3".into(),
            bridges: BTreeMap::new(),
        },
    );
    assert_eq!(
        h.dispatch("d", json!({"fn_id": "double"}), "2").await,
        Got::Pass(json!(6))
    );
}

#[tokio::test]
async fn build_errors() {
    let h = Harness::single();
    let err = |spec: Value| h.factory.build("a", &spec).err().expect("build must fail");
    assert_eq!(err(json!({})), "lua spec: 'fn_id' (string) required");
    assert_eq!(
        err(json!({"fn_id": 3})),
        "lua spec: 'fn_id' (string) required"
    );
    assert_eq!(err(json!("fn_id")), "lua spec: 'fn_id' (string) required");
    assert_eq!(
        err(json!({"fn_id": "nope"})),
        "fn_id 'nope' not registered in factory"
    );
    let e = err(json!({"source": "return {"}));
    assert!(e.starts_with("lua spec: source does not compile: "), "{e}");
    assert!(e.contains("inline:a"), "{e}");
    let e = err(json!({"source": "\x1bLua binary"}));
    assert!(e.starts_with("lua spec: source does not compile: "), "{e}");
}

#[tokio::test]
async fn runtime_errors_carry_label_and_traceback() {
    let h = Harness::single();
    let text = h
        .fail("local function inner() error('kaput') end\ninner()")
        .await;
    assert_eval_error(&text, "inline:a:1: kaput");
    assert!(text.contains("stack traceback"), "{text}");
    let text = h.fail("return nil + 1").await;
    assert_eval_error(&text, "attempt to perform arithmetic");
    // a registered script that does not compile fails at dispatch with a syntax error
    h.factory.register_script(
        "broken",
        LuaScript {
            label: "broken".into(),
            source: "return (".into(),
            bridges: BTreeMap::new(),
        },
    );
    let got = h.dispatch("b", json!({"fn_id": "broken"}), "").await;
    let Got::Failed(text) = got else {
        panic!("{got:?}")
    };
    assert!(
        text.starts_with("worker fn returned error: lua eval [broken]: syntax error"),
        "{text}"
    );
    assert_eq!(h.pass("return 'still fine'", "").await, json!("still fine"));
}

#[test]
fn config_defaults() {
    let cfg = mse_workers::lua::LuaConfig::default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(cfg.pool_size, cores.clamp(1, 8));
    assert_eq!(cfg.time_limit, std::time::Duration::from_secs(5));
    assert_eq!(cfg.memory_limit, 64 * 1024 * 1024);
}
