//! Typed Blueprint parsing: blueprint.md §2–§5 and the parsing rows of §13.

use std::collections::BTreeMap;

use mse_blueprint::schema::{
    AgentDef, AgentKind, AgentMeta, AgentProfile, Blueprint, BlueprintMetadata, BlueprintOrigin,
    CompilerHints, CompilerStrategy, OperatorDef, OperatorKind, SchemaError, SpawnerHints,
    DEFAULT_SCHEMA_VERSION,
};
use serde_json::{json, Value};

const VECTOR_1: &str = r#"{"id":"hello","flow":{"kind":"seq","children":[]}}"#;
const VECTOR_2: &str = r#"{"id":"hello","flow":{"kind":"step","ref":"greeter","in":{"op":"lit","value":{"name":"world"}},"out":{"op":"path","at":"$.greeting"}},"agents":[{"name":"greeter","kind":"rust_fn","spec":{"fn_id":"identity"}}]}"#;

fn parse(v: Value) -> Result<Blueprint, SchemaError> {
    let from_value = Blueprint::from_value(v.clone());
    let from_json = Blueprint::from_json(v.to_string().as_bytes());
    match (&from_value, &from_json) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("from_value and from_json disagree on {v}: {from_value:?} / {from_json:?}"),
    }
    from_value
}

fn ok(v: Value) -> Blueprint {
    parse(v.clone()).unwrap_or_else(|e| panic!("expected {v} to parse, got: {e}"))
}

fn err(v: Value) -> String {
    match parse(v.clone()) {
        Ok(bp) => panic!("expected {v} to be rejected, parsed as {bp:?}"),
        Err(e) => e.to_string(),
    }
}

fn seq() -> Value {
    json!({"kind": "seq", "children": []})
}

/// A minimal document with `extra` merged in at the top level.
fn doc(extra: Value) -> Value {
    let mut base = json!({"id": "bp", "flow": seq()});
    for (k, v) in extra.as_object().expect("object").clone() {
        base[k] = v;
    }
    base
}

