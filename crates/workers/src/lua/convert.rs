//! JSON ↔ Lua marshalling (blueprint spec §9.2 steps 3–5).
//!
//! - JSON `null` ↔ the null sentinel: a light userdata holding a null pointer
//!   ([`mlua::Value::NULL`]), distinct from `nil` so `_CTX.x == nil` is false for a
//!   present null.
//! - JSON arrays → sequence tables carrying the VM's array metatable (the "array
//!   mark"), so `[]` round-trips as `[]`.
//! - Integers stay integers, floats stay floats; NaN/±inf become `null`.

use mlua::{Lua, Table, Value as LuaValue};
use serde_json::{Map, Number, Value};
use std::ffi::c_void;
use std::fmt::Write as _;

/// Deepest nesting converted in either direction (cycles are reported separately).
pub(super) const MAX_DEPTH: usize = 256;

/// JSON → Lua. Arrays get `array_mt`; objects become plain tables.
pub(super) fn json_to_lua(lua: &Lua, v: &Value, array_mt: &Table) -> mlua::Result<LuaValue> {
    to_lua(lua, v, array_mt, 0)
}

fn to_lua(lua: &Lua, v: &Value, array_mt: &Table, depth: usize) -> mlua::Result<LuaValue> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::RuntimeError(format!(
            "json → lua: nesting deeper than {MAX_DEPTH}"
        )));
    }
    Ok(match v {
        Value::Null => LuaValue::NULL,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            // u64 above i64::MAX and real floats
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item, array_mt, depth + 1)?)?;
            }
            t.set_metatable(Some(array_mt.clone()));
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item, array_mt, depth + 1)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// Lua → JSON. The error is the detail of `lua → json [<label>]: <detail>`.
pub(super) fn lua_to_json(v: &LuaValue, array_mt: &Table) -> Result<Value, String> {
    let mut walk = Walk {
        array_mt: array_mt.to_pointer(),
        path: Vec::new(),
    };
    walk.value(v, &mut String::from("$"))
}

struct Walk {
    array_mt: *const c_void,
    /// Tables on the current path (cycle detection).
    path: Vec<*const c_void>,
}

impl Walk {
    fn value(&mut self, v: &LuaValue, at: &mut String) -> Result<Value, String> {
        Ok(match v {
            LuaValue::Nil => Value::Null,
            LuaValue::Boolean(b) => Value::Bool(*b),
            LuaValue::Integer(i) => Value::from(*i),
            LuaValue::Number(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            LuaValue::String(s) => match s.to_str() {
                Ok(s) => Value::String(s.to_string()),
                Err(_) => return Err(format!("{at}: string is not valid UTF-8")),
            },
            LuaValue::LightUserData(ud) if ud.0.is_null() => Value::Null,
            LuaValue::Table(t) => self.table(t, at)?,
            other => {
                return Err(format!(
                    "{at}: cannot convert a Lua {} to JSON",
                    other.type_name()
                ))
            }
        })
    }

    fn table(&mut self, t: &Table, at: &mut String) -> Result<Value, String> {
        let ptr = t.to_pointer();
        if self.path.contains(&ptr) {
            return Err(format!("{at}: table contains itself (cycle)"));
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(format!("{at}: tables nested deeper than {MAX_DEPTH}"));
        }
        self.path.push(ptr);
        let marked = t
            .metatable()
            .is_some_and(|mt| mt.to_pointer() == self.array_mt);
        let len = t.raw_len();
        let out = if len > 0 || marked {
            self.array(t, len, at)
        } else {
            self.object(t, at)
        };
        self.path.pop();
        out
    }

    /// Elements `1..#t`; other keys dropped; holes → `null`.
    fn array(&mut self, t: &Table, len: usize, at: &mut String) -> Result<Value, String> {
        let mut out = Vec::with_capacity(len);
        let base = at.len();
        for i in 1..=len {
            let item: LuaValue = t.raw_get(i).map_err(|e| format!("{at}: {e}"))?;
            let _ = write!(at, "[{}]", i - 1);
            out.push(self.value(&item, at)?);
            at.truncate(base);
        }
        Ok(Value::Array(out))
    }

    /// String keys only; an empty unmarked table is `{}`.
    fn object(&mut self, t: &Table, at: &mut String) -> Result<Value, String> {
        let mut out = Map::new();
        let base = at.len();
        for pair in t.pairs::<LuaValue, LuaValue>() {
            let (k, item) = pair.map_err(|e| format!("{at}: {e}"))?;
            let key = match &k {
                LuaValue::String(s) => s
                    .to_str()
                    .map_err(|_| format!("{at}: table key is not valid UTF-8"))?
                    .to_string(),
                other => {
                    return Err(format!(
                        "{at}: table key must be a string, got {} ({})",
                        other.type_name(),
                        key_repr(other)
                    ))
                }
            };
            at.push('.');
            at.push_str(&key);
            let item = self.value(&item, at)?;
            at.truncate(base);
            out.insert(key, item);
        }
        Ok(Value::Object(out))
    }
}

fn key_repr(v: &LuaValue) -> String {
    match v {
        LuaValue::Integer(i) => i.to_string(),
        LuaValue::Number(f) => f.to_string(),
        LuaValue::Boolean(b) => b.to_string(),
        other => other.type_name().to_string(),
    }
}

/// §9.2 step 5: an object with a `value` or `ok` key is an envelope; anything else
/// is the value with `ok = true`.
pub fn shape_result(v: Value) -> (Value, bool) {
    match v {
        Value::Object(mut m) if m.contains_key("value") || m.contains_key("ok") => {
            let ok = m.get("ok").and_then(Value::as_bool).unwrap_or(true);
            match m.remove("value") {
                Some(value) => (value, ok),
                None => (Value::Object(m), ok),
            }
        }
        other => (other, true),
    }
}
