#![allow(dead_code)]
use mse_blueprint::{Blueprint, LaunchConfig, LaunchError, Launcher, RunRequest, SpawnerFactories};
use mse_engine::{Engine, EngineConfig};
use mse_workers::lua::{LuaConfig, LuaFactory};
use mse_workers::rust_fn::{RustFn, RustFnRegistry};
use mse_workers::subprocess::{SubprocessConfig, SubprocessFactory};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub struct Harness {
    pub launcher: Launcher,
    pub fns: RustFnRegistry,
}

pub fn harness_with(cfg: EngineConfig) -> Harness {
    let engine = Engine::new(cfg);
    mse_engine::layers::builtin::register_defaults(engine.layers());
    let fns = RustFnRegistry::default();
    let f = SpawnerFactories::standard(
        &engine,
        fns.clone(),
        LuaFactory::new(LuaConfig::default()),
        Some(SubprocessFactory::new(SubprocessConfig::default())),
    );
    Harness {
        launcher: Launcher::new(engine, f, LaunchConfig::default()),
        fns,
    }
}

pub fn harness() -> Harness {
    harness_with(EngineConfig::default())
}

impl Harness {
    pub fn register(&self, id: &str, f: Arc<dyn RustFn>) {
        self.fns.register(id, f);
    }

    pub async fn run(&self, bp: Value, init: Value) -> Result<Value, LaunchError> {
        self.run_req(bp, RunRequest::new(init, Duration::from_secs(60)))
            .await
    }

    pub async fn run_req(&self, bp: Value, req: RunRequest) -> Result<Value, LaunchError> {
        let bp = Arc::new(Blueprint::from_value(bp).expect("blueprint parses"));
        self.launcher.run(&bp, req).await.map(|o| o.final_ctx)
    }
}
