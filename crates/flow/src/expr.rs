//! Expression evaluation (`flow-ir.md` §5).
//!
//! Expressions are evaluated directly against the live ctx by reference. Path
//! reads and literals are borrowed ([`Cow::Borrowed`]); only computed values are
//! allocated, and callers copy (`into_owned`) only the value they keep.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::FlowError;
use crate::ir::Expr;
use crate::path::read_path;
use crate::value::{debug, truthy, values_equal};

/// Evaluate `expr` against `ctx`, returning an owned value.
pub fn eval_expr(expr: &Expr, ctx: &Value) -> Result<Value, FlowError> {
    eval(expr, ctx).map(Cow::into_owned)
}

/// Evaluate `expr` against `ctx`, borrowing from `ctx` or `expr` where possible.
pub(crate) fn eval<'a>(expr: &'a Expr, ctx: &'a Value) -> Result<Cow<'a, Value>, FlowError> {
    Ok(match expr {
        Expr::Path { at } => Cow::Borrowed(read_path(ctx, at)?),
        Expr::Lit { value } => Cow::Borrowed(value),
        Expr::Eq { lhs, rhs } => {
            let (l, r) = (eval(lhs, ctx)?, eval(rhs, ctx)?);
            Cow::Owned(Value::Bool(values_equal(&l, &r)))
        }
        Expr::Ne { lhs, rhs } => {
            let (l, r) = (eval(lhs, ctx)?, eval(rhs, ctx)?);
            Cow::Owned(Value::Bool(!values_equal(&l, &r)))
        }
        Expr::Lt { lhs, rhs } => compare(lhs, rhs, ctx, |a, b| a < b)?,
        Expr::Le { lhs, rhs } => compare(lhs, rhs, ctx, |a, b| a <= b)?,
        Expr::Gt { lhs, rhs } => compare(lhs, rhs, ctx, |a, b| a > b)?,
        Expr::Ge { lhs, rhs } => compare(lhs, rhs, ctx, |a, b| a >= b)?,
        Expr::Not { operand } => Cow::Owned(Value::Bool(!truthy(eval(operand, ctx)?.as_ref()))),
        Expr::And { operands } => {
            for op in operands {
                if !truthy(eval(op, ctx)?.as_ref()) {
                    return Ok(Cow::Owned(Value::Bool(false)));
                }
            }
            Cow::Owned(Value::Bool(true))
        }
        Expr::Or { operands } => {
            for op in operands {
                if truthy(eval(op, ctx)?.as_ref()) {
                    return Ok(Cow::Owned(Value::Bool(true)));
                }
            }
            Cow::Owned(Value::Bool(false))
        }
        Expr::Exists { at } => Cow::Owned(Value::Bool(read_path(ctx, at).is_ok())),
        Expr::Add { lhs, rhs } => arith("expr.add", lhs, rhs, ctx, |a, b| a + b)?,
        Expr::Sub { lhs, rhs } => arith("expr.sub", lhs, rhs, ctx, |a, b| a - b)?,
        Expr::Mul { lhs, rhs } => arith("expr.mul", lhs, rhs, ctx, |a, b| a * b)?,
        Expr::Div { lhs, rhs } => arith("expr.div", lhs, rhs, ctx, |a, b| a / b)?,
        Expr::Len { of } => {
            let v = eval(of, ctx)?;
            let n = match &*v {
                Value::Array(a) => a.len(),
                Value::String(s) => s.chars().count(),
                Value::Object(o) => o.len(),
                other => {
                    return Err(FlowError::internal(
                        "expr.len",
                        format!("len: unsupported type {}", debug(other)),
                    ))
                }
            };
            Cow::Owned(Value::from(n as u64))
        }
        Expr::In { needle, haystack } => {
            let (n, h) = (eval(needle, ctx)?, eval(haystack, ctx)?);
            match &*h {
                Value::Array(items) => {
                    Cow::Owned(Value::Bool(items.iter().any(|x| values_equal(&n, x))))
                }
                other => {
                    return Err(FlowError::internal(
                        "expr.in",
                        format!("in: haystack must be array, got {}", debug(other)),
                    ))
                }
            }
        }
    })
}

/// A JSON number as f64, or the `expected number` error for `op_ref`.
fn number(v: &Value, op_ref: &str) -> Result<f64, FlowError> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| {
            FlowError::internal(op_ref, format!("expected number, got {}", debug(v)))
        }),
        _ => Err(FlowError::internal(
            op_ref,
            format!("expected number, got {}", debug(v)),
        )),
    }
}

fn compare<'a>(
    lhs: &'a Expr,
    rhs: &'a Expr,
    ctx: &'a Value,
    f: fn(f64, f64) -> bool,
) -> Result<Cow<'a, Value>, FlowError> {
    let (l, r) = (eval(lhs, ctx)?, eval(rhs, ctx)?);
    let (a, b) = (number(&l, "expr.cmp")?, number(&r, "expr.cmp")?);
    Ok(Cow::Owned(Value::Bool(f(a, b))))
}

fn arith<'a>(
    op_ref: &str,
    lhs: &'a Expr,
    rhs: &'a Expr,
    ctx: &'a Value,
    f: fn(f64, f64) -> f64,
) -> Result<Cow<'a, Value>, FlowError> {
    let (l, r) = (eval(lhs, ctx)?, eval(rhs, ctx)?);
    let (a, b) = (number(&l, op_ref)?, number(&r, op_ref)?);
    if op_ref == "expr.div" && b == 0.0 {
        return Err(FlowError::internal(
            op_ref,
            "arithmetic failure (e.g. division by zero)".to_owned(),
        ));
    }
    let result = f(a, b);
    serde_json::Number::from_f64(result)
        .filter(|_| result.is_finite())
        .map(|n| Cow::Owned(Value::Number(n)))
        .ok_or_else(|| {
            FlowError::internal(op_ref, format!("result not f64-representable: {result}"))
        })
}
