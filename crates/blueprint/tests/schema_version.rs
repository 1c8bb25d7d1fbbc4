//! Content version (blueprint.md §6, project decision 2) and the JSON Schema export.

use std::collections::HashSet;

use mse_blueprint::schema::{json_schema, Blueprint};
use mse_blueprint::version::{canonical_bytes, content_hash, BlueprintVersion};
use serde_json::{json, Value};

const VECTOR_1: &str = r#"{"id":"hello","flow":{"kind":"seq","children":[]}}"#;
const VECTOR_2: &str = r#"{"id":"hello","flow":{"kind":"step","ref":"greeter","in":{"op":"lit","value":{"name":"world"}},"out":{"op":"path","at":"$.greeting"}},"agents":[{"name":"greeter","kind":"rust_fn","spec":{"fn_id":"identity"}}]}"#;

const CANONICAL_1: &str = concat!(
    r#"{"schema_version":"0.1.0","id":"hello","flow":{"kind":"seq","children":[]},"#,
    r#""agents":[],"operators":[],"hints":{"per_agent":{},"global":null},"#,
    r#""strategy":{"strict_refs":true,"strict_kind":true},"#,
    r#""metadata":{"description":null,"origin":{"kind":"inline"},"tags":[]},"#,
    r#""spawner_hints":{"layers":[]},"default_agent_kind":"operator"}"#
);

const CANONICAL_2: &str = concat!(
    r#"{"schema_version":"0.1.0","id":"hello","#,
    r#""flow":{"kind":"step","ref":"greeter","in":{"op":"lit","value":{"name":"world"}},"out":{"op":"path","at":"$.greeting"}},"#,
    r#""agents":[{"name":"greeter","kind":"rust_fn","spec":{"fn_id":"identity"},"profile":null,"meta":null}],"#,
    r#""operators":[],"hints":{"per_agent":{},"global":null},"#,
    r#""strategy":{"strict_refs":true,"strict_kind":true},"#,
    r#""metadata":{"description":null,"origin":{"kind":"inline"},"tags":[]},"#,
    r#""spawner_hints":{"layers":[]},"default_agent_kind":"operator"}"#
);

fn version_of_text(text: &str) -> BlueprintVersion {
    Blueprint::from_json(text.as_bytes())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .version()
}

fn version_of(v: &Value) -> BlueprintVersion {
    version_of_text(&v.to_string())
}

/// Re-serialize a JSON text with every object's keys in reverse order.
fn reverse_keys(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| b.0.cmp(a.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), reverse_keys(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(reverse_keys).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Same JSON, spread over lines with odd whitespace.
fn spaced(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .unwrap()
        .replace(':', " :\t")
        .replace(',', "\r\n ,")
        .replace("\" :\t", "\"  :  ")
}

// ---------------------------------------------------------------------------
// Definition
// ---------------------------------------------------------------------------

#[test]
fn canonical_bytes_of_the_spec_vectors() {
    let bp1 = Blueprint::from_json(VECTOR_1.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(canonical_bytes(&bp1)).unwrap(),
        CANONICAL_1
    );
    let bp2 = Blueprint::from_json(VECTOR_2.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(canonical_bytes(&bp2)).unwrap(),
        CANONICAL_2
    );
    assert_eq!(
        BlueprintVersion::canonical_bytes(&bp2),
        canonical_bytes(&bp2)
    );
}

#[test]
fn version_is_blake3_of_canonical_bytes() {
    for text in [VECTOR_1, VECTOR_2] {
        let bp = Blueprint::from_json(text.as_bytes()).unwrap();
        let v = BlueprintVersion::of(&bp);
        assert_eq!(v, bp.version());
        assert_eq!(v.to_hex(), content_hash(&canonical_bytes(&bp)));
        assert_eq!(v.as_bytes(), blake3::hash(&canonical_bytes(&bp)).as_bytes());
    }
    // Pinned values: a change here changes every stored version.
    assert_eq!(
        version_of_text(VECTOR_1).to_hex(),
        content_hash(CANONICAL_1.as_bytes())
    );
    assert_eq!(
        version_of_text(VECTOR_2).to_hex(),
        content_hash(CANONICAL_2.as_bytes())
    );
    assert_eq!(
        version_of_text(VECTOR_1).to_hex(),
        "4b1976b17ee8521add3386f288be6fa13ddb364a15df2cd27fc61073d35f382b"
    );
    assert_eq!(
        version_of_text(VECTOR_2).to_hex(),
        "57e7991179918e03d2ff0173d009fa530d02472b49a0d25a7aa7a6fc2ecd22ee"
    );
    assert_ne!(version_of_text(VECTOR_1), version_of_text(VECTOR_2));
}

#[test]
fn canonical_bytes_are_compact_json_that_parses_back() {
    let full = full();
    let bp = Blueprint::from_value(full).unwrap();
    let bytes = canonical_bytes(&bp);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains('\n'));
    assert!(!text.contains(": "));
    assert!(!text.contains(", "));
    assert_eq!(Blueprint::from_json(&bytes).unwrap(), bp);
    // With default serde_json features the canonical form equals serde_json's
    // compact output of the typed Blueprint.
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        bp.to_value()
    );
}

