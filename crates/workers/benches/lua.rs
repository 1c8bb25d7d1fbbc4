//! Per-dispatch cost of a small inline Lua script.
//!
//! - `lua/engine_dispatch`: the real path — engine task + attempt through the Lua
//!   spawner (credential minting, VM pool hop, env build, chunk call, marshalling,
//!   final event, verdict). Target: ≤ 30 µs.
//! - `lua/factory_run`: the pool alone (`LuaFactory::run`), for comparison.
//!
//! Run: `cargo bench -p mse-workers --bench lua -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mse_engine::{AttachRequest, DispatchOutcome, Engine, EngineConfig, Role, TaskSpec};
use mse_workers::lua::{LuaConfig, LuaFactory, LuaInputs};
use serde_json::json;
use std::time::Duration;

const SCRIPT: &str = r#"
local n = _CTX.n
local words = {}
for i = 1, 3 do words[i] = _AGENT .. ":" .. i end
return {value = {n = n + 1, words = words, task = _TASK_ID}, ok = true}
"#;

const DIRECTIVE: &str = r#"{"n":41,"tag":"bench"}"#;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::new(EngineConfig::default());
    let token = engine
        .attach(AttachRequest::new(
            "bench",
            Role::Operator,
            Duration::from_secs(3600),
        ))
        .token;
    let factory = LuaFactory::new(LuaConfig::default());
    let spawner = factory
        .build("bench", &json!({ "source": SCRIPT }))
        .expect("build");
    let prepared = factory
        .prepare("bench", &json!({ "source": SCRIPT }))
        .expect("prepare");

    let mut g = c.benchmark_group("lua");
    g.bench_function("engine_dispatch", |b| {
        b.to_async(&rt).iter(|| async {
            let tid = engine
                .start_task(
                    &token,
                    TaskSpec {
                        agent: "bench".into(),
                        initial_directive: DIRECTIVE.into(),
                    },
                )
                .expect("start_task");
            let out = engine
                .dispatch_attempt(&token, &tid, spawner.as_ref())
                .await
                .expect("dispatch");
            assert!(matches!(out, DispatchOutcome::Pass(_)));
            black_box(out)
        })
    });
    g.bench_function("factory_run", |b| {
        b.to_async(&rt).iter(|| async {
            let r = factory
                .run(&prepared, LuaInputs::new("bench", DIRECTIVE))
                .await
                .expect("run");
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
