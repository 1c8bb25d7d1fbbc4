//! Task launch: compile, link the layers, attach a session and evaluate the flow,
//! each executed step becoming one engine task.

use crate::compile::{compile, CompileError, CompiledBlueprint};
use crate::factories::SpawnerFactories;
use crate::schema::{Blueprint, OperatorKind as BpOperatorKind};
use mse_engine::layers::builtin::ProjectAliasLayer;
use mse_engine::{
    AttachRequest, Attached, CapToken, DispatchOutcome, Engine, OperatorKind, Role, SessionId,
    SessionProfile, Spawner, SpawnerLayer, TaskSpec,
};
use mse_flow::{FlowError, Limits};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Launch limits and defaults.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// Fanout width, loop ceiling and fanout nesting.
    pub flow_limits: Limits,
    /// Runs evaluated at once; more are refused with [`LaunchError::Busy`].
    pub max_concurrent_runs: usize,
    /// TTL when neither the request nor the blueprint sets one.
    pub default_ttl: Duration,
    /// Upper bound on any run's TTL.
    pub max_ttl: Duration,
}

impl Default for LaunchConfig {
    fn default() -> Self {
        Self {
            flow_limits: Limits::default(),
            max_concurrent_runs: 1024,
            default_ttl: Duration::from_secs(1800),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// One run's caller-side settings (the `operator` object of `POST /v1/tasks`).
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub init_ctx: Value,
    pub ttl: Duration,
    /// Session label; `http-run` over HTTP.
    pub operator_id: String,
    /// Runtime global tier of the operator-kind cascade.
    pub operator_kind: Option<OperatorKind>,
    /// Runtime per-agent tier.
    pub per_agent_kinds: HashMap<String, OperatorKind>,
    pub spawn_hook_id: Option<String>,
    pub senior_bridge_id: Option<String>,
    pub operator_backend_id: Option<String>,
}

impl RunRequest {
    pub fn new(init_ctx: Value, ttl: Duration) -> Self {
        Self {
            init_ctx,
            ttl,
            operator_id: "http-run".into(),
            operator_kind: None,
            per_agent_kinds: HashMap::new(),
            spawn_hook_id: None,
            senior_bridge_id: None,
            operator_backend_id: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub final_ctx: Value,
    /// The run's engine session; `None` when the flow executed no step.
    pub session_id: Option<SessionId>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    #[error("compile: {0}")]
    Compile(#[from] CompileError),
    #[error("flow eval: {0}")]
    Flow(FlowError),
    #[error("run exceeded its TTL of {0:?}")]
    Timeout(Duration),
    #[error("too many concurrent runs (limit {0})")]
    Busy(usize),
}

/// Compiles and runs Blueprints on one engine.
#[derive(Clone)]
pub struct Launcher {
    engine: Engine,
    factories: Arc<SpawnerFactories>,
    cfg: LaunchConfig,
    runs: Arc<Semaphore>,
}

impl Launcher {
    pub fn new(engine: Engine, factories: SpawnerFactories, cfg: LaunchConfig) -> Self {
        let runs = Arc::new(Semaphore::new(cfg.max_concurrent_runs));
        Self {
            engine,
            factories: Arc::new(factories),
            cfg,
            runs,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &LaunchConfig {
        &self.cfg
    }

    pub fn factories(&self) -> &SpawnerFactories {
        &self.factories
    }

    pub fn compile(&self, bp: &Arc<Blueprint>) -> Result<CompiledBlueprint, CompileError> {
        compile(bp, &self.factories)
    }

    /// Compile and run.
    pub async fn run(
        &self,
        bp: &Arc<Blueprint>,
        req: RunRequest,
    ) -> Result<RunOutcome, LaunchError> {
        let compiled = self.compile(bp)?;
        self.run_compiled(&compiled, req).await
    }

    /// Run an already compiled Blueprint within the request's TTL.
    pub async fn run_compiled(
        &self,
        compiled: &CompiledBlueprint,
        req: RunRequest,
    ) -> Result<RunOutcome, LaunchError> {
        let _permit = self
            .runs
            .try_acquire()
            .map_err(|_| LaunchError::Busy(self.cfg.max_concurrent_runs))?;
        let bp = &compiled.blueprint;
        let ttl = req.ttl.min(self.cfg.max_ttl);
        let dispatcher = EngineDispatcher {
            engine: self.engine.clone(),
            session: OnceLock::new(),
            attach: AttachRequest::new(req.operator_id.clone(), Role::Operator, ttl)
                .profile(session_profile(bp, &req)),
            deadline: Instant::now() + ttl,
            spawner: self.link(compiled),
        };
        let eval = mse_flow::evaluate(&bp.flow, req.init_ctx, &dispatcher, &self.cfg.flow_limits);
        let result = tokio::time::timeout(ttl, eval).await;
        let session_id = dispatcher.end();
        match result {
            Ok(Ok(final_ctx)) => Ok(RunOutcome {
                final_ctx,
                session_id,
            }),
            Ok(Err(e)) => Err(LaunchError::Flow(e)),
            Err(_) => Err(LaunchError::Timeout(ttl)),
        }
    }

    /// Wrap the routing table with the engine's layers and the Blueprint's hints.
    fn link(&self, compiled: &CompiledBlueprint) -> Arc<dyn Spawner> {
        let bp = &compiled.blueprint;
        let table: Arc<dyn Spawner> = compiled.table.clone();
        let linked = self.engine.layers().link(table, &bp.spawner_hints.layers);
        match &bp.metadata.project_name_alias {
            Some(alias) => ProjectAliasLayer(alias.clone()).wrap(linked),
            None => linked,
        }
    }
}

pub fn engine_kind(k: BpOperatorKind) -> OperatorKind {
    match k {
        BpOperatorKind::MainAi => OperatorKind::MainAi,
        BpOperatorKind::Automate => OperatorKind::Automate,
        BpOperatorKind::Composite => OperatorKind::Composite,
    }
}

/// Blueprint tiers of the cascade plus the request's runtime tiers and ids.
fn session_profile(bp: &Blueprint, req: &RunRequest) -> SessionProfile {
    let mut bp_agent_kinds = HashMap::new();
    for agent in &bp.agents {
        let reference = agent.spec.get("operator_ref").and_then(Value::as_str);
        if let Some(kind) = reference.and_then(|r| bp.operator(r)).and_then(|o| o.kind) {
            bp_agent_kinds.insert(agent.name.clone(), engine_kind(kind));
        }
    }
    SessionProfile {
        operator_kind: req.operator_kind,
        runtime_agent_kinds: req.per_agent_kinds.clone(),
        bp_agent_kinds,
        bp_global_kind: bp.default_operator_kind.map(engine_kind),
        bridge_id: req.senior_bridge_id.clone(),
        hook_id: req.spawn_hook_id.clone(),
        operator_backend_id: req.operator_backend_id.clone(),
    }
}

/// The flow's dispatcher: one engine task per executed step.
///
/// The run's engine session is attached at the first step, so flows that never
/// dispatch (pure data shaping) mint no credentials at all.
struct EngineDispatcher {
    engine: Engine,
    session: OnceLock<Attached>,
    attach: AttachRequest,
    /// The run's end; the session token expires then.
    deadline: Instant,
    spawner: Arc<dyn Spawner>,
}

impl EngineDispatcher {
    fn token(&self) -> &Arc<CapToken> {
        &self
            .session
            .get_or_init(|| {
                let left = self.deadline.saturating_duration_since(Instant::now());
                // Token lifetimes are whole seconds: round up so a sub-second TTL still runs.
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                let mut req = self.attach.clone();
                req.ttl = Duration::from_secs(secs);
                self.engine.attach(req)
            })
            .token
    }

    /// End the session, if one was attached.
    fn end(&self) -> Option<SessionId> {
        let attached = self.session.get()?;
        self.engine.end_session(&attached.token.nonce);
        Some(attached.session_id.clone())
    }
}

/// A step input as the worker's directive: strings verbatim, else compact JSON.
pub fn directive_of(input: Value) -> String {
    match input {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl mse_flow::Dispatcher for EngineDispatcher {
    async fn dispatch(&self, step_ref: &str, input: Value) -> Result<Value, String> {
        let fail = |msg: String| format!("dispatcher error for ref '{step_ref}': {msg}");
        let spec = TaskSpec {
            agent: step_ref.to_string(),
            initial_directive: directive_of(input),
        };
        let tid = self
            .engine
            .start_task(self.token(), spec)
            .map_err(|e| fail(format!("start_task: {e}")))?;
        let span = tracing::debug_span!("step", step_ref, task_id = %tid);
        let dispatch = self
            .engine
            .dispatch_attempt(self.token(), &tid, self.spawner.as_ref());
        match tracing::Instrument::instrument(dispatch, span).await {
            Ok(DispatchOutcome::Pass(v)) => Ok(v),
            Ok(DispatchOutcome::Blocked(v)) => Err(fail(format!("blocked: {v}"))),
            Err(e) => Err(fail(format!("dispatch_attempt: {e}"))),
        }
    }
}
