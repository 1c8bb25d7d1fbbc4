//! Shared harness for the Lua worker tests (included with `#[path]` by each
//! `lua_*.rs` test file): a real engine, an operator session, and a factory.
#![allow(dead_code)]

use mse_engine::{
    AttachRequest, CapToken, DispatchOutcome, Engine, EngineConfig, EngineError, Role, Spawner,
    TaskId, TaskSpec,
};
use mse_workers::lua::{LuaConfig, LuaFactory};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub struct Harness {
    pub engine: Engine,
    pub token: Arc<CapToken>,
    pub factory: LuaFactory,
}

/// What a dispatch ended with: `Pass(v)`, `Blocked(v)`, or the failure text.
#[derive(Debug, PartialEq)]
pub enum Got {
    Pass(Value),
    Blocked(Value),
    Failed(String),
}

impl Harness {
    pub fn new(cfg: LuaConfig) -> Self {
        let engine = Engine::new(EngineConfig::default());
        let attached = engine.attach(AttachRequest::new(
            "t",
            Role::Operator,
            Duration::from_secs(60),
        ));
        Self {
            engine,
            token: attached.token,
            factory: LuaFactory::new(cfg),
        }
    }

    /// A one-thread pool (every dispatch reuses the same VM).
    pub fn single() -> Self {
        Self::new(LuaConfig {
            pool_size: 1,
            ..LuaConfig::default()
        })
    }

    pub fn start(&self, agent: &str, directive: &str) -> TaskId {
        self.engine
            .start_task(
                &self.token,
                TaskSpec {
                    agent: agent.into(),
                    initial_directive: directive.into(),
                },
            )
            .expect("start_task")
    }

    /// One engine task + attempt through `spawner`.
    pub async fn dispatch_with(&self, spawner: &dyn Spawner, agent: &str, directive: &str) -> Got {
        let tid = self.start(agent, directive);
        match self
            .engine
            .dispatch_attempt(&self.token, &tid, spawner)
            .await
        {
            Ok(DispatchOutcome::Pass(v)) => Got::Pass(v),
            Ok(DispatchOutcome::Blocked(v)) => Got::Blocked(v),
            Err(EngineError::DispatchFailed(text)) => Got::Failed(text),
            Err(e) => panic!("unexpected engine error: {e}"),
        }
    }

    /// Build an agent from `spec` and dispatch it once.
    pub async fn dispatch(&self, agent: &str, spec: Value, directive: &str) -> Got {
        let spawner = self.factory.build(agent, &spec).expect("build");
        self.dispatch_with(spawner.as_ref(), agent, directive).await
    }

    /// Dispatch an inline script as agent `a`.
    pub async fn inline(&self, source: &str, directive: &str) -> Got {
        self.dispatch("a", json!({ "source": source }), directive)
            .await
    }

    /// Inline dispatch that must pass; returns the value.
    pub async fn pass(&self, source: &str, directive: &str) -> Value {
        match self.inline(source, directive).await {
            Got::Pass(v) => v,
            other => panic!("expected Pass for {source:?}, got {other:?}"),
        }
    }

    /// Inline dispatch that must fail; returns the failure text.
    pub async fn fail(&self, source: &str) -> String {
        match self.inline(source, "").await {
            Got::Failed(text) => text,
            other => panic!("expected a failure for {source:?}, got {other:?}"),
        }
    }
}

/// Assert `text` is a Lua eval failure of agent `a` mentioning `needle`.
pub fn assert_eval_error(text: &str, needle: &str) {
    assert!(
        text.starts_with("worker fn returned error: lua eval [inline:a]: "),
        "not a lua eval error: {text}"
    );
    assert!(
        text.contains(needle),
        "{text:?} does not mention {needle:?}"
    );
}
