//! Typed Blueprint document (spec `blueprint.md` §2–§5).
//!
//! Every type here mirrors one table of the specification: the fields, their
//! declaration order (which is also the serialization order), their defaults and
//! their strictness.
//!
//! Document rules (§2):
//!
//! * Every object rejects unknown fields (`deny_unknown_fields`), except
//!   [`BlueprintOrigin`], whose extra fields are ignored. The error names the key and
//!   the expected set: ``unknown field `extra`, expected one of `schema_version`, …``.
//! * A non-optional field with a default (`agents`, `operators`, `hints`, `strategy`,
//!   `metadata`, `spawner_hints`, `default_agent_kind`, `tags`, `tools`, `layers`,
//!   `per_agent`, `system_prompt`, booleans) takes its default when the key is
//!   absent; an explicit `null` is a parse error.
//! * An `Option` field treats `null` exactly like an absent key.
//! * Free-form JSON fields (`spec`, `global`, `extras`) accept any value and default
//!   to `null`.
//! * Enum values are lower snake_case and case-sensitive.
//!
//! Serialization emits every field in declaration order; `Option` fields are emitted
//! as `null` when unset, except the four the spec omits when null:
//! [`Blueprint::default_operator_kind`], [`BlueprintMetadata::version_label`],
//! [`BlueprintMetadata::project_name_alias`] and
//! [`BlueprintMetadata::default_run_ttl_secs`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Schema version written by this implementation and used when the key is absent.
pub const DEFAULT_SCHEMA_VERSION: &str = "0.1.0";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A Blueprint document could not be parsed.
///
/// The message is serde's, so it names the offending key and the expected set
/// (``unknown field `x`, expected one of …``), the missing field
/// (``missing field `kind` ``) or the bad variant (``unknown variant `Lua`, …``).
/// When parsing from bytes it ends with the `line`/`column` position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The bytes are not well-formed JSON (syntax error or premature end of input).
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// Well-formed JSON that does not match the Blueprint schema.
    #[error("{0}")]
    Invalid(String),
}

impl SchemaError {
    /// serde's message without the variant prefix.
    pub fn message(&self) -> &str {
        match self {
            SchemaError::Syntax(m) | SchemaError::Invalid(m) => m,
        }
    }
}

impl From<serde_json::Error> for SchemaError {
    fn from(err: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => SchemaError::Syntax(err.to_string()),
            Category::Data => SchemaError::Invalid(err.to_string()),
        }
    }
}

/// Prefix serde's message with where it happened (`agents[0].kind: ...`).
fn with_path(err: serde_path_to_error::Error<serde_json::Error>) -> SchemaError {
    let path = err.path().to_string();
    let inner = SchemaError::from(err.into_inner());
    match inner {
        SchemaError::Invalid(m) if path != "." => SchemaError::Invalid(format!("{path}: {m}")),
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Enumerations (§5)
// ---------------------------------------------------------------------------

/// Worker implementation of an agent (§5). Closed set; case-sensitive.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// In-process Lua script.
    Lua,
    /// Built-in Rust function.
    RustFn,
    /// Embedded headless LLM agent.
    AgentBlock,
    /// External program.
    Subprocess,
    /// Human / AI operator connected over the operator protocol.
    Operator,
}

impl AgentKind {
    /// Every kind, in declaration order.
    pub const ALL: [AgentKind; 5] = [
        AgentKind::Lua,
        AgentKind::RustFn,
        AgentKind::AgentBlock,
        AgentKind::Subprocess,
        AgentKind::Operator,
    ];

    /// The wire form (`"rust_fn"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Lua => "lua",
            AgentKind::RustFn => "rust_fn",
            AgentKind::AgentBlock => "agent_block",
            AgentKind::Subprocess => "subprocess",
            AgentKind::Operator => "operator",
        }
    }

    /// The reference's variant name (`"RustFn"`), as used in the compile error
    /// `unknown agent kind in SpawnerRegistry: <Variant>` (§7). Same as `{:?}`.
    pub fn variant_name(self) -> &'static str {
        match self {
            AgentKind::Lua => "Lua",
            AgentKind::RustFn => "RustFn",
            AgentKind::AgentBlock => "AgentBlock",
            AgentKind::Subprocess => "Subprocess",
            AgentKind::Operator => "Operator",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentKind {
    type Err = UnknownVariant;

    /// Strict, case-sensitive parse of the wire form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                value: s.to_owned(),
                expected: &["lua", "rust_fn", "agent_block", "subprocess", "operator"],
            })
    }
}

