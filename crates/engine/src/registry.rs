//! Registries of operator-side collaborators, keyed by id: senior bridges, spawn
//! hooks and operator backends. An operator session registers itself under its sid
//! (and its role aliases); a task request names the ids it wants resolved.

use crate::ids::TaskId;
use crate::spawn::SpawnCtx;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// Operator kind of an agent in a run; gates the `main_ai` middleware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    MainAi,
    #[default]
    Automate,
    Composite,
}

impl OperatorKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "main_ai" => Some(Self::MainAi),
            "automate" => Some(Self::Automate),
            "composite" => Some(Self::Composite),
            _ => None,
        }
    }
}

/// Answers senior escalations (`ask` over the operator socket).
#[async_trait::async_trait]
pub trait SeniorBridge: Send + Sync + 'static {
    async fn ask(&self, task: &TaskId, question: Value) -> Result<Value, String>;
}

/// Called around spawns by the `main_ai` layer.
#[async_trait::async_trait]
pub trait SpawnHook: Send + Sync + 'static {
    /// May veto the spawn with a reason.
    async fn before(&self, ctx: &SpawnCtx) -> Result<(), String>;
    /// Told the outcome (last final value, `null`, or the worker error text).
    async fn after(&self, ctx: &SpawnCtx, result: &Value);
}

/// Executes a whole spawn on behalf of an agent (an external operator).
#[async_trait::async_trait]
pub trait OperatorBackend: Send + Sync + 'static {
    /// Returns `(value, ok)`; the worker token is `ctx.worker_token`.
    async fn execute(
        &self,
        ctx: &SpawnCtx,
        system: Option<&str>,
        prompt: &str,
    ) -> Result<(Value, bool), String>;
}

/// The operator side resolved for one attempt.
#[derive(Clone, Default)]
pub struct OperatorInfo {
    pub kind: OperatorKind,
    /// Caller label (`operator_id` of the session, or `default-automate`).
    pub id: Arc<str>,
    pub bridge: Option<Arc<dyn SeniorBridge>>,
    pub hook: Option<Arc<dyn SpawnHook>>,
    pub backend: Option<Arc<dyn OperatorBackend>>,
}

impl fmt::Debug for OperatorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorInfo")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("bridge", &self.bridge.is_some())
            .field("hook", &self.hook.is_some())
            .field("backend", &self.backend.is_some())
            .finish()
    }
}

/// Id-keyed registries. Lookups are O(1) and never block on an await.
#[derive(Default)]
pub struct Registries {
    bridges: DashMap<String, Arc<dyn SeniorBridge>>,
    hooks: DashMap<String, Arc<dyn SpawnHook>>,
    backends: DashMap<String, Arc<dyn OperatorBackend>>,
}

impl Registries {
    pub fn register_senior_bridge(&self, id: &str, b: Arc<dyn SeniorBridge>) {
        self.bridges.insert(id.to_string(), b);
    }
    pub fn register_spawn_hook(&self, id: &str, h: Arc<dyn SpawnHook>) {
        self.hooks.insert(id.to_string(), h);
    }
    pub fn register_operator_backend(&self, id: &str, o: Arc<dyn OperatorBackend>) {
        self.backends.insert(id.to_string(), o);
    }
    pub fn unregister_senior_bridge(&self, id: &str) {
        self.bridges.remove(id);
    }
    pub fn unregister_spawn_hook(&self, id: &str) {
        self.hooks.remove(id);
    }
    pub fn unregister_operator_backend(&self, id: &str) {
        self.backends.remove(id);
    }
    pub fn senior_bridge(&self, id: &str) -> Option<Arc<dyn SeniorBridge>> {
        self.bridges.get(id).map(|e| e.value().clone())
    }
    pub fn spawn_hook(&self, id: &str) -> Option<Arc<dyn SpawnHook>> {
        self.hooks.get(id).map(|e| e.value().clone())
    }
    pub fn operator_backend(&self, id: &str) -> Option<Arc<dyn OperatorBackend>> {
        self.backends.get(id).map(|e| e.value().clone())
    }
    /// Ids with a registered operator backend, sorted.
    pub fn operator_backend_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.backends.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }
}
