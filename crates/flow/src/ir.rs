//! Typed flow IR (`flow-ir.md` §2): [`Node`], [`Expr`] and [`JoinMode`].
//!
//! The serde representation is the normative wire form: internally tagged objects
//! (`"kind"` for nodes, `"op"` for expressions, lower snake_case), strict (unknown
//! fields are rejected), every field required except `try.err_at`. Serialization
//! emits the tag first and then the fields in the order of the §2 tables, with
//! `err_at` written as `null` when absent, so a parse → serialize round trip is
//! stable (the blueprint crate hashes this form).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A flow statement (`flow-ir.md` §2.1, semantics in §6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Dispatch one step: evaluate `input`, call the dispatcher with `step_ref`,
    /// write the result at `out` (which must be a `path` expression at run time).
    Step {
        /// The step reference handed to the dispatcher (JSON `ref`).
        #[serde(rename = "ref")]
        step_ref: String,
        /// The input expression (JSON `in`).
        #[serde(rename = "in")]
        input: Expr,
        /// The write target (JSON `out`).
        out: Expr,
    },
    /// Run `children` in order; stop at the first failure.
    Seq {
        /// The statements, possibly empty.
        children: Vec<Node>,
    },
    /// Run `then` if `cond` is exactly `true`, `else` if exactly `false`.
    Branch {
        /// Must evaluate to a boolean.
        cond: Expr,
        /// Taken on `true`.
        then: Box<Node>,
        /// Taken on `false` (JSON `else`).
        #[serde(rename = "else")]
        otherwise: Box<Node>,
    },
    /// Bounded loop with an integer counter written at `counter`.
    Loop {
        /// Write target of the iteration counter.
        counter: Expr,
        /// Checked (truthiness) before every iteration.
        cond: Expr,
        /// The loop body.
        body: Box<Node>,
        /// Maximum number of iterations (unsigned 32-bit).
        max: u32,
    },
    /// Run `body` once per element of `items`, concurrently, and join the results.
    Fanout {
        /// Must evaluate to an array.
        items: Expr,
        /// Where each item is written in its branch-local ctx.
        bind: Expr,
        /// Run once per branch.
        body: Box<Node>,
        /// How branch results are combined.
        join: JoinMode,
        /// Where the joined value is written in the parent ctx.
        out: Expr,
    },
    /// Run `body`; on error roll back, optionally record the error, run `catch`.
    Try {
        /// The protected statement.
        body: Box<Node>,
        /// Run after a rollback when `body` failed (JSON `catch`).
        catch: Box<Node>,
        /// Optional write target for the error text. Absent and `null` are equivalent;
        /// always serialized (as `null` when absent).
        #[serde(default)]
        err_at: Option<Expr>,
    },
    /// Evaluate `value` and write it at `at`.
    Assign {
        /// Write target.
        at: Expr,
        /// The value expression.
        value: Expr,
    },
}

/// A side-effect-free expression (`flow-ir.md` §2.2, semantics in §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expr {
    /// Read the value at a path.
    Path {
        /// The path string (e.g. `$.a.b`).
        at: String,
    },
    /// A literal JSON value, returned verbatim. `value` is required (may be `null`).
    Lit {
        /// The literal.
        value: Value,
    },
    /// Structural equality.
    Eq {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Structural inequality.
    Ne {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Numeric `<`.
    Lt {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Numeric `<=`.
    Le {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Numeric `>`.
    Gt {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Numeric `>=`.
    Ge {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Boolean negation of truthiness.
    Not {
        /// The operand.
        operand: Box<Expr>,
    },
    /// Short-circuit conjunction (empty → `true`).
    And {
        /// The operands, possibly empty.
        operands: Vec<Expr>,
    },
    /// Short-circuit disjunction (empty → `false`).
    Or {
        /// The operands, possibly empty.
        operands: Vec<Expr>,
    },
    /// Whether a read of `at` would succeed. Never fails.
    Exists {
        /// The path string.
        at: String,
    },
    /// Float addition.
    Add {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Float subtraction.
    Sub {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Float multiplication.
    Mul {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Float division (zero divisor is an error).
    Div {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Length of an array, string (Unicode scalars) or object.
    Len {
        /// The operand.
        of: Box<Expr>,
    },
    /// Membership of `needle` in the array `haystack`.
    In {
        /// The value looked for.
        needle: Box<Expr>,
        /// Must evaluate to an array.
        haystack: Box<Expr>,
    },
}

/// How a fanout combines its branch results (`flow-ir.md` §6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Every branch must succeed; array of results in item order.
    All,
    /// First branch to succeed wins.
    Any,
    /// First branch to finish wins, success or failure.
    Race,
    /// Wait for all; array of `fulfilled`/`rejected` records in item order.
    AllSettled,
}

impl Node {
    /// The `ref` of every `step` in the tree, in pre-order: `seq` children in
    /// order, `branch` then-arm before else-arm, `try` body before catch, `loop`
    /// and `fanout` bodies. Duplicates are kept.
    pub fn step_refs(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_step_refs(&mut out);
        out
    }

    fn collect_step_refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Node::Step { step_ref, .. } => out.push(step_ref),
            Node::Seq { children } => children.iter().for_each(|c| c.collect_step_refs(out)),
            Node::Branch {
                then, otherwise, ..
            } => {
                then.collect_step_refs(out);
                otherwise.collect_step_refs(out);
            }
            Node::Loop { body, .. } | Node::Fanout { body, .. } => body.collect_step_refs(out),
            Node::Try { body, catch, .. } => {
                body.collect_step_refs(out);
                catch.collect_step_refs(out);
            }
            Node::Assign { .. } => {}
        }
    }
}

impl Expr {
    /// The path string if this is a `path` expression.
    pub fn as_path(&self) -> Option<&str> {
        match self {
            Expr::Path { at } => Some(at),
            _ => None,
        }
    }
}