/// Operator kind (§5, cascade in §10). `Default` is the cascade fallback,
/// [`OperatorKind::Automate`]; fields of this type default to absent (`None`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// The main AI drives the agent (gates the `main_ai` middleware).
    MainAi,
    /// Fully automatic (cascade fallback).
    #[default]
    Automate,
    /// Both.
    Composite,
}

impl OperatorKind {
    /// Every kind, in declaration order.
    pub const ALL: [OperatorKind; 3] = [
        OperatorKind::MainAi,
        OperatorKind::Automate,
        OperatorKind::Composite,
    ];

    /// The wire form (`"main_ai"`).
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorKind::MainAi => "main_ai",
            OperatorKind::Automate => "automate",
            OperatorKind::Composite => "composite",
        }
    }
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatorKind {
    type Err = UnknownVariant;

    /// Strict, case-sensitive parse of the wire form (`main_ai|automate|composite`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperatorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                value: s.to_owned(),
                expected: &["main_ai", "automate", "composite"],
            })
    }
}

/// A string that is not one of an enumeration's wire values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown variant `{value}`, expected one of {}",
    fmt_expected(expected)
)]
pub struct UnknownVariant {
    /// The rejected input.
    pub value: String,
    /// The accepted wire values.
    pub expected: &'static [&'static str],
}

fn fmt_expected(expected: &[&str]) -> String {
    expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Top-level Blueprint (§3)
// ---------------------------------------------------------------------------

/// A Blueprint document (§3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Blueprint")]
pub struct Blueprint {
    /// Semantic version of the document schema (default `"0.1.0"`). Must parse as
    /// semver; not compared with the server's own schema version.
    #[serde(
        default = "default_schema_version",
        deserialize_with = "deserialize_schema_version"
    )]
    #[schemars(with = "String")]
    pub schema_version: String,
    /// Blueprint identifier.
    pub id: String,
    /// Root node of the flow program (`flow-ir.md`), parsed strictly by `mse-flow`.
    /// Opaque (any object) in the JSON Schema.
    #[schemars(schema_with = "flow_schema")]
    pub flow: mse_flow::Node,
    /// Step-ref → worker bindings.
    #[serde(default)]
    pub agents: Vec<AgentDef>,
    /// Declared operator roles.
    #[serde(default)]
    pub operators: Vec<OperatorDef>,
    /// Free-form hints handed to factories.
    #[serde(default)]
    pub hints: CompilerHints,
    /// Strictness switches for compile.
    #[serde(default)]
    pub strategy: CompilerStrategy,
    /// Description, origin, tags, version label, alias, TTL.
    #[serde(default)]
    pub metadata: BlueprintMetadata,
    /// Middleware capability keys.
    #[serde(default)]
    pub spawner_hints: SpawnerHints,
    /// Kind given to `$agent_md`-expanded agents without a sibling `kind`.
    #[serde(default = "default_agent_kind")]
    pub default_agent_kind: AgentKind,
    /// "Blueprint global" tier of the operator-kind cascade. Omitted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_operator_kind: Option<OperatorKind>,
}

fn default_schema_version() -> String {
    DEFAULT_SCHEMA_VERSION.to_owned()
}

fn default_agent_kind() -> AgentKind {
    AgentKind::Operator
}

fn deserialize_schema_version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match semver::Version::parse(&s) {
        Ok(_) => Ok(s),
        Err(e) => Err(serde::de::Error::custom(format!(
            "invalid schema_version {s:?}: not a semantic version ({e})"
        ))),
    }
}

fn flow_schema(_gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Root node of the flow program (see flow-ir.md); opaque here."
    })
}

impl Blueprint {
    /// Parse a JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Blueprint, SchemaError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let bp = serde_path_to_error::deserialize(&mut de).map_err(with_path)?;
        de.end()?;
        Ok(bp)
    }

    /// Parse an already-decoded JSON value.
    pub fn from_value(value: Value) -> Result<Blueprint, SchemaError> {
        serde_path_to_error::deserialize(value).map_err(with_path)
    }

    /// Serialize to a JSON value (all defaults written out).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a Blueprint always serializes to JSON")
    }

    /// The agent named `name`, if any (the first one when names are duplicated).
    pub fn agent(&self, name: &str) -> Option<&AgentDef> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The operator role named `name`, if any.
    pub fn operator(&self, name: &str) -> Option<&OperatorDef> {
        self.operators.iter().find(|o| o.name == name)
    }
}

