//! Subprocess workers: run a program per attempt (`blueprint.md` §9.3).
//!
//! # Contract
//!
//! `spec` = `{"program": <string>, "args": [<string>...], "use_stdin": <bool>,
//! "stream_mode": "ndjson_lines" | "sse_events" | "length_prefixed" | null}`.
//! The program is executed directly (no shell; looked up on the child's `PATH` when it
//! has no slash) with argv = `program`, `args`, and — only when `use_stdin` is false —
//! the directive as the last argument. When `use_stdin` is true the directive's bytes are
//! written to stdin, which is then closed; otherwise stdin is `/dev/null`.
//!
//! - **Plain mode** (no `stream_mode`): the trimmed stdout parsed as one JSON document is
//!   the value; otherwise `{"raw": <stdout, trailing whitespace trimmed>, "stderr":
//!   <stderr>}`. `ok` = exit status 0.
//! - **Streaming modes**: stdout carries output events (the engine's
//!   [`mse_engine::OutputEvent`] wire form), each forwarded live. The last `final` gives
//!   the value and `ok = final.ok && exit 0` (a corrected `final` is emitted when the
//!   exit status flips it); with no `final`, a synthetic one
//!   `{"raw":"","note":"streaming mode: no Final event received","exit_success":<bool>}`
//!   with `ok:false` is recorded.
//!
//! # Spec validation (`InvalidSpec` detail)
//!
//! Unlike the reference, wrong types are reported instead of silently coerced
//! (`blueprint.md` §14.6); valid blueprints behave exactly as in the reference. `null`
//! for `args`, `use_stdin` or `stream_mode` means "absent".
//!
//! # Environment policy
//!
//! The child does **not** inherit the server's environment (which may hold secrets).
//! It starts from an empty environment plus the variables named in
//! [`SubprocessConfig::env_passthrough`] that are set in the server (default `PATH`,
//! `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR`), plus `MSE_TOKEN_AGENT_ID`
//! (`worker-of-<task id>`), `MSE_TOKEN_NONCE` (the worker token's nonce; the signature is
//! never exported), `MSE_TASK_ID`, `MSE_ATTEMPT`, `MSE_CTX_AGENT` (agent name) and
//! `MSE_WORKER_HANDLE` (the `wh-…` bearer for self-fetch over HTTP).
//!
//! # Limits (all configurable, see [`SubprocessConfig`])
//!
//! - wall time (default 300 s): on expiry the process group is killed and the attempt
//!   fails with `subprocess time limit exceeded (<limit>)`;
//! - stdout size (default 16 MiB, counted in every mode): beyond it the group is killed
//!   and the attempt fails with `subprocess output limit exceeded (<n> bytes)`;
//! - stderr kept (default 1 MiB): stderr is always drained concurrently, the excess is
//!   discarded, so a chatty child never blocks.
//!
//! # Process lifetime
//!
//! Each child leads a new process group. When the attempt ends — normally, on a limit,
//! on an error, or because the spawner future was dropped (task cancelled, fanout branch
//! abandoned) — the whole group is sent `SIGKILL` and the child is reaped, so no
//! background process it started survives the attempt. A descendant that deliberately
//! leaves the group (`setsid`, `setpgid`) escapes this; the wall-time limit still ends
//! the attempt itself.
//!
//! Plain mode reads stdout and stderr to EOF and awaits the exit (like the reference).
//! Streaming modes await the exit once their framing stops, draining (and still
//! counting) any further stdout meanwhile so the child cannot block on a full pipe.
//! stdin is fed concurrently with reading stdout; a child that exits without reading it
//! (EPIPE) is not an error.

mod framing;
mod process;
mod run;