/// A document setting every field to a non-default value.
fn full() -> Value {
    json!({
        "schema_version": "1.2.3",
        "id": "full",
        "flow": {"kind": "step", "ref": "a", "in": {"op": "lit", "value": {"z": 1, "a": [1.5, null]}},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [
            {"name": "a", "kind": "operator", "spec": {"operator_ref": "main-ai"},
             "profile": {"system_prompt": "hi {{ directive }}", "model": "sonnet", "effort": "high",
                         "tools": ["Read", "mcp__tracker__get_issue"], "description": "d",
                         "extras": {"permissionMode": "plan"}, "version_hash": "ab"},
             "meta": {"description": "m", "version": "1", "tags": ["t1", "t2"]}},
            {"name": "b", "kind": "lua", "spec": "return 1", "profile": null, "meta": null},
            {"name": "c", "kind": "agent_block"},
            {"name": "d", "kind": "subprocess", "spec": {"program": "/bin/echo", "args": ["x"]}},
            {"name": "e", "kind": "rust_fn", "spec": [1, 2, 3]}
        ],
        "operators": [
            {"name": "main-ai", "display_name": "Main", "kind": "main_ai", "spec": {"k": true},
             "profile": {"system_prompt": "p"}, "meta": {"tags": ["x"]}},
            {"name": "r2", "kind": "composite"},
            {"name": "r3", "kind": "automate"}
        ],
        "hints": {"per_agent": {"b": {"x": 1}, "a": 2}, "global": [true]},
        "strategy": {"strict_refs": false, "strict_kind": false},
        "metadata": {"description": "desc", "origin": {"kind": "file", "path": "bp.yaml"},
                     "tags": ["t"], "version_label": "1.0.0", "project_name_alias": "proj",
                     "default_run_ttl_secs": 60},
        "spawner_hints": {"layers": ["main_ai", "senior_escalation", "main_ai"]},
        "default_agent_kind": "subprocess",
        "default_operator_kind": "composite"
    })
}

fn assert_names(e: &str, needle: &str) {
    assert!(
        e.contains(needle),
        "error {e:?} does not contain {needle:?}"
    );
}

// ---------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------

#[test]
fn minimal_document_gets_every_default() {
    let bp = Blueprint::from_json(VECTOR_1.as_bytes()).unwrap();
    assert_eq!(bp.schema_version, DEFAULT_SCHEMA_VERSION);
    assert_eq!(bp.schema_version, "0.1.0");
    assert_eq!(bp.id, "hello");
    assert_eq!(
        serde_json::to_value(&bp.flow).unwrap(),
        json!({"kind": "seq", "children": []})
    );
    assert!(bp.agents.is_empty());
    assert!(bp.operators.is_empty());
    assert_eq!(
        bp.hints,
        CompilerHints {
            per_agent: BTreeMap::new(),
            global: Value::Null
        }
    );
    assert_eq!(
        bp.strategy,
        CompilerStrategy {
            strict_refs: true,
            strict_kind: true
        }
    );
    assert_eq!(bp.strategy, CompilerStrategy::default());
    assert_eq!(
        bp.metadata,
        BlueprintMetadata {
            description: None,
            origin: BlueprintOrigin::Inline,
            tags: vec![],
            version_label: None,
            project_name_alias: None,
            default_run_ttl_secs: None,
        }
    );
    assert_eq!(bp.spawner_hints, SpawnerHints { layers: vec![] });
    assert_eq!(bp.default_agent_kind, AgentKind::Operator);
    assert_eq!(bp.default_operator_kind, None);
}

#[test]
fn minimal_document_serializes_in_declaration_order_with_defaults() {
    let bp = Blueprint::from_json(VECTOR_1.as_bytes()).unwrap();
    assert_eq!(
        serde_json::to_string(&bp).unwrap(),
        concat!(
            r#"{"schema_version":"0.1.0","id":"hello","flow":{"kind":"seq","children":[]},"#,
            r#""agents":[],"operators":[],"hints":{"per_agent":{},"global":null},"#,
            r#""strategy":{"strict_refs":true,"strict_kind":true},"#,
            r#""metadata":{"description":null,"origin":{"kind":"inline"},"tags":[]},"#,
            r#""spawner_hints":{"layers":[]},"default_agent_kind":"operator"}"#
        )
    );
}

#[test]
fn vector_two_agent_defaults_and_serialization() {
    let bp = Blueprint::from_json(VECTOR_2.as_bytes()).unwrap();
    assert_eq!(
        bp.agents,
        vec![AgentDef {
            name: "greeter".into(),
            kind: AgentKind::RustFn,
            spec: json!({"fn_id": "identity"}),
            profile: None,
            meta: None,
        }]
    );
    assert_eq!(
        serde_json::to_string(&bp.agents[0]).unwrap(),
        r#"{"name":"greeter","kind":"rust_fn","spec":{"fn_id":"identity"},"profile":null,"meta":null}"#
    );
    assert_eq!(bp.agent("greeter").unwrap().kind, AgentKind::RustFn);
    assert!(bp.agent("nobody").is_none());
}

#[test]
fn nested_defaults() {
    let bp = ok(doc(json!({
        "agents": [{"name": "a", "kind": "operator", "profile": {}, "meta": {}}],
        "operators": [{"name": "r"}],
        "metadata": {},
        "hints": {},
        "spawner_hints": {}
    })));
    let a = &bp.agents[0];
    assert_eq!(a.spec, Value::Null);
    assert_eq!(a.profile, Some(AgentProfile::default()));
    let p = a.profile.as_ref().unwrap();
    assert_eq!(p.system_prompt, "");
    assert_eq!(
        (p.model.as_ref(), p.effort.as_ref(), p.description.as_ref()),
        (None, None, None)
    );
    assert!(p.tools.is_empty());
    assert_eq!(p.extras, Value::Null);
    assert_eq!(p.version_hash, None);
    assert_eq!(
        a.meta,
        Some(AgentMeta {
            description: None,
            version: None,
            tags: vec![]
        })
    );
    assert_eq!(
        bp.operators[0],
        OperatorDef {
            name: "r".into(),
            display_name: None,
            kind: None,
            spec: Value::Null,
            profile: None,
            meta: None
        }
    );
    assert_eq!(bp.operator("r").unwrap().name, "r");
    assert_eq!(bp.metadata, BlueprintMetadata::default());
    assert_eq!(bp.hints, CompilerHints::default());
    assert_eq!(bp.spawner_hints, SpawnerHints::default());
    // Profile fields serialize in spec order, Options as null.
    assert_eq!(
        serde_json::to_string(p).unwrap(),
        r#"{"system_prompt":"","model":null,"effort":null,"tools":[],"description":null,"extras":null,"version_hash":null}"#
    );
    assert_eq!(
        serde_json::to_string(&bp.operators[0]).unwrap(),
        r#"{"name":"r","display_name":null,"kind":null,"spec":null,"profile":null,"meta":null}"#
    );
    assert_eq!(
        serde_json::to_string(a.meta.as_ref().unwrap()).unwrap(),
        r#"{"description":null,"version":null,"tags":[]}"#
    );
}

#[test]
fn full_document_parses_every_field() {
    let bp = ok(full());
    assert_eq!(bp.schema_version, "1.2.3");
    assert_eq!(bp.agents.len(), 5);
    assert_eq!(
        bp.agents.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![
            AgentKind::Operator,
            AgentKind::Lua,
            AgentKind::AgentBlock,
            AgentKind::Subprocess,
            AgentKind::RustFn
        ]
    );
    let p = bp.agents[0].profile.as_ref().unwrap();
    assert_eq!(p.system_prompt, "hi {{ directive }}");
    assert_eq!(p.model.as_deref(), Some("sonnet"));
    assert_eq!(p.effort.as_deref(), Some("high"));
    assert_eq!(p.tools, vec!["Read", "mcp__tracker__get_issue"]);
    assert_eq!(p.description.as_deref(), Some("d"));
    assert_eq!(p.extras, json!({"permissionMode": "plan"}));
    assert_eq!(p.version_hash.as_deref(), Some("ab"));
    assert_eq!(bp.agents[1].spec, json!("return 1"));
    assert_eq!(bp.agents[4].spec, json!([1, 2, 3]));
    assert_eq!(
        bp.operators.iter().map(|o| o.kind).collect::<Vec<_>>(),
        vec![
            Some(OperatorKind::MainAi),
            Some(OperatorKind::Composite),
            Some(OperatorKind::Automate)
        ]
    );
    assert_eq!(bp.operators[0].display_name.as_deref(), Some("Main"));
    assert_eq!(
        bp.hints.per_agent.keys().collect::<Vec<_>>(),
        vec!["a", "b"],
        "per_agent is sorted"
    );
    assert_eq!(bp.hints.global, json!([true]));
    assert!(!bp.strategy.strict_refs && !bp.strategy.strict_kind);
    assert_eq!(
        bp.metadata.origin,
        BlueprintOrigin::File {
            path: "bp.yaml".into()
        }
    );
    assert_eq!(bp.metadata.version_label.as_deref(), Some("1.0.0"));
    assert_eq!(bp.metadata.project_name_alias.as_deref(), Some("proj"));
    assert_eq!(bp.metadata.default_run_ttl_secs, Some(60));
    assert_eq!(
        bp.spawner_hints.layers,
        vec!["main_ai", "senior_escalation", "main_ai"]
    );
    assert_eq!(bp.default_agent_kind, AgentKind::Subprocess);
    assert_eq!(bp.default_operator_kind, Some(OperatorKind::Composite));
}

// ---------------------------------------------------------------------------
// Round trip and omission rules
// ---------------------------------------------------------------------------

#[test]
fn round_trip_serialize_then_parse_is_identity() {
    for v in [
        serde_json::from_str(VECTOR_1).unwrap(),
        serde_json::from_str(VECTOR_2).unwrap(),
        full(),
        doc(json!({"metadata": {"origin": {"kind": "algo", "session_id": "S-1"}}})),
    ] {
        let bp = ok(v);
        let bytes = serde_json::to_vec(&bp).unwrap();
        assert_eq!(Blueprint::from_json(&bytes).unwrap(), bp);
        assert_eq!(Blueprint::from_value(bp.to_value()).unwrap(), bp);
        let pretty = serde_json::to_vec_pretty(&bp).unwrap();
        assert_eq!(Blueprint::from_json(&pretty).unwrap(), bp);
        // Serializing the re-parsed value is byte-identical.
        let again = serde_json::to_vec(&Blueprint::from_json(&bytes).unwrap()).unwrap();
        assert_eq!(again, bytes);
    }
}

#[test]
fn full_document_serializes_in_declaration_order() {
    let bp = ok(full());
    let text = serde_json::to_string(&bp).unwrap();
    let order = [
        "\"schema_version\"",
        "\"id\"",
        "\"flow\"",
        "\"agents\"",
        "\"operators\"",
        "\"hints\"",
        "\"strategy\"",
        "\"metadata\"",
        "\"spawner_hints\"",
        "\"default_agent_kind\"",
        "\"default_operator_kind\"",
    ];
    let top = bp.to_value();
    assert_eq!(top.as_object().unwrap().len(), order.len());
    let mut last = 0;
    for key in order {
        // Each top-level key first appears after the previous one.
        let pos = text.find(&format!("{key}:")).unwrap();
        assert!(pos >= last, "{key} out of order in {text}");
        last = pos;
    }
    let meta = serde_json::to_string(&bp.metadata).unwrap();
    assert_eq!(
        meta,
        r#"{"description":"desc","origin":{"kind":"file","path":"bp.yaml"},"tags":["t"],"version_label":"1.0.0","project_name_alias":"proj","default_run_ttl_secs":60}"#
    );
    assert_eq!(
        serde_json::to_string(&bp.strategy).unwrap(),
        r#"{"strict_refs":false,"strict_kind":false}"#
    );
    assert_eq!(
        serde_json::to_string(&bp.hints).unwrap(),
        r#"{"per_agent":{"a":2,"b":{"x":1}},"global":[true]}"#
    );
}

#[test]
fn the_four_omitted_options_are_omitted_when_none_others_emit_null() {
    let bp = ok(doc(json!({
        "default_operator_kind": null,
        "metadata": {"version_label": null, "project_name_alias": null,
                     "default_run_ttl_secs": null, "description": null}
    })));
    let v = bp.to_value();
    let top = v.as_object().unwrap();
    assert!(!top.contains_key("default_operator_kind"));
    let meta = v["metadata"].as_object().unwrap();
    assert!(!meta.contains_key("version_label"));
    assert!(!meta.contains_key("project_name_alias"));
    assert!(!meta.contains_key("default_run_ttl_secs"));
    assert_eq!(meta.get("description"), Some(&Value::Null));

    let mut bp2 = bp.clone();
    bp2.default_operator_kind = Some(OperatorKind::Automate);
    bp2.metadata.version_label = Some("1.0.0".into());
    bp2.metadata.project_name_alias = Some("p".into());
    bp2.metadata.default_run_ttl_secs = Some(0);
    let v2 = bp2.to_value();
    assert_eq!(v2["default_operator_kind"], json!("automate"));
    assert_eq!(v2["metadata"]["version_label"], json!("1.0.0"));
    assert_eq!(v2["metadata"]["project_name_alias"], json!("p"));
    assert_eq!(v2["metadata"]["default_run_ttl_secs"], json!(0));
}

// ---------------------------------------------------------------------------
// Unknown keys (§2, §13)
// ---------------------------------------------------------------------------

#[test]
fn unknown_top_level_key_is_named_with_expected_set() {
    let e = err(doc(json!({"extra": 1})));
    assert_names(&e, "unknown field `extra`");
    assert_names(
        &e,
        "expected one of `schema_version`, `id`, `flow`, `agents`, `operators`, `hints`, \
         `strategy`, `metadata`, `spawner_hints`, `default_agent_kind`, `default_operator_kind`",
    );
}

#[test]
fn unknown_keys_rejected_at_every_level() {
    // (document, expected-set fragment); the unknown key is always `bogus`.
    let cases: Vec<(Value, &str)> = vec![
        (
            doc(json!({"agents": [{"name": "a", "kind": "lua", "bogus": 1}]})),
            "expected one of `name`, `kind`, `spec`, `profile`, `meta`",
        ),
        (
            doc(json!({"agents": [{"name": "a", "kind": "lua", "profile": {"bogus": 1}}]})),
            "`system_prompt`",
        ),
        (
            doc(json!({"agents": [{"name": "a", "kind": "lua", "meta": {"bogus": 1}}]})),
            "expected one of `description`, `version`, `tags`",
        ),
        (
            doc(json!({"operators": [{"name": "r", "bogus": 1}]})),
            "expected one of `name`, `display_name`, `kind`, `spec`, `profile`, `meta`",
        ),
        (
            doc(
                json!({"operators": [{"name": "r", "profile": {"system_prompt": "", "bogus": 1}}]}),
            ),
            "`version_hash`",
        ),
        (
            doc(json!({"operators": [{"name": "r", "meta": {"tags": [], "bogus": 1}}]})),
            "`tags`",
        ),
        (
            doc(json!({"hints": {"per_agent": {}, "bogus": 1}})),
            "expected `per_agent` or `global`",
        ),
        (
            doc(json!({"strategy": {"strict_refs": false, "bogus": 1}})),
            "expected `strict_refs` or `strict_kind`",
        ),
        (
            doc(json!({"metadata": {"bogus": 1}})),
            "`default_run_ttl_secs`",
        ),
        (
            doc(json!({"spawner_hints": {"layers": [], "bogus": 1}})),
            "expected `layers`",
        ),
        // The flow is parsed strictly by mse-flow.
        (
            doc(json!({"flow": {"kind": "seq", "children": [], "bogus": 1}})),
            "`children`",
        ),
    ];
    for (v, expected) in cases {
        let e = err(v);
        assert_names(&e, "unknown field `bogus`");
        assert_names(&e, expected);
    }
    assert_names(
        &err(doc(json!({"strategy": {"strict_ref": false}}))),
        "unknown field `strict_ref`, expected `strict_refs` or `strict_kind`",
    );
}

#[test]
fn misspelt_profile_key_named() {
    let e = err(doc(json!({
        "agents": [{"name": "a", "kind": "operator", "profile": {"system_promt": "x"}}]
    })));
    assert_names(&e, "unknown field `system_promt`");
    assert_names(
        &e,
        "expected one of `system_prompt`, `model`, `effort`, `tools`, `description`, `extras`, `version_hash`",
    );
}

#[test]
fn duplicate_keys_rejected() {
    let e = Blueprint::from_json(br#"{"id":"a","id":"b","flow":{"kind":"seq","children":[]}}"#)
        .unwrap_err();
    assert_names(&e.to_string(), "duplicate field `id`");
}

// ---------------------------------------------------------------------------
// Null handling (§2, §13)
// ---------------------------------------------------------------------------

#[test]
fn explicit_null_rejected_for_non_optional_defaulted_fields() {
    let cases = vec![
        doc(json!({"agents": null})),
        doc(json!({"operators": null})),
        doc(json!({"hints": null})),
        doc(json!({"strategy": null})),
        doc(json!({"metadata": null})),
        doc(json!({"spawner_hints": null})),
        doc(json!({"default_agent_kind": null})),
        doc(json!({"schema_version": null})),
        doc(json!({"hints": {"per_agent": null}})),
        doc(json!({"strategy": {"strict_refs": null}})),
        doc(json!({"strategy": {"strict_kind": null}})),
        doc(json!({"metadata": {"origin": null}})),
        doc(json!({"metadata": {"tags": null}})),
        doc(json!({"spawner_hints": {"layers": null}})),
        doc(json!({"agents": [{"name": "a", "kind": "lua", "profile": {"tools": null}}]})),
        doc(json!({"agents": [{"name": "a", "kind": "lua", "profile": {"system_prompt": null}}]})),
        doc(json!({"agents": [{"name": "a", "kind": "lua", "meta": {"tags": null}}]})),
        doc(json!({"operators": [{"name": "r", "meta": {"tags": null}}]})),
        // Required fields are not nullable either.
        doc(json!({"id": null})),
        doc(json!({"flow": null})),
        doc(json!({"agents": [{"name": null, "kind": "lua"}]})),
        doc(json!({"agents": [{"name": "a", "kind": null}]})),
        doc(json!({"operators": [{"name": null}]})),
    ];
    for v in cases {
        let e = err(v.clone());
        assert_names(&e, "null");
    }
}

#[test]
fn agents_null_and_metadata_null_are_parse_errors() {
    assert_names(&err(doc(json!({"agents": null}))), "invalid type: null");
    assert_names(&err(doc(json!({"metadata": null}))), "invalid type: null");
}

#[test]
fn null_equals_absent_for_option_fields() {
    let with_nulls = doc(json!({
        "default_operator_kind": null,
        "agents": [{"name": "a", "kind": "operator", "profile": null, "meta": null},
                   {"name": "b", "kind": "lua",
                    "profile": {"model": null, "effort": null, "description": null, "version_hash": null},
                    "meta": {"description": null, "version": null}}],
        "operators": [{"name": "r", "display_name": null, "kind": null, "profile": null, "meta": null}],
        "metadata": {"description": null, "version_label": null, "project_name_alias": null,
                     "default_run_ttl_secs": null}
    }));
    let without = doc(json!({
        "agents": [{"name": "a", "kind": "operator"},
                   {"name": "b", "kind": "lua", "profile": {}, "meta": {}}],
        "operators": [{"name": "r"}],
        "metadata": {}
    }));
    assert_eq!(ok(with_nulls), ok(without));
}

#[test]
fn free_form_fields_accept_anything_and_default_to_null() {
    for any in [
        json!(null),
        json!(true),
        json!(0),
        json!(-1.5),
        json!("s"),
        json!([1, "two", null]),
        json!({"nested": {"deep": [{}]}}),
    ] {
        let bp = ok(doc(json!({
            "agents": [{"name": "a", "kind": "rust_fn", "spec": any.clone(),
                        "profile": {"extras": any.clone()}}],
            "operators": [{"name": "r", "spec": any.clone()}],
            "hints": {"global": any.clone(), "per_agent": {"a": any.clone()}}
        })));
        assert_eq!(bp.agents[0].spec, any);
        assert_eq!(bp.agents[0].profile.as_ref().unwrap().extras, any);
        assert_eq!(bp.operators[0].spec, any);
        assert_eq!(bp.hints.global, any);
        assert_eq!(bp.hints.per_agent["a"], any);
    }
}

// ---------------------------------------------------------------------------
// Origin (§4.8)
// ---------------------------------------------------------------------------

#[test]
fn origin_variants_and_extra_keys_ignored() {
    let origin = |o: Value| ok(doc(json!({"metadata": {"origin": o}}))).metadata.origin;
    assert_eq!(origin(json!({"kind": "inline"})), BlueprintOrigin::Inline);
    assert_eq!(
        origin(json!({"kind": "inline", "x": 1})),
        BlueprintOrigin::Inline
    );
    assert_eq!(
        origin(json!({"kind": "file", "path": "a/b.yaml", "mtime": 5})),
        BlueprintOrigin::File {
            path: "a/b.yaml".into()
        }
    );
    assert_eq!(
        origin(json!({"session_id": "S-9", "kind": "algo", "extra": {"y": []}})),
        BlueprintOrigin::Algo {
            session_id: "S-9".into()
        }
    );
    // Extra keys are dropped on output.
    let bp = ok(doc(
        json!({"metadata": {"origin": {"kind": "inline", "x": 1}}}),
    ));
    assert_eq!(
        bp.to_value()["metadata"]["origin"],
        json!({"kind": "inline"})
    );
    assert_eq!(
        serde_json::to_string(&BlueprintOrigin::Algo {
            session_id: "S".into()
        })
        .unwrap(),
        r#"{"kind":"algo","session_id":"S"}"#
    );
}

#[test]
fn origin_errors() {
    assert_names(
        &err(doc(json!({"metadata": {"origin": {"kind": "file"}}}))),
        "missing field `path`",
    );
    assert_names(
        &err(doc(json!({"metadata": {"origin": {"kind": "algo"}}}))),
        "missing field `session_id`",
    );
    assert_names(
        &err(doc(json!({"metadata": {"origin": {"kind": "Inline"}}}))),
        "unknown variant `Inline`",
    );
    assert_names(
        &err(doc(json!({"metadata": {"origin": {"path": "x"}}}))),
        "missing field `kind`",
    );
}

// ---------------------------------------------------------------------------
// schema_version (§3)
// ---------------------------------------------------------------------------

#[test]
fn schema_version_must_be_semver() {
    let e = err(doc(json!({"schema_version": "0.1"})));
    assert_names(&e, "\"0.1\"");
    assert_names(&e, "schema_version");
    for bad in ["", "1", "v1.0.0", "1.0.0.0", "01.0.0", " 1.0.0", "latest"] {
        let e = err(doc(json!({ "schema_version": bad })));
        assert_names(&e, &format!("{bad:?}"));
    }
    assert_names(&err(doc(json!({"schema_version": 1}))), "invalid type");
    for good in [
        "9.9.9-beta+b",
        "0.1.0",
        "0.2.0",
        "10.20.30-rc.1",
        "1.0.0+build.5",
    ] {
        let bp = ok(doc(json!({ "schema_version": good })));
        assert_eq!(bp.schema_version, good, "kept verbatim");
        assert_eq!(bp.to_value()["schema_version"], json!(good));
    }
}

// ---------------------------------------------------------------------------
// Enumerations (§5)
// ---------------------------------------------------------------------------

#[test]
fn agent_kind_wire_values() {
    for (wire, kind) in [
        ("lua", AgentKind::Lua),
        ("rust_fn", AgentKind::RustFn),
        ("agent_block", AgentKind::AgentBlock),
        ("subprocess", AgentKind::Subprocess),
        ("operator", AgentKind::Operator),
    ] {
        let bp = ok(doc(
            json!({"agents": [{"name": "a", "kind": wire}], "default_agent_kind": wire}),
        ));
        assert_eq!(bp.agents[0].kind, kind);
        assert_eq!(bp.default_agent_kind, kind);
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(wire));
        assert_eq!(kind.as_str(), wire);
        assert_eq!(kind.to_string(), wire);
        assert_eq!(wire.parse::<AgentKind>().unwrap(), kind);
        assert_eq!(kind.variant_name(), format!("{kind:?}"));
    }
    assert_eq!(AgentKind::ALL.len(), 5);
}

#[test]
fn unknown_or_miscased_agent_kind_rejected() {
    for bad in [
        "Lua",
        "LUA",
        "rustFn",
        "RustFn",
        "rust-fn",
        "python",
        "",
        "operator ",
    ] {
        let e = err(doc(json!({"agents": [{"name": "a", "kind": bad}]})));
        assert_names(&e, &format!("unknown variant `{bad}`"));
        assert_names(
            &e,
            "expected one of `lua`, `rust_fn`, `agent_block`, `subprocess`, `operator`",
        );
        assert!(bad.parse::<AgentKind>().is_err());
        assert_names(
            &err(doc(json!({ "default_agent_kind": bad }))),
            "unknown variant",
        );
    }
    assert_names(
        &err(doc(json!({"agents": [{"name": "a", "kind": 1}]}))),
        "invalid type",
    );
}

#[test]
fn agent_def_without_kind_is_rejected() {
    let e = err(doc(json!({"agents": [{"name": "a", "spec": {}}]})));
    assert_names(&e, "missing field `kind`");
    let e = err(doc(json!({"agents": [{"kind": "lua"}]})));
    assert_names(&e, "missing field `name`");
}

#[test]
fn operator_kind_wire_values_and_default() {
    assert_eq!(OperatorKind::default(), OperatorKind::Automate);
    for (wire, kind) in [
        ("main_ai", OperatorKind::MainAi),
        ("automate", OperatorKind::Automate),
        ("composite", OperatorKind::Composite),
    ] {
        let bp = ok(doc(json!({"operators": [{"name": "r", "kind": wire}],
                                "default_operator_kind": wire})));
        assert_eq!(bp.operators[0].kind, Some(kind));
        assert_eq!(bp.default_operator_kind, Some(kind));
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(wire));
        assert_eq!(wire.parse::<OperatorKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), wire);
    }
    for bad in [
        "Main_AI", "MainAi", "mainai", "Automate", "AUTOMATE", "manual", "",
    ] {
        let e = err(doc(json!({ "default_operator_kind": bad })));
        assert_names(&e, &format!("unknown variant `{bad}`"));
        assert_names(&e, "expected one of `main_ai`, `automate`, `composite`");
        assert_names(
            &err(doc(json!({"operators": [{"name": "r", "kind": bad}]}))),
            "unknown variant",
        );
        let perr = bad.parse::<OperatorKind>().unwrap_err();
        assert_names(&perr.to_string(), &format!("unknown variant `{bad}`"));
    }
}

