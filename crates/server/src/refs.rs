//! `$file` / `$agent_md` reference expansion (blueprint.md §12), applied to the raw
//! JSON of a Blueprint registered through `POST /v1/blueprints/{id}` when the server
//! has a reference base directory (`--blueprint-ref-base`).
//!
//! - `{"$file": "<rel>"}` (exactly that one key, a string value) becomes the file's
//!   text as a JSON string; the text is not expanded further.
//! - `{"$agent_md": "<rel>", ...siblings}` becomes the AgentDef generated from that
//!   agent.md file (§12.4), with every sibling key (itself expanded) written over the
//!   generated object's top-level key of the same name. The result is not walked again.
//! - Kind of an `$agent_md` agent: the sibling `kind` if it is a valid agent kind, else
//!   the Blueprint's top-level `default_agent_kind` when that key is present (an
//!   invalid value counts as `operator`), else the server's configured default, else
//!   `operator`. An invalid sibling `kind` is still copied over (typed parsing then
//!   fails).
//!
//! Sandbox (§12.2 plus §14.8): absolute paths and any `..` component are refused
//! before touching the file system; then the base and the target are canonicalized
//! and the target must stay inside the base, so a symlink inside the base that
//! points outside it is refused too. Only regular UTF-8 files are read, each at most
//! [`MAX_REF_FILE_BYTES`], all of one Blueprint together at most
//! [`MAX_REF_TOTAL_BYTES`] (a reference repeated many times counts each time).
//!
//! agent.md closing delimiter (§14.9 fixed): the frontmatter ends at the first line
//! that is exactly `---` (trailing spaces, tabs and `\r` allowed), so `----` or
//! `---x` stay in the frontmatter instead of silently moving text into the body.
//!
//! Error messages name the reference as written (never the absolute base path):
//! `$file ref expansion at "<path>": <detail>`, with `agent_md parse: <detail>` for a
//! malformed agent.md.

use mse_blueprint::AgentKind;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Largest file one reference may read.
pub const MAX_REF_FILE_BYTES: u64 = 1024 * 1024;
/// Most bytes all references of one Blueprint may read together.
pub const MAX_REF_TOTAL_BYTES: u64 = 8 * 1024 * 1024;

/// A failed expansion (rendered `$file ref expansion at "<path>": <detail>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("$file ref expansion at {path:?}: {detail}")]
pub struct RefError {
    /// The reference as written in the Blueprint.
    pub path: String,
    pub detail: String,
}

/// Expand every reference in `body` against `base`. `configured_default` is the
/// server's `default_agent_kind`.
pub fn expand(
    body: Value,
    base: &Path,
    configured_default: Option<AgentKind>,
) -> Result<Value, RefError> {
    let default_kind = match body.get("default_agent_kind") {
        Some(v) => agent_kind(v).unwrap_or(AgentKind::Operator),
        None => configured_default.unwrap_or(AgentKind::Operator),
    };
    let mut expander = Expander {
        base,
        canonical_base: None,
        default_kind,
        read_total: 0,
    };
    expander.walk(body)
}

/// Whether `body` contains anything [`expand`] would replace (a cheap pre-check).
pub fn has_refs(body: &Value) -> bool {
    match body {
        Value::Array(items) => items.iter().any(has_refs),
        Value::Object(map) => {
            let file = map.len() == 1 && matches!(map.get("$file"), Some(Value::String(_)));
            file || matches!(map.get("$agent_md"), Some(Value::String(_)))
                || map.values().any(has_refs)
        }
        _ => false,
    }
}

fn agent_kind(v: &Value) -> Option<AgentKind> {
    serde_json::from_value(v.clone()).ok()
}

struct Expander<'a> {
    base: &'a Path,
    canonical_base: Option<PathBuf>,
    default_kind: AgentKind,
    read_total: u64,
}

