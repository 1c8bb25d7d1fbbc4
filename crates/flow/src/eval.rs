//! The async evaluator (`flow-ir.md` §6, §7).
//!
//! One private ctx per run, mutated in place. Nodes evaluate their expressions
//! directly against `&Value` (equivalent to the spec's per-node snapshot, since
//! nodes of one branch run sequentially and nothing else writes this ctx). Only
//! `try` (rollback snapshot) and `fanout` (branch-local copies) clone the ctx.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::FlowError;
use crate::expr::eval;
use crate::ir::{Expr, Node};
use crate::path::{write_path, write_target};
use crate::value::truthy;

/// Host callback that executes `step` nodes (§7.1). Must tolerate concurrent
/// calls: fanout branches dispatch concurrently from one task.
///
/// Dropping a returned future before it completes means the evaluator abandoned
/// the branch (fanout `any`/`race` losers, `all` after a failure): implementations
/// should cancel the underlying work when that happens.
#[async_trait::async_trait]
pub trait Dispatcher: Send + Sync {
    /// Execute one step. The error is the dispatcher's display text; the evaluator
    /// wraps it once as [`FlowError::Dispatcher`] with the step's ref.
    async fn dispatch(&self, step_ref: &str, input: Value) -> Result<Value, String>;
}

/// Configurable evaluator limits (project decision 4; `flow-ir.md` §11.7, §11.9).
/// Exceeding one fails the run (catchable by `try`) with [`FlowError::Limit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of items a single fanout may fan out to. Checked after
    /// `items` is evaluated and before any branch ctx is built. Default 1024.
    pub max_fanout_width: usize,
    /// Ceiling on the iterations of a single loop execution, whatever its `max`.
    /// A loop whose `cond` is still truthy after this many iterations (and whose
    /// own `max` is larger) fails; reaching the loop's own `max` is never an
    /// error. Default 100 000.
    pub max_loop_iterations: u64,
    /// Maximum nesting of fanouts (a fanout inside a fanout body is depth 2).
    /// A fanout at a deeper level fails when it starts. Default 8.
    pub max_fanout_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_fanout_width: 1024,
            max_loop_iterations: 100_000,
            max_fanout_depth: 8,
        }
    }
}

/// Run `node` over `ctx` and return the final ctx (§6). A failed run returns only
/// the error; the partially updated ctx is dropped.
pub async fn evaluate(
    node: &Node,
    ctx: Value,
    dispatcher: &dyn Dispatcher,
    limits: &Limits,
) -> Result<Value, FlowError> {
    let mut ctx = ctx;
    let evaluator = Evaluator { dispatcher, limits };
    evaluator.run(node, &mut ctx, 0).await?;
    Ok(ctx)
}

/// Per-run evaluation state (borrowed dispatcher and limits).
pub(crate) struct Evaluator<'d> {
    pub(crate) dispatcher: &'d dyn Dispatcher,
    pub(crate) limits: &'d Limits,
}

impl Evaluator<'_> {
    /// Run one node against `ctx`; `fanout_depth` is the number of enclosing fanouts.
    pub(crate) fn run<'a>(
        &'a self,
        node: &'a Node,
        ctx: &'a mut Value,
        fanout_depth: usize,
    ) -> BoxFuture<'a, Result<(), FlowError>> {
        Box::pin(self.exec(node, ctx, fanout_depth))
    }

    async fn exec(&self, node: &Node, ctx: &mut Value, depth: usize) -> Result<(), FlowError> {
        match node {
            Node::Step {
                step_ref,
                input,
                out,
            } => self.step(step_ref, input, out, ctx).await,
            Node::Assign { at, value } => assign(at, value, ctx),
            Node::Seq { children } => {
                for child in children {
                    // Leaf nodes run inline; composite ones recurse through a boxed future.
                    match child {
                        Node::Step {
                            step_ref,
                            input,
                            out,
                        } => self.step(step_ref, input, out, ctx).await?,
                        Node::Assign { at, value } => assign(at, value, ctx)?,
                        _ => self.run(child, ctx, depth).await?,
                    }
                }
                Ok(())
            }
            Node::Branch {
                cond,
                then,
                otherwise,
            } => {
                let arm = match eval(cond, ctx)?.as_ref() {
                    Value::Bool(true) => then,
                    Value::Bool(false) => otherwise,
                    other => return Err(FlowError::NonBoolCond(other.clone())),
                };
                self.run(arm, ctx, depth).await
            }
            Node::Loop {
                counter,
                cond,
                body,
                max,
            } => self.run_loop(counter, cond, body, *max, ctx, depth).await,
            Node::Try {
                body,
                catch,
                err_at,
            } => {
                let snapshot = ctx.clone();
                let Err(err) = self.run(body, ctx, depth).await else {
                    return Ok(());
                };
                *ctx = snapshot;
                if let Some(target) = err_at {
                    write_target(ctx, target, Value::String(err.to_string()))?;
                }
                self.run(catch, ctx, depth).await
            }
            Node::Fanout {
                items,
                bind,
                body,
                join,
                out,
            } => self.fanout(items, bind, body, *join, out, ctx, depth).await,
        }
    }

    /// §6.1: evaluate `in`, dispatch, wrap a failure once, then check and write `out`.
    async fn step(
        &self,
        step_ref: &str,
        input: &Expr,
        out: &Expr,
        ctx: &mut Value,
    ) -> Result<(), FlowError> {
        let input = eval(input, ctx)?.into_owned();
        let result = self
            .dispatcher
            .dispatch(step_ref, input)
            .await
            .map_err(|msg| FlowError::Dispatcher {
                step_ref: step_ref.to_owned(),
                msg,
            })?;
        write_target(ctx, out, result)
    }

    /// §6.4, plus the `max_loop_iterations` ceiling.
    async fn run_loop(
        &self,
        counter: &Expr,
        cond: &Expr,
        body: &Node,
        max: u32,
        ctx: &mut Value,
        depth: usize,
    ) -> Result<(), FlowError> {
        let counter = counter.as_path().ok_or_else(FlowError::non_path_target)?;
        write_path(ctx, counter, Value::from(0u64))?;
        let max = u64::from(max);
        let mut n: u64 = 0;
        while n < max && truthy(eval(cond, ctx)?.as_ref()) {
            if n >= self.limits.max_loop_iterations {
                return Err(FlowError::Limit(format!(
                    "loop at counter {counter} exceeded the configured maximum of {} iterations \
                     (loop max is {max})",
                    self.limits.max_loop_iterations
                )));
            }
            self.run(body, ctx, depth).await?;
            n += 1;
            write_path(ctx, counter, Value::from(n))?;
        }
        Ok(())
    }
}

/// §6.6: evaluate `value`, check `at`, write.
fn assign(at: &Expr, value: &Expr, ctx: &mut Value) -> Result<(), FlowError> {
    let value = eval(value, ctx)?.into_owned();
    write_target(ctx, at, value)
}
