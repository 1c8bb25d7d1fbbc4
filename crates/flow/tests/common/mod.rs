//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use mse_flow::{evaluate, Dispatcher, Expr, FlowError, Limits, Node};
use serde_json::{json, Value};

/// Parse a node, panicking with the serde message on failure.
pub fn node(v: Value) -> Node {
    serde_json::from_value(v).expect("node parses")
}

/// Parse an expression.
pub fn expr(v: Value) -> Expr {
    serde_json::from_value(v).expect("expr parses")
}

/// `{"op":"path","at":at}`
pub fn p(at: &str) -> Value {
    json!({"op": "path", "at": at})
}

/// `{"op":"lit","value":v}`
pub fn lit(v: Value) -> Value {
    json!({"op": "lit", "value": v})
}

/// `assign at <- value`
pub fn assign(at: &str, value: Value) -> Value {
    json!({"kind": "assign", "at": p(at), "value": value})
}

/// `step ref(in) -> out`
pub fn step(r: &str, input: Value, out: &str) -> Value {
    json!({"kind": "step", "ref": r, "in": input, "out": p(out)})
}

/// `seq [...]`
pub fn seq(children: Vec<Value>) -> Value {
    json!({"kind": "seq", "children": children})
}

/// Dispatcher that fails every call (flows without steps).
pub struct NoSteps;

#[async_trait::async_trait]
impl Dispatcher for NoSteps {
    async fn dispatch(&self, step_ref: &str, _input: Value) -> Result<Value, String> {
        Err(format!("no dispatcher for {step_ref}"))
    }
}

/// Synchronous dispatcher from a closure; records every call.
pub struct FnDispatcher<F> {
    f: F,
    pub calls: Mutex<Vec<(String, Value)>>,
    pub count: AtomicUsize,
}

impl<F> FnDispatcher<F>
where
    F: Fn(&str, &Value) -> Result<Value, String> + Send + Sync,
{
    pub fn new(f: F) -> Self {
        FnDispatcher {
            f,
            calls: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
        }
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl<F> Dispatcher for FnDispatcher<F>
where
    F: Fn(&str, &Value) -> Result<Value, String> + Send + Sync,
{
    async fn dispatch(&self, step_ref: &str, input: Value) -> Result<Value, String> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.calls
            .lock()
            .unwrap()
            .push((step_ref.to_owned(), input.clone()));
        (self.f)(step_ref, &input)
    }
}

/// Evaluate synchronously (dispatchers here never suspend on real I/O).
pub fn run_with(flow: Value, ctx: Value, d: &dyn Dispatcher) -> Result<Value, FlowError> {
    let n = node(flow);
    futures::executor::block_on(evaluate(&n, ctx, d, &Limits::default()))
}

/// Evaluate with limits.
pub fn run_limits(
    flow: Value,
    ctx: Value,
    d: &dyn Dispatcher,
    limits: &Limits,
) -> Result<Value, FlowError> {
    let n = node(flow);
    futures::executor::block_on(evaluate(&n, ctx, d, limits))
}

/// Evaluate a flow without steps.
pub fn run(flow: Value, ctx: Value) -> Result<Value, FlowError> {
    run_with(flow, ctx, &NoSteps)
}

/// Evaluate an expression JSON against a ctx.
pub fn ev(e: Value, ctx: &Value) -> Result<Value, FlowError> {
    mse_flow::eval_expr(&expr(e), ctx)
}

/// Display text of an error result.
pub fn err_text<T: std::fmt::Debug>(r: Result<T, FlowError>) -> String {
    r.expect_err("expected an error").to_string()
}

/// Strict equality: same JSON text (keys sorted, integers vs floats distinct).
pub fn assert_json(actual: &Value, expected: &Value) {
    assert_eq!(
        serde_json::to_string(actual).unwrap(),
        serde_json::to_string(expected).unwrap()
    );
}

/// Dispatcher that fails for ref `fail` and echoes `{"ref", "got"}` otherwise.
pub fn echo() -> FnDispatcher<impl Fn(&str, &Value) -> Result<Value, String> + Send + Sync> {
    FnDispatcher::new(|r: &str, input: &Value| {
        if r == "fail" {
            Err(format!("boom {input}"))
        } else {
            Ok(json!({"ref": r, "got": input}))
        }
    })
}

/// The no-op node `{"kind":"seq","children":[]}`.
pub fn noop() -> Value {
    seq(vec![])
}

/// `branch cond then $.r <- "then" else $.r <- "else"`.
pub fn branch(cond: Value) -> Value {
    json!({"kind": "branch", "cond": cond,
           "then": assign("$.r", lit(json!("then"))),
           "else": assign("$.r", lit(json!("else")))})
}

/// `loop` node.
pub fn looped(counter: Value, cond: Value, body: Value, max: u32) -> Value {
    json!({"kind": "loop", "counter": counter, "cond": cond, "body": body, "max": max})
}