impl Expander<'_> {
    fn walk(&mut self, v: Value) -> Result<Value, RefError> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|x| self.walk(x))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                if map.len() == 1 {
                    if let Some(Value::String(rel)) = map.get("$file") {
                        return self.read(rel).map(Value::String);
                    }
                }
                if let Some(Value::String(rel)) = map.get("$agent_md") {
                    let rel = rel.clone();
                    return self.agent_md(&rel, map);
                }
                map.into_iter()
                    .map(|(k, v)| Ok((k, self.walk(v)?)))
                    .collect::<Result<Map<_, _>, _>>()
                    .map(Value::Object)
            }
            other => Ok(other),
        }
    }

    fn agent_md(&mut self, rel: &str, siblings: Map<String, Value>) -> Result<Value, RefError> {
        let text = self.read(rel)?;
        let kind = siblings
            .get("kind")
            .and_then(agent_kind)
            .unwrap_or(self.default_kind);
        let mut def = agent_def_from_md(&text, rel, kind).map_err(|e| RefError {
            path: rel.to_string(),
            detail: format!("agent_md parse: {e}"),
        })?;
        for (k, v) in siblings {
            if k == "$agent_md" {
                continue;
            }
            let v = self.walk(v)?;
            def.insert(k, v);
        }
        Ok(Value::Object(def))
    }

    /// Read one referenced file inside the sandbox.
    fn read(&mut self, rel: &str) -> Result<String, RefError> {
        let fail = |detail: String| RefError {
            path: rel.to_string(),
            detail,
        };
        let path = Path::new(rel);
        if path.is_absolute() || path.has_root() {
            return Err(fail(
                "absolute path not allowed (must be relative to Blueprint dir)".into(),
            ));
        }
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(fail("'..' parent-dir escape not allowed".into()));
        }
        if rel.contains('\0') {
            return Err(fail("path contains a NUL byte".into()));
        }
        let base = match &self.canonical_base {
            Some(b) => b.clone(),
            None => {
                let b = std::fs::canonicalize(self.base).map_err(|e| {
                    fail(format!(
                        "the reference base directory is not accessible: {e}"
                    ))
                })?;
                self.canonical_base = Some(b.clone());
                b
            }
        };
        let target = base
            .join(path)
            .canonicalize()
            .map_err(|e| fail(format!("cannot resolve the file: {e}")))?;
        if !target.starts_with(&base) {
            return Err(fail(
                "path resolves outside the reference base directory (symlink escape not allowed)"
                    .into(),
            ));
        }
        let file = std::fs::File::open(&target).map_err(|e| fail(format!("cannot open: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot stat: {e}")))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        if meta.len() > MAX_REF_FILE_BYTES {
            return Err(fail(format!(
                "file is larger than the limit of {MAX_REF_FILE_BYTES} bytes"
            )));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // `take` guards against a file that grows after the size check.
        file.take(MAX_REF_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_REF_FILE_BYTES {
            return Err(fail(format!(
                "file is larger than the limit of {MAX_REF_FILE_BYTES} bytes"
            )));
        }
        self.read_total += bytes.len() as u64;
        if self.read_total > MAX_REF_TOTAL_BYTES {
            return Err(fail(format!(
                "references of this Blueprint read more than {MAX_REF_TOTAL_BYTES} bytes in total"
            )));
        }
        String::from_utf8(bytes).map_err(|_| fail("file is not valid UTF-8 text".into()))
    }
}

/// Split an agent.md file into its frontmatter and body (§12.4, closing delimiter
/// per §14.9: a line that is exactly `---`, trailing whitespace allowed).
fn split_frontmatter<'t>(text: &'t str, path: &str) -> Result<(&'t str, &'t str), String> {
    let missing = || format!("no frontmatter delimiter `---` in {path}");
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or_else(missing)?;
    let mut offset = 0;
    loop {
        let end = rest[offset..].find('\n').map(|i| offset + i);
        let line = &rest[offset..end.unwrap_or(rest.len())];
        if line.trim_end_matches([' ', '\t', '\r']) == "---" {
            let body_start = end.map_or(rest.len(), |e| e + 1);
            return Ok((&rest[..offset], &rest[body_start..]));
        }
        match end {
            Some(e) => offset = e + 1,
            None => return Err(missing()),
        }
    }
}