#[test]
fn content_hash_is_blake3_hex() {
    assert_eq!(
        content_hash(b""),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    // The agent.md example of blueprint.md §12.4.
    assert_eq!(
        content_hash(b"You review the diff in {{ directive }} and reply PASS or BLOCKED.\n"),
        "553d7185306f52448b3d8ff1f26183e5b94283a159ae67351ca53e439839872d"
    );
}

// ---------------------------------------------------------------------------
// Stability
// ---------------------------------------------------------------------------

fn vector_1_with_defaults() -> Value {
    json!({
        "schema_version": "0.1.0",
        "id": "hello",
        "flow": {"kind": "seq", "children": []},
        "agents": [],
        "operators": [],
        "hints": {"per_agent": {}, "global": null},
        "strategy": {"strict_refs": true, "strict_kind": true},
        "metadata": {"description": null, "origin": {"kind": "inline"}, "tags": [],
                     "version_label": null, "project_name_alias": null,
                     "default_run_ttl_secs": null},
        "spawner_hints": {"layers": []},
        "default_agent_kind": "operator",
        "default_operator_kind": null
    })
}

fn vector_2_with_defaults() -> Value {
    json!({
        "default_operator_kind": null,
        "default_agent_kind": "operator",
        "spawner_hints": {},
        "metadata": {"tags": [], "origin": {"kind": "inline", "ignored": true}},
        "strategy": {"strict_kind": true},
        "hints": {"global": null},
        "operators": [],
        "agents": [{"meta": null, "profile": null, "spec": {"fn_id": "identity"},
                    "kind": "rust_fn", "name": "greeter"}],
        "flow": {"out": {"at": "$.greeting", "op": "path"},
                 "in": {"value": {"name": "world"}, "op": "lit"},
                 "ref": "greeter", "kind": "step"},
        "id": "hello",
        "schema_version": "0.1.0"
    })
}

#[test]
fn stable_across_key_order_whitespace_and_explicit_defaults() {
    for (text, with_defaults) in [
        (VECTOR_1, vector_1_with_defaults()),
        (VECTOR_2, vector_2_with_defaults()),
    ] {
        let expected = version_of_text(text);
        let parsed: Value = serde_json::from_str(text).unwrap();
        let variants = [
            text.to_owned(),
            reverse_keys(&parsed),
            spaced(&parsed),
            with_defaults.to_string(),
            reverse_keys(&with_defaults),
            spaced(&with_defaults),
        ];
        for variant in &variants {
            assert_eq!(version_of_text(variant), expected, "variant: {variant}");
        }
    }
}

#[test]
fn stable_across_repeated_parses() {
    let doc = full().to_string();
    let first = version_of_text(&doc);
    for _ in 0..50 {
        assert_eq!(version_of_text(&doc), first);
    }
}

#[test]
fn per_agent_order_does_not_matter() {
    // Reference defect #1 (§14): per_agent was hashed in random hash-map order.
    let keys = ["zeta", "alpha", "mid", "Beta", "_x", "alpha2", "é"];
    let build = |order: &[&str]| {
        let mut per_agent = serde_json::Map::new();
        for k in order {
            per_agent.insert((*k).to_owned(), json!({"k": k, "b": 2, "a": 1}));
        }
        // Render keys in the given order, regardless of serde_json's map ordering.
        let body = order
            .iter()
            .map(|k| format!("{}:{{\"k\":{},\"b\":2,\"a\":1}}", json!(k), json!(k)))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            r#"{{"id":"p","flow":{{"kind":"seq","children":[]}},"hints":{{"per_agent":{{{body}}},"global":{{"y":1,"x":2}}}}}}"#
        )
    };
    let forward = build(&keys);
    let mut rev = keys;
    rev.reverse();
    let backward = build(&rev);
    let mut rotated = keys;
    rotated.rotate_left(3);
    let rotated = build(&rotated);
    let v = version_of_text(&forward);
    assert_eq!(version_of_text(&backward), v);
    assert_eq!(version_of_text(&rotated), v);
    // And the canonical text has them sorted by bytes.
    let bp = Blueprint::from_json(forward.as_bytes()).unwrap();
    let text = String::from_utf8(canonical_bytes(&bp)).unwrap();
    assert!(
        text.contains(r#""per_agent":{"Beta":{"a":1,"b":2,"k":"Beta"},"_x":"#),
        "{text}"
    );
    assert!(text.contains(r#""global":{"x":2,"y":1}"#), "{text}");
}

#[test]
fn nested_free_form_key_order_does_not_matter() {
    let a = r#"{"id":"n","flow":{"kind":"assign","at":{"op":"path","at":"$.x"},"value":{"op":"lit","value":{"b":{"d":1,"c":2},"a":[{"z":0,"y":1}]}}},
               "agents":[{"name":"s","kind":"subprocess","spec":{"program":"p","args":["1"],"env":{"B":"1","A":"2"}},
                          "profile":{"extras":{"q":1,"p":2}}}]}"#;
    let b = r#"{"agents":[{"profile":{"extras":{"p":2,"q":1}},"spec":{"env":{"A":"2","B":"1"},"args":["1"],"program":"p"},"kind":"subprocess","name":"s"}],
               "flow":{"value":{"value":{"a":[{"y":1,"z":0}],"b":{"c":2,"d":1}},"op":"lit"},"at":{"at":"$.x","op":"path"},"kind":"assign"},"id":"n"}"#;
    assert_eq!(version_of_text(a), version_of_text(b));
}

// ---------------------------------------------------------------------------
// Sensitivity
// ---------------------------------------------------------------------------

fn full() -> Value {
    json!({
        "schema_version": "1.2.3",
        "id": "full",
        "flow": {"kind": "seq", "children": [
            {"kind": "step", "ref": "a", "in": {"op": "lit", "value": {"n": 1, "s": "x"}},
             "out": {"op": "path", "at": "$.out"}},
            {"kind": "try", "body": {"kind": "seq", "children": []},
             "catch": {"kind": "seq", "children": []}}
        ]},
        "agents": [
            {"name": "a", "kind": "operator", "spec": {"operator_ref": "main-ai", "n": 1},
             "profile": {"system_prompt": "hi", "model": "sonnet", "tools": ["Read"],
                         "description": "d", "extras": {"k": 1}},
             "meta": {"description": "m", "version": "1", "tags": ["t1"]}},
            {"name": "b", "kind": "lua", "spec": "return 1"}
        ],
        "operators": [{"name": "main-ai", "display_name": "Main", "kind": "main_ai"}],
        "hints": {"per_agent": {"b": {"x": 1}, "a": 2}, "global": [true]},
        "strategy": {"strict_refs": false},
        "metadata": {"description": "desc", "origin": {"kind": "file", "path": "bp.yaml"},
                     "tags": ["t"], "version_label": "1.0.0", "project_name_alias": "proj",
                     "default_run_ttl_secs": 60},
        "spawner_hints": {"layers": ["main_ai"]},
        "default_agent_kind": "subprocess",
        "default_operator_kind": "composite"
    })
}

/// A named edit of a Blueprint document.
type Edit = (&'static str, Box<dyn Fn(&mut Value)>);

#[test]
fn any_content_change_changes_the_version() {
    let base = full();
    let base_version = version_of(&base);
    let edits: Vec<Edit> = vec![
        (
            "flow literal",
            Box::new(|v| v["flow"]["children"][0]["in"]["value"]["s"] = json!("y")),
        ),
        (
            "flow literal int→float",
            Box::new(|v| v["flow"]["children"][0]["in"]["value"]["n"] = json!(1.0)),
        ),
        (
            "flow ref",
            Box::new(|v| v["flow"]["children"][0]["ref"] = json!("b")),
        ),
        (
            "try err_at",
            Box::new(|v| v["flow"]["children"][1]["err_at"] = json!({"op": "path", "at": "$.e"})),
        ),
        (
            "child order",
            Box::new(|v| {
                let c = v["flow"]["children"].as_array_mut().unwrap();
                c.swap(0, 1);
            }),
        ),
        (
            "spec int→float",
            Box::new(|v| v["agents"][0]["spec"]["n"] = json!(1.0)),
        ),
        (
            "spec int→string",
            Box::new(|v| v["agents"][0]["spec"]["n"] = json!("1")),
        ),
        (
            "agent order",
            Box::new(|v| v["agents"].as_array_mut().unwrap().swap(0, 1)),
        ),
        (
            "agent kind",
            Box::new(|v| v["agents"][1]["kind"] = json!("rust_fn")),
        ),
        (
            "system prompt",
            Box::new(|v| v["agents"][0]["profile"]["system_prompt"] = json!("hi ")),
        ),
        (
            "profile model",
            Box::new(|v| v["agents"][0]["profile"]["model"] = Value::Null),
        ),
        (
            "profile removed",
            Box::new(|v| v["agents"][0]["profile"] = Value::Null),
        ),
        (
            "empty profile vs null",
            Box::new(|v| v["agents"][1]["profile"] = json!({})),
        ),
        (
            "meta tag",
            Box::new(|v| v["agents"][0]["meta"]["tags"] = json!(["t2"])),
        ),
        (
            "operator kind",
            Box::new(|v| v["operators"][0]["kind"] = json!("automate")),
        ),
        (
            "operator display",
            Box::new(|v| v["operators"][0]["display_name"] = json!("main")),
        ),
        (
            "per_agent value",
            Box::new(|v| v["hints"]["per_agent"]["a"] = json!(3)),
        ),
        (
            "per_agent key",
            Box::new(|v| {
                let pa = v["hints"]["per_agent"].as_object_mut().unwrap();
                let x = pa.remove("a").unwrap();
                pa.insert("c".into(), x);
            }),
        ),
        (
            "global",
            Box::new(|v| v["hints"]["global"] = json!([false])),
        ),
        (
            "strategy",
            Box::new(|v| v["strategy"]["strict_kind"] = json!(false)),
        ),
        (
            "description",
            Box::new(|v| v["metadata"]["description"] = json!("desc.")),
        ),
        (
            "description null",
            Box::new(|v| v["metadata"]["description"] = Value::Null),
        ),
        (
            "origin",
            Box::new(|v| v["metadata"]["origin"] = json!({"kind": "inline"})),
        ),
        (
            "tags order",
            Box::new(|v| v["metadata"]["tags"] = json!(["t", "u"])),
        ),
        (
            "version_label",
            Box::new(|v| v["metadata"]["version_label"] = json!("1.0.1")),
        ),
        (
            "version_label removed",
            Box::new(|v| v["metadata"]["version_label"] = Value::Null),
        ),
        (
            "alias",
            Box::new(|v| v["metadata"]["project_name_alias"] = Value::Null),
        ),
        (
            "ttl",
            Box::new(|v| v["metadata"]["default_run_ttl_secs"] = json!(61)),
        ),
        (
            "layers",
            Box::new(|v| v["spawner_hints"]["layers"] = json!(["main_ai", "main_ai"])),
        ),
        (
            "default_agent_kind",
            Box::new(|v| v["default_agent_kind"] = json!("operator")),
        ),
        (
            "default_operator_kind",
            Box::new(|v| v["default_operator_kind"] = json!("automate")),
        ),
        (
            "default_operator_kind removed",
            Box::new(|v| v["default_operator_kind"] = Value::Null),
        ),
        (
            "schema_version",
            Box::new(|v| v["schema_version"] = json!("1.2.4")),
        ),
        ("id", Box::new(|v| v["id"] = json!("full2"))),
    ];
    let mut seen = HashSet::new();
    seen.insert(base_version);
    for (what, edit) in edits {
        let mut v = base.clone();
        edit(&mut v);
        let version = version_of(&v);
        assert_ne!(version, base_version, "{what} did not change the version");
        assert!(seen.insert(version), "{what} collides with another edit");
    }
}

#[test]
fn int_and_float_literals_differ() {
    let lit = |value: &str| {
        version_of_text(&format!(
            r#"{{"id":"n","flow":{{"kind":"assign","at":{{"op":"path","at":"$.x"}},"value":{{"op":"lit","value":{value}}}}}}}"#
        ))
    };
    assert_ne!(lit("1"), lit("1.0"));
    assert_ne!(lit("1"), lit("\"1\""));
    assert_ne!(lit("0"), lit("0.0"));
    assert_ne!(lit("0.0"), lit("-0.0"));
    // The same float spelled differently is the same content.
    assert_eq!(lit("1.0"), lit("1.00"));
    assert_eq!(lit("100.0"), lit("1e2"));
    assert_eq!(lit("{\"a\":1,\"b\":2}"), lit("{\"b\":2,\"a\":1}"));
}

// ---------------------------------------------------------------------------
// Text form
// ---------------------------------------------------------------------------

#[test]
fn hex_round_trip() {
    let v = version_of_text(VECTOR_2);
    let hex = v.to_hex();
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(v.to_string(), hex);
    assert_eq!(hex.parse::<BlueprintVersion>().unwrap(), v);
    assert_eq!(hex.to_uppercase().parse::<BlueprintVersion>().unwrap(), v);
    assert_eq!(BlueprintVersion::from_bytes(*v.as_bytes()), v);
    // serde: a JSON string of the hex.
    assert_eq!(serde_json::to_value(v).unwrap(), json!(hex));
    assert_eq!(
        serde_json::from_value::<BlueprintVersion>(json!(hex.to_uppercase())).unwrap(),
        v
    );
    assert!(format!("{v:?}").contains(&hex));
    let zero = BlueprintVersion::from_bytes([0; 32]);
    assert_eq!(zero.to_hex(), "0".repeat(64));
    let mixed = "0123456789abcdefABCDEF".repeat(3)[..64].to_owned();
    assert_eq!(
        mixed.parse::<BlueprintVersion>().unwrap().to_hex(),
        mixed.to_lowercase()
    );
}

#[test]
fn malformed_hex_rejected() {
    let good = version_of_text(VECTOR_1).to_hex();
    let bad = [
        String::new(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        format!("0x{}", &good[..62]),
        format!(" {}", &good[..63]),
        format!("{}\n", &good[..63]),
        format!("{}é", &good[..62]),
        format!("{}-", &good[..63]),
        "BlueprintVersion(ContentHash([49, 45]))".to_owned(),
    ];
    for b in bad {
        let e = b.parse::<BlueprintVersion>().unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        assert!(serde_json::from_value::<BlueprintVersion>(json!(b)).is_err());
    }
    assert!(serde_json::from_value::<BlueprintVersion>(json!(1)).is_err());
    assert!(serde_json::from_value::<BlueprintVersion>(json!(null)).is_err());
}

// ---------------------------------------------------------------------------
// JSON Schema export
// ---------------------------------------------------------------------------

#[test]
fn json_schema_export() {
    let schema = json_schema();
    // Valid JSON that survives a text round trip.
    let text = serde_json::to_string(&schema).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), schema);
    assert!(schema["$schema"]
        .as_str()
        .unwrap()
        .contains("json-schema.org"));
    assert_eq!(schema["type"], json!("object"));
    assert_eq!(schema["additionalProperties"], json!(false));
    let props = schema["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec![
        "schema_version",
        "id",
        "flow",
        "agents",
        "operators",
        "hints",
        "strategy",
        "metadata",
        "spawner_hints",
        "default_agent_kind",
        "default_operator_kind",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, vec!["flow", "id"]);

    // `flow` is opaque: any object, no structure.
    let flow = props["flow"].as_object().unwrap();
    for constraint in [
        "$ref",
        "properties",
        "required",
        "oneOf",
        "anyOf",
        "allOf",
        "additionalProperties",
        "enum",
        "const",
    ] {
        assert!(
            !flow.contains_key(constraint),
            "flow schema has {constraint}"
        );
    }
    assert!(flow.get("type").is_none_or(|t| t == "object"));
    assert!(!text.contains("\"children\""), "no flow structure leaks");

    // Enumerations and strictness are exported.
    let defs = schema["$defs"].as_object().unwrap();
    let agent_kind = serde_json::to_string(&defs["AgentKind"]).unwrap();
    for k in ["lua", "rust_fn", "agent_block", "subprocess", "operator"] {
        assert!(agent_kind.contains(&format!("\"{k}\"")), "{agent_kind}");
    }
    assert_eq!(defs["AgentDef"]["additionalProperties"], json!(false));
    let mut agent_required: Vec<&str> = defs["AgentDef"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    agent_required.sort_unstable();
    assert_eq!(agent_required, vec!["kind", "name"]);
    assert!(defs["BlueprintOrigin"]
        .get("additionalProperties")
        .is_none());
    assert_eq!(props["schema_version"]["default"], json!("0.1.0"));
}