// ---------------------------------------------------------------------------
// Strategy (§4.6)
// ---------------------------------------------------------------------------

#[test]
fn partial_strategy_objects() {
    let s = |v: Value| ok(doc(json!({ "strategy": v }))).strategy;
    assert_eq!(
        s(json!({"strict_refs": false})),
        CompilerStrategy {
            strict_refs: false,
            strict_kind: true
        }
    );
    assert_eq!(
        s(json!({"strict_kind": false})),
        CompilerStrategy {
            strict_refs: true,
            strict_kind: false
        }
    );
    assert_eq!(s(json!({})), CompilerStrategy::default());
    assert_names(
        &err(doc(json!({"strategy": {"strict_refs": "false"}}))),
        "invalid type",
    );
}

// ---------------------------------------------------------------------------
// Other §13 parsing rows and misc
// ---------------------------------------------------------------------------

#[test]
fn duplicate_agent_names_and_dangling_refs_parse() {
    // Compile reports these; registration (parsing) accepts them.
    let bp = ok(doc(json!({
        "flow": {"kind": "step", "ref": "nobody", "in": {"op": "lit", "value": null},
                 "out": {"op": "path", "at": "$.x"}},
        "agents": [{"name": "a", "kind": "lua"}, {"name": "a", "kind": "operator",
                    "spec": {"operator_ref": "undeclared"}}],
        "operators": [{"name": "unused"}]
    })));
    assert_eq!(bp.agents.len(), 2);
    assert_eq!(bp.agent("a").unwrap().kind, AgentKind::Lua);
}