use mse_engine::Spawner;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Limits and environment policy shared by every subprocess route of a factory.
#[derive(Clone, Debug)]
pub struct SubprocessConfig {
    /// Wall-time limit of one attempt (default 300 s). On expiry the process group is
    /// killed and the attempt fails with `subprocess time limit exceeded (<limit>)`.
    pub time_limit: Duration,
    /// Maximum stdout bytes read (default 16 MiB). Beyond it the process group is
    /// killed and the attempt fails with `subprocess output limit exceeded (<n> bytes)`.
    pub max_output_bytes: usize,
    /// Maximum stderr bytes kept (default 1 MiB); the rest is drained and discarded.
    pub max_stderr_bytes: usize,
    /// Server environment variables the child inherits when set (default `PATH`,
    /// `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR`). Nothing else is inherited.
    pub env_passthrough: Vec<String>,
    /// Working directory of the child (default: the server's).
    pub working_dir: Option<PathBuf>,
    /// Extra variables set for every child (e.g. `MSE_BASE_URL`, the server's URL).
    pub extra_env: Vec<(String, String)>,
}

impl Default for SubprocessConfig {
    fn default() -> Self {
        Self {
            time_limit: Duration::from_secs(300),
            max_output_bytes: 16 * 1024 * 1024,
            max_stderr_bytes: 1024 * 1024,
            env_passthrough: ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"]
                .into_iter()
                .map(String::from)
                .collect(),
            working_dir: None,
            extra_env: Vec::new(),
        }
    }
}

/// How stdout is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamMode {
    Plain,
    NdjsonLines,
    SseEvents,
    LengthPrefixed,
}

/// A validated `spec`.
#[derive(Clone, Debug)]
pub(crate) struct ShellSpec {
    pub program: String,
    pub args: Vec<String>,
    pub use_stdin: bool,
    pub mode: StreamMode,
}

impl ShellSpec {
    fn parse(spec: &Value) -> Result<Self, String> {
        let field = |k: &str| spec.get(k).filter(|v| !v.is_null());
        let program = spec
            .get("program")
            .and_then(Value::as_str)
            .ok_or("shell spec: 'program' (string) required")?
            .to_string();
        let args = match field("args") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or("shell spec: 'args' must be an array of strings")?,
            Some(_) => return Err("shell spec: 'args' must be an array of strings".into()),
        };
        let use_stdin = match field("use_stdin") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or("shell spec: 'use_stdin' must be a boolean")?,
        };
        let mode = match field("stream_mode") {
            None => StreamMode::Plain,
            Some(Value::String(s)) => match s.as_str() {
                "ndjson_lines" => StreamMode::NdjsonLines,
                "sse_events" => StreamMode::SseEvents,
                "length_prefixed" => StreamMode::LengthPrefixed,
                other => return Err(format!("unknown stream_mode: {other}")),
            },
            Some(_) => return Err("shell spec: 'stream_mode' must be a string or null".into()),
        };
        Ok(Self {
            program,
            args,
            use_stdin,
            mode,
        })
    }
}

/// Builds subprocess routes from agent specs.
#[derive(Clone, Debug)]
pub struct SubprocessFactory {
    cfg: Arc<SubprocessConfig>,
}

impl SubprocessFactory {
    pub fn new(cfg: SubprocessConfig) -> Self {
        Self { cfg: Arc::new(cfg) }
    }

    /// The limits and environment policy of this factory.
    pub fn config(&self) -> &SubprocessConfig {
        &self.cfg
    }

    /// Validates the spec and returns the route; errors are the `InvalidSpec` detail.
    pub fn build(&self, agent: &str, spec: &Value) -> Result<Arc<dyn Spawner>, String> {
        let spec = ShellSpec::parse(spec)?;
        Ok(Arc::new(run::SubprocessSpawner {
            agent: agent.into(),
            spec,
            cfg: self.cfg.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_defaults_and_nulls() {
        let s = ShellSpec::parse(&json!({"program": "x"})).unwrap();
        assert_eq!(
            (s.args.len(), s.use_stdin, s.mode),
            (0, true, StreamMode::Plain)
        );
        let s = ShellSpec::parse(
            &json!({"program": "x", "args": null, "use_stdin": null, "stream_mode": null}),
        )
        .unwrap();
        assert_eq!(
            (s.args.len(), s.use_stdin, s.mode),
            (0, true, StreamMode::Plain)
        );
        let s = ShellSpec::parse(
            &json!({"program": "x", "args": ["a", "b"], "use_stdin": false, "stream_mode": "sse_events"}),
        )
        .unwrap();
        assert_eq!(s.args, ["a", "b"]);
        assert!(!s.use_stdin);
        assert_eq!(s.mode, StreamMode::SseEvents);
    }
}
