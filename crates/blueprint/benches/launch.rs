//! Per-step cost of full runs (compile once, then launch: session, one engine
//! task per step, worker token and handle per step, verdict, reclamation).
//!
//! `cargo bench -p mse-blueprint --bench launch`; divide the reported time by 1000.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mse_blueprint::{Blueprint, LaunchConfig, Launcher, RunRequest, SpawnerFactories};
use mse_engine::{Engine, EngineConfig};
use mse_workers::lua::{LuaConfig, LuaFactory};
use mse_workers::rust_fn::RustFnRegistry;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

// The `mse` binary uses mimalloc too: per-step work is dominated by small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEPS: usize = 1000;

fn launcher() -> Launcher {
    let engine = Engine::new(EngineConfig {
        task_retention: Duration::ZERO,
        ..Default::default()
    });
    let f = SpawnerFactories::standard(
        &engine,
        RustFnRegistry::default(),
        LuaFactory::new(LuaConfig::default()),
        None,
    );
    Launcher::new(engine, f, LaunchConfig::default())
}

/// `STEPS` steps, each reading a small key and writing its result to one slot.
fn flow_blueprint(agent: Value) -> Arc<Blueprint> {
    let step = json!({"kind":"step","ref":"w","in":{"op":"path","at":"$.small"},"out":{"op":"path","at":"$.result"}});
    let bp =
        json!({"id":"bench","flow":{"kind":"seq","children":vec![step; STEPS]},"agents":[agent]});
    Arc::new(Blueprint::from_value(bp).unwrap())
}

fn ctx_of_size(bytes: usize) -> Value {
    let filler: Vec<Value> = (0..bytes / 64)
        .map(|i| json!(format!("{i:0>56}")))
        .collect();
    json!({"small": "x", "filler": filler})
}

fn bench_runs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let launcher = launcher();
    let compiled_identity = launcher
        .compile(&flow_blueprint(
            json!({"name":"w","kind":"rust_fn","spec":{"fn_id":"identity"}}),
        ))
        .unwrap();
    let compiled_lua = launcher
        .compile(&flow_blueprint(
            json!({"name":"w","kind":"lua","spec":{"source":"return {v = _PROMPT}"}}),
        ))
        .unwrap();
    let mut g = c.benchmark_group("run_1000_steps");
    g.sample_size(10);
    for (name, size) in [("rust_fn_ctx_1KB", 1024), ("rust_fn_ctx_1MB", 1024 * 1024)] {
        let ctx = ctx_of_size(size);
        g.bench_function(name, |b| {
            b.iter_batched(
                || RunRequest::new(ctx.clone(), Duration::from_secs(600)),
                |req| {
                    rt.block_on(launcher.run_compiled(&compiled_identity, req))
                        .unwrap();
                    launcher.engine().sweep();
                },
                BatchSize::PerIteration,
            )
        });
    }
    let ctx = ctx_of_size(1024);
    g.bench_function("lua_inline_ctx_1KB", |b| {
        b.iter_batched(
            || RunRequest::new(ctx.clone(), Duration::from_secs(600)),
            |req| {
                rt.block_on(launcher.run_compiled(&compiled_lua, req))
                    .unwrap();
                launcher.engine().sweep();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_runs);
criterion_main!(benches);