/// The AgentDef (as a JSON object) of an agent.md file.
pub fn agent_def_from_md(
    text: &str,
    path: &str,
    kind: AgentKind,
) -> Result<Map<String, Value>, String> {
    let (frontmatter, body) = split_frontmatter(text, path)?;
    let yaml: serde_norway::Value = serde_norway::from_str(frontmatter)
        .map_err(|e| format!("yaml parse error in {path}: {e}"))?;
    let mut fields = Map::new();
    if let serde_norway::Value::Mapping(mapping) = yaml {
        for (k, v) in mapping {
            let key = match k {
                serde_norway::Value::String(s) => s,
                other => match serde_json::to_value(&other) {
                    Ok(Value::String(s)) => s,
                    Ok(v) => v.to_string(),
                    Err(e) => return Err(format!("yaml parse error in {path}: key: {e}")),
                },
            };
            let value = serde_json::to_value(&v).map_err(|e| {
                format!("yaml parse error in {path}: `{key}` cannot be represented as JSON: {e}")
            })?;
            fields.insert(key, value);
        }
    }
    let name = match fields.remove("name") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(format!(
                "frontmatter missing required `name` field in {path}"
            ))
        }
    };
    let string = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let description = string(fields.remove("description")).map(|s| s.trim().to_string());
    let model = string(fields.remove("model"));
    let effort = string(fields.remove("effort"));
    let tools: Vec<String> = match fields.remove("tools") {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.trim().to_string()),
                _ => None,
            })
            .filter(|t| !t.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    let extras = if fields.is_empty() {
        Value::Null
    } else {
        Value::Object(fields)
    };
    let profile = json!({
        "system_prompt": body,
        "model": model,
        "effort": effort,
        "tools": tools,
        "description": description,
        "extras": extras,
        "version_hash": mse_blueprint::version::content_hash(body.as_bytes()),
    });
    let mut def = Map::new();
    def.insert("name".into(), Value::String(name));
    def.insert("kind".into(), Value::String(kind.as_str().into()));
    def.insert("spec".into(), Value::Null);
    def.insert("meta".into(), Value::Null);
    def.insert("profile".into(), profile);
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEWER: &str = "---\nname: code-reviewer\ndescription:  Reviews diffs for risky changes\nmodel: sonnet\neffort: medium\ntools: Read, Grep, mcp__tracker__get_issue\npermissionMode: plan\n---\nYou review the diff in {{ directive }} and reply PASS or BLOCKED.\n";

    #[test]
    fn spec_example_expands_exactly() {
        let def = agent_def_from_md(REVIEWER, "agents/reviewer.md", AgentKind::Operator).unwrap();
        assert_eq!(
            Value::Object(def),
            json!({"name":"code-reviewer","kind":"operator","spec":null,"meta":null,
             "profile":{"system_prompt":"You review the diff in {{ directive }} and reply PASS or BLOCKED.\n",
              "model":"sonnet","effort":"medium","tools":["Read","Grep","mcp__tracker__get_issue"],
              "description":"Reviews diffs for risky changes","extras":{"permissionMode":"plan"},
              "version_hash":"553d7185306f52448b3d8ff1f26183e5b94283a159ae67351ca53e439839872d"}})
        );
    }

    #[test]
    fn frontmatter_delimiters() {
        // CRLF, trailing whitespace on the closing line, no body.
        let (fm, body) = split_frontmatter("---\r\nname: a\r\n---  \r\n", "p").unwrap();
        assert_eq!((fm, body), ("name: a\r\n", ""));
        let (fm, body) = split_frontmatter("---\nname: a\n---", "p").unwrap();
        assert_eq!((fm, body), ("name: a\n", ""));
        // `----` and `---x` do not close it (§14.9).
        let (fm, body) = split_frontmatter("---\nname: a\n----\n---x\n---\nbody", "p").unwrap();
        assert_eq!((fm, body), ("name: a\n----\n---x\n", "body"));
        for bad in [
            "name: a\n---\n",
            "--- \nname: a\n---\n",
            "---\nname: a\n",
            "",
        ] {
            let e = split_frontmatter(bad, "x.md").unwrap_err();
            assert_eq!(e, "no frontmatter delimiter `---` in x.md", "{bad:?}");
        }
    }

    #[test]
    fn frontmatter_fields() {
        let md = "---\nname: n\ntools: [\" a \", 3, \"\", b]\nmodel: 4\ndescription: [x]\nextra_n: 5\n---\nhi";
        let def = agent_def_from_md(md, "p", AgentKind::Lua).unwrap();
        let p = &def["profile"];
        assert_eq!(def["kind"], "lua");
        assert_eq!(p["tools"], json!(["a", "b"]));
        assert_eq!(p["model"], Value::Null, "non-string known key dropped");
        assert_eq!(p["description"], Value::Null);
        assert_eq!(p["extras"], json!({"extra_n": 5}));
        assert_eq!(p["system_prompt"], "hi");
        // A non-mapping frontmatter counts as empty: no name.
        let e = agent_def_from_md("---\n- a\n---\n", "p.md", AgentKind::Lua).unwrap_err();
        assert_eq!(e, "frontmatter missing required `name` field in p.md");
        let e = agent_def_from_md("---\nname: [\n---\n", "p.md", AgentKind::Lua).unwrap_err();
        assert!(e.starts_with("yaml parse error in p.md: "), "{e}");
        let e = agent_def_from_md("---\nname: 3\n---\n", "p.md", AgentKind::Lua).unwrap_err();
        assert!(e.contains("`name`"), "{e}");
    }

    #[test]
    fn has_refs_finds_nested_references() {
        assert!(!has_refs(&json!({"a": [1, {"b": "$file"}]})));
        assert!(has_refs(&json!({"a": [1, {"$file": "x"}]})));
        assert!(!has_refs(&json!({"a": {"$file": "x", "y": 1}})));
        assert!(has_refs(&json!({"a": {"$agent_md": "x", "y": 1}})));
    }
}
