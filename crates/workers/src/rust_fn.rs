//! Rust function workers, registered by `fn_id`.

use mse_engine::{SpawnCtx, SpawnError, Spawner};
use parking_lot::RwLock;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What a Rust worker function receives. Progress events go through `ctx.emit`.
pub struct Invocation<'a> {
    pub ctx: &'a SpawnCtx,
}

impl Invocation<'_> {
    pub fn agent(&self) -> &str {
        &self.ctx.agent
    }
    pub fn prompt(&self) -> &str {
        &self.ctx.prompt
    }
}

/// A worker function: returns `(value, ok)` or an error message.
#[async_trait::async_trait]
pub trait RustFn: Send + Sync + 'static {
    async fn call(&self, inv: Invocation<'_>) -> Result<(Value, bool), String>;
}

/// Adapter for plain synchronous closures.
pub struct SyncFn<F>(pub F);

#[async_trait::async_trait]
impl<F> RustFn for SyncFn<F>
where
    F: Fn(&Invocation<'_>) -> Result<(Value, bool), String> + Send + Sync + 'static,
{
    async fn call(&self, inv: Invocation<'_>) -> Result<(Value, bool), String> {
        (self.0)(&inv)
    }
}

/// The baseline `identity` function: echoes the directive.
pub fn identity(inv: &Invocation<'_>) -> Result<(Value, bool), String> {
    Ok((
        json!({"by": "baseline-identity", "agent": inv.agent(), "echoed": inv.prompt()}),
        true,
    ))
}

/// Functions by `fn_id`. Registration happens before blueprints are compiled.
#[derive(Clone)]
pub struct RustFnRegistry {
    fns: Arc<RwLock<HashMap<String, Arc<dyn RustFn>>>>,
}

impl Default for RustFnRegistry {
    /// A registry holding the baseline `identity`.
    fn default() -> Self {
        let r = Self {
            fns: Arc::new(RwLock::new(HashMap::new())),
        };
        r.register("identity", Arc::new(SyncFn(identity)));
        r
    }
}

impl RustFnRegistry {
    pub fn register(&self, fn_id: &str, f: Arc<dyn RustFn>) {
        self.fns.write().insert(fn_id.to_string(), f);
    }

    pub fn get(&self, fn_id: &str) -> Option<Arc<dyn RustFn>> {
        self.fns.read().get(fn_id).cloned()
    }

    /// Validate `{"fn_id": <string>}` and build the route.
    pub fn build(&self, spec: &Value) -> Result<Arc<dyn Spawner>, String> {
        let fn_id = spec
            .get("fn_id")
            .and_then(Value::as_str)
            .ok_or("rust_fn spec: 'fn_id' (string) required")?;
        let f = self
            .get(fn_id)
            .ok_or_else(|| format!("fn_id '{fn_id}' not registered in factory"))?;
        Ok(Arc::new(RustFnSpawner { f }))
    }
}

struct RustFnSpawner {
    f: Arc<dyn RustFn>,
}

#[async_trait::async_trait]
impl Spawner for RustFnSpawner {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        let (value, ok) = self
            .f
            .call(Invocation { ctx })
            .await
            .map_err(SpawnError::worker_fn)?;
        ctx.finish(value, ok);
        Ok(())
    }
}
