//! Flow IR and its async evaluator (`shared/spec/flow-ir.md`).
//!
//! * [`Node`] / [`Expr`] / [`JoinMode`]: the strict, typed wire form (§2). Parsing
//!   rejects unknown tags and fields and missing fields; serializing emits the tag
//!   first and the fields in spec order, so the form is stable for hashing.
//! * [`read_path`] / [`write_path`]: path semantics (§3).
//! * [`evaluate`]: runs a flow against a ctx with a host [`Dispatcher`] (§6, §7),
//!   bounded by configurable [`Limits`].
//!
//! # Design
//!
//! **No per-node clones.** A run owns one private ctx and mutates it in place. The
//! spec evaluates each node against a snapshot of the live ctx; with a private ctx
//! and strictly sequential nodes within a branch, evaluating directly against the
//! live `&Value` is observably identical. Expressions return `Cow<Value>` that
//! borrows path reads and literals, so a step copies only the value it hands to
//! the dispatcher, and a write walks only the addressed keys: per-step cost is
//! independent of ctx size and flow length. Only `try` (rollback snapshot) and
//! `fanout` (one branch-local copy per item, §6.7) clone the ctx.
//!
//! **Fanout join.** All branch futures are created up front and driven by one
//! hand-written join future in the evaluating task (no spawning). Each branch gets
//! its own [`std::task::Waker`] that records its index in a shared ready set and
//! wakes the parent task; a poll round drains that set and polls only the woken
//! branches, in ascending item order. The join decision (`all` / `any` / `race` /
//! `all_settled`) is applied immediately after each completion, before later
//! branches are polled, so among branches ready in the same round the lowest index
//! wins and, with dispatches that never suspend, execution equals sequential
//! evaluation in item order (§7.2 degenerate case). Fail-fast applies for every
//! size (project decision 5): when the join decides early, the remaining branch
//! futures are dropped, which drops their in-flight dispatch futures and so
//! cancels the work (§7.3).
//!
//! Values are `serde_json::Value` without `preserve_order`: object keys are kept
//! sorted and integers and floats stay distinct (§1). This crate enables
//! serde_json's `float_roundtrip` so that parsing then serializing a float is exact
//! (the default parser can be off by one ulp, which would change canonical forms).

mod error;
mod eval;
mod expr;
mod fanout;
mod ir;
mod path;
mod value;

pub use error::FlowError;
pub use eval::{evaluate, Dispatcher, Limits};
pub use expr::eval_expr;
pub use ir::{Expr, JoinMode, Node};
pub use path::{read_path, write_path};
pub use value::{truthy, values_equal};
