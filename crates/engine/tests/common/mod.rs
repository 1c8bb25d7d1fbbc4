#![allow(dead_code)]
use mse_engine::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub fn engine() -> Engine {
    Engine::new(EngineConfig::default())
}

pub fn operator(engine: &Engine) -> Attached {
    engine.attach(AttachRequest::new(
        "test-op",
        Role::Operator,
        Duration::from_secs(600),
    ))
}

pub fn spec(agent: &str, directive: &str) -> TaskSpec {
    TaskSpec {
        agent: agent.into(),
        initial_directive: directive.into(),
    }
}

/// Finishes with a fixed verdict.
pub struct Fixed(pub Value, pub bool);

#[async_trait::async_trait]
impl Spawner for Fixed {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        ctx.finish(self.0.clone(), self.1);
        Ok(())
    }
}

/// Fails without a verdict.
pub struct Failing(pub &'static str);

#[async_trait::async_trait]
impl Spawner for Failing {
    async fn spawn(&self, _ctx: &SpawnCtx) -> Result<(), SpawnError> {
        Err(SpawnError::worker_fn(self.0))
    }
}

/// Hands its context out and waits until released.
pub struct Parked {
    pub ctx_tx: tokio::sync::mpsc::UnboundedSender<SpawnCtx>,
    pub release: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Spawner for Parked {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        let _ = self.ctx_tx.send(ctx.clone());
        self.release.notified().await;
        if !ctx.has_final() {
            ctx.finish(serde_json::json!("released"), true);
        }
        Ok(())
    }
}