#[test]
fn agent_md_expansion_output_parses() {
    // The AgentDef produced by the §12.4 example.
    let agent = json!({"name":"code-reviewer","kind":"operator","spec":null,"meta":null,
     "profile":{"system_prompt":"You review the diff in {{ directive }} and reply PASS or BLOCKED.\n",
      "model":"sonnet","effort":"medium","tools":["Read","Grep","mcp__tracker__get_issue"],
      "description":"Reviews diffs for risky changes","extras":{"permissionMode":"plan"},
      "version_hash":"553d7185306f52448b3d8ff1f26183e5b94283a159ae67351ca53e439839872d"}});
    let bp = ok(doc(json!({ "agents": [agent.clone()] })));
    assert_eq!(serde_json::to_value(&bp.agents[0]).unwrap(), agent);
}

#[test]
fn flow_is_parsed_strictly() {
    assert!(parse(doc(json!({"flow": {"kind": "Step"}}))).is_err());
    assert!(parse(doc(json!({"flow": {"kind": "seq"}}))).is_err());
    assert!(parse(doc(json!({"flow": []}))).is_err());
    assert_names(&err(json!({"id": "x"})), "missing field `flow`");
    assert_names(&err(json!({"flow": seq()})), "missing field `id`");
}

#[test]
fn metadata_ttl_is_unsigned() {
    assert_eq!(
        ok(doc(json!({"metadata": {"default_run_ttl_secs": 1800}})))
            .metadata
            .default_run_ttl_secs,
        Some(1800)
    );
    assert!(parse(doc(json!({"metadata": {"default_run_ttl_secs": -1}}))).is_err());
    assert!(parse(doc(json!({"metadata": {"default_run_ttl_secs": 1.5}}))).is_err());
}