// ---------------------------------------------------------------------------
// Nested types (§4)
// ---------------------------------------------------------------------------

/// Step-ref → worker binding (§4.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    /// Name matched against `step.ref`.
    pub name: String,
    /// Worker implementation. Required.
    pub kind: AgentKind,
    /// Kind-specific configuration.
    #[serde(default)]
    pub spec: Value,
    /// Persona: system prompt, model, tools.
    pub profile: Option<AgentProfile>,
    /// Descriptive metadata.
    pub meta: Option<AgentMeta>,
}

/// Persona of an agent or operator role (§4.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentProfile {
    /// Persona text / template.
    #[serde(default)]
    pub system_prompt: String,
    /// Model label. Informational.
    pub model: Option<String>,
    /// Reasoning effort label. Informational.
    pub effort: Option<String>,
    /// Tool names (`mcp__<server>__<tool>` selects MCP servers for agent_block).
    #[serde(default)]
    pub tools: Vec<String>,
    /// One-line description.
    pub description: Option<String>,
    /// Unrecognised agent.md frontmatter keys.
    #[serde(default)]
    pub extras: Value,
    /// 64-char lowercase hex BLAKE3-256 of `system_prompt`. Not verified.
    pub version_hash: Option<String>,
}

/// Descriptive metadata of an agent or operator role (§4.3). Informational.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentMeta {
    /// Description.
    pub description: Option<String>,
    /// Version string.
    pub version: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Declared operator role (§4.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorDef {
    /// Logical role name referenced by `spec.operator_ref`.
    pub name: String,
    /// UI label.
    pub display_name: Option<String>,
    /// "Blueprint agent" tier of the operator-kind cascade.
    pub kind: Option<OperatorKind>,
    /// Role-specific config.
    #[serde(default)]
    pub spec: Value,
    /// Role persona.
    pub profile: Option<AgentProfile>,
    /// Metadata.
    pub meta: Option<AgentMeta>,
}

/// Free-form hints handed to factories (§4.5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompilerHints {
    /// Agent name → hint; kept sorted so serialization (and the version) is stable.
    #[serde(default)]
    pub per_agent: BTreeMap<String, Value>,
    /// Global hint.
    #[serde(default)]
    pub global: Value,
}

/// Strictness switches for compile (§4.6). Partial objects are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompilerStrategy {
    /// Every `step.ref` must resolve to a compiled route.
    #[serde(default = "default_true")]
    pub strict_refs: bool,
    /// An agent whose kind has no registered factory is a compile error.
    #[serde(default = "default_true")]
    pub strict_kind: bool,
}

impl Default for CompilerStrategy {
    fn default() -> Self {
        CompilerStrategy {
            strict_refs: true,
            strict_kind: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Description, provenance and run defaults (§4.7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlueprintMetadata {
    /// Human description.
    pub description: Option<String>,
    /// Provenance record.
    #[serde(default)]
    pub origin: BlueprintOrigin,
    /// Classification.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form label, target of `semver_req` selection. Omitted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// Injected into every spawn's runtime metadata. Omitted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name_alias: Option<String>,
    /// Run/session TTL when the task request has none. Omitted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_run_ttl_secs: Option<u64>,
}

/// Provenance record (§4.8), tagged by `kind`. Extra fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlueprintOrigin {
    /// Sent inline.
    #[default]
    Inline,
    /// Loaded from a file.
    File {
        /// Path of the file.
        path: String,
    },
    /// Produced by an algorithm session.
    Algo {
        /// Session that produced it.
        session_id: String,
    },
}

/// Middleware capability keys (§4.9, §11).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnerHints {
    /// Layer keys, innermost first.
    #[serde(default)]
    pub layers: Vec<String>,
}

// ---------------------------------------------------------------------------
// JSON Schema export
// ---------------------------------------------------------------------------

/// The exported JSON Schema document of [`Blueprint`] (`flow` is opaque).
pub fn json_schema() -> Value {
    schemars::schema_for!(Blueprint).to_value()
}
