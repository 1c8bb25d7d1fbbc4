//! JSON value rules of `flow-ir.md` §1, §4 and §5: structural equality with the
//! integer/float split, truthiness, and the debug rendering used in error texts.

use serde_json::{Number, Value};

/// Structural equality (`eq`, `in`): same JSON type and equal content, recursively;
/// object key order is irrelevant; an integer never equals a float; `-0.0 == 0.0`;
/// an `i64` and a `u64` holding the same integer are equal.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => false,
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    match (as_integer(x), as_integer(y)) {
        (Some(i), Some(j)) => i == j,
        (None, None) => x.as_f64() == y.as_f64(),
        _ => false,
    }
}

/// The integer value of an integral JSON number (`None` for floats).
fn as_integer(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        Some(i128::from(i))
    } else {
        n.as_u64().map(i128::from)
    }
}

/// Truthiness (§4): `null` and `false` are falsy, everything else is truthy.
pub fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// The reference's debug rendering of a value used in error texts
/// (`Null`, `Bool(true)`, `Number(1)`, `String("abc")`, `Array [Number(1)]`,
/// `Object {"a": Number(1)}`): this is serde_json's `Debug` output.
pub fn debug(v: &Value) -> String {
    format!("{v:?}")
}
