//! Runtime errors of the flow evaluator (`flow-ir.md` §8).

use serde_json::Value;

/// Every runtime error of a flow run. The `Display` texts are normative: they are
/// what `try.err_at` stores and what the HTTP layer reports.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FlowError {
    /// A `path` read of a missing location; carries the path as written.
    #[error("path not found: {0}")]
    PathNotFound(String),
    /// A malformed path string or a non-`path` write target; carries the detail.
    #[error("invalid path syntax: {0}")]
    InvalidPath(String),
    /// A `branch` condition that is not exactly `true`/`false`; carries the value.
    #[error("branch cond must be boolean, got: {0}")]
    NonBoolCond(Value),
    /// A failed step (ref = the step's ref, msg = the dispatcher's error text), an
    /// expression failure (ref = `expr.<op>`) or a fanout `items` type error
    /// (ref = `fanout.items`).
    #[error("dispatcher error for ref '{step_ref}': {msg}")]
    Dispatcher {
        /// The step ref or pseudo-ref (`expr.add`, `fanout.items`, ...).
        step_ref: String,
        /// The message.
        msg: String,
    },
    /// A configured evaluator limit ([`crate::Limits`]) was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
}

impl FlowError {
    /// `InvalidPath` for a non-`path` write target (`step.out`, `assign.at`,
    /// `loop.counter`, `try.err_at`, `fanout.out`).
    pub(crate) fn non_path_target() -> Self {
        FlowError::InvalidPath("expected Path expr for write target".to_owned())
    }

    /// `InvalidPath` for a non-`path` `fanout.bind` (the reference's wording).
    pub(crate) fn non_path_bind() -> Self {
        FlowError::InvalidPath("Step.out must be a Path expr".to_owned())
    }

    /// A `DispatcherError` raised by the evaluator itself (expressions, fanout items).
    pub(crate) fn internal(step_ref: &str, msg: String) -> Self {
        FlowError::Dispatcher {
            step_ref: step_ref.to_owned(),
            msg,
        }
    }
}