#[test]
fn error_classification() {
    let e = Blueprint::from_json(b"{\"id\":").unwrap_err();
    assert!(matches!(e, SchemaError::Syntax(_)), "{e:?}");
    let e = Blueprint::from_json(b"not json").unwrap_err();
    assert!(matches!(e, SchemaError::Syntax(_)), "{e:?}");
    let e = Blueprint::from_json(br#"{"id":"a","flow":{"kind":"seq","children":[]},"x":1}"#)
        .unwrap_err();
    assert!(matches!(e, SchemaError::Invalid(_)), "{e:?}");
    assert_eq!(e.to_string(), e.message());
    assert!(e.message().contains("line 1 column"), "{e}");
    let e = Blueprint::from_value(json!("bp")).unwrap_err();
    assert!(matches!(e, SchemaError::Invalid(_)), "{e:?}");
    assert_names(&e.to_string(), "invalid type: string");
}

#[test]
fn errors_name_where_they_happened() {
    let err = mse_blueprint::Blueprint::from_value(serde_json::json!({
        "id": "x", "flow": {"kind": "seq", "children": []}, "agents": null
    }))
    .unwrap_err();
    assert!(
        err.to_string().starts_with("agents: invalid type: null"),
        "{err}"
    );
    let err = mse_blueprint::Blueprint::from_value(serde_json::json!({
        "id": "x", "flow": {"kind": "seq", "children": []},
        "agents": [{"name": "a", "kind": "rust_fn"}, {"name": "b", "kind": "Lua"}]
    }))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("agents[1].kind: unknown variant `Lua`"),
        "{err}"
    );
}
