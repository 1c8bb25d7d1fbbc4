//! Paths (`flow-ir.md` §3): `$`-rooted, `.`-separated object keys.
//!
//! Reads keep empty segments as keys; writes drop them and clobber non-object
//! intermediates. Reads borrow from the ctx so callers clone only what they need.

use serde_json::{Map, Value};

use crate::error::FlowError;
use crate::ir::Expr;

/// Strip the `$.`/`$` prefix, or fail with `InvalidPath`.
fn remainder(path: &str) -> Result<&str, FlowError> {
    if let Some(rest) = path.strip_prefix("$.") {
        Ok(rest)
    } else if let Some(rest) = path.strip_prefix('$') {
        Ok(rest)
    } else {
        Err(FlowError::InvalidPath(format!(
            "path must start with $ or $.: {path}"
        )))
    }
}

/// Read the value at `path` (§3.2) without copying it.
///
/// Empty remainder → the whole ctx. Every segment (including empty ones) must be
/// a key of an object, else `PathNotFound(path)`.
pub fn read_path<'a>(ctx: &'a Value, path: &str) -> Result<&'a Value, FlowError> {
    let rest = remainder(path)?;
    if rest.is_empty() {
        return Ok(ctx);
    }
    let mut cur = ctx;
    for seg in rest.split('.') {
        cur = match cur {
            Value::Object(map) => map.get(seg),
            _ => None,
        }
        .ok_or_else(|| FlowError::PathNotFound(path.to_owned()))?;
    }
    Ok(cur)
}

/// Whether `path` is a valid path with no non-empty segment, i.e. a write to it
/// replaces the whole ctx.
pub(crate) fn is_root_write(path: &str) -> bool {
    remainder(path).is_ok_and(|rest| rest.split('.').all(str::is_empty))
}

/// Write `value` at `path` (§3.3). Empty segments are dropped; zero segments
/// replace the whole ctx; non-object values on the way (root included) are
/// replaced by `{}`. Fails only for a path not starting with `$`.
pub fn write_path(ctx: &mut Value, path: &str, value: Value) -> Result<(), FlowError> {
    let rest = remainder(path)?;
    let mut segs = rest.split('.').filter(|s| !s.is_empty()).peekable();
    let mut cur = ctx;
    while let Some(seg) = segs.next() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else {
            unreachable!("just made an object")
        };
        if segs.peek().is_none() {
            map.insert(seg.to_owned(), value);
            return Ok(());
        }
        // Look up first so an existing key does not allocate a String.
        if !map.contains_key(seg) {
            map.insert(seg.to_owned(), Value::Object(Map::new()));
        }
        cur = map.get_mut(seg).expect("present");
    }
    *cur = value;
    Ok(())
}

/// Write through a write-target expression: it must be `path`, else
/// `InvalidPath("expected Path expr for write target")`.
pub(crate) fn write_target(ctx: &mut Value, target: &Expr, value: Value) -> Result<(), FlowError> {
    let path = target.as_path().ok_or_else(FlowError::non_path_target)?;
    write_path(ctx, path, value)
}
