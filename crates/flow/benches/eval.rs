//! Per-step evaluation cost: a 1000-step `seq` over a ~1 KB and a ~1 MB ctx.
//! The per-step time must not depend on the ctx size (no per-node ctx clones).
//!
//! Run: `cargo bench -p mse-flow -- --warm-up-time 1 --measurement-time 3`.
//! Criterion reports the time per 1000-step run and the throughput in steps/s.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::executor::block_on;
use mse_flow::{evaluate, Dispatcher, Limits, Node};
use serde_json::{json, Map, Value};

const STEPS: usize = 1000;

struct Trivial;

#[async_trait::async_trait]
impl Dispatcher for Trivial {
    async fn dispatch(&self, _step_ref: &str, _input: Value) -> Result<Value, String> {
        Ok(json!({"ok": true, "n": 1}))
    }
}

/// `seq` of STEPS steps: `step "work" ($.input) -> $.outs.k<i % 16>`.
fn flow() -> Node {
    let children: Vec<Value> = (0..STEPS)
        .map(|i| {
            json!({"kind": "step", "ref": "work",
                   "in": {"op": "path", "at": "$.input"},
                   "out": {"op": "path", "at": format!("$.outs.k{}", i % 16)}})
        })
        .collect();
    serde_json::from_value(json!({"kind": "seq", "children": children})).unwrap()
}

/// A ctx of roughly `bytes` serialized bytes: `filler` holds 100-byte strings.
fn ctx(bytes: usize) -> Value {
    let mut filler = Map::new();
    for i in 0..bytes / 110 {
        filler.insert(format!("f{i:06}"), Value::String("x".repeat(100)));
    }
    json!({"input": {"id": 7, "text": "small input"}, "filler": filler})
}

fn bench(c: &mut Criterion) {
    let node = flow();
    let limits = Limits::default();
    let mut group = c.benchmark_group("seq_1000_steps");
    group.throughput(Throughput::Elements(STEPS as u64));
    for (name, bytes) in [("ctx_1KB", 1_000), ("ctx_1MB", 1_000_000)] {
        let ctx = ctx(bytes);
        eprintln!("{name}: serialized ctx = {} bytes", ctx.to_string().len());
        group.bench_function(name, |b| {
            // The ctx copy handed to each run is made in setup (not timed) and the
            // final ctx is dropped after timing, so only evaluation is measured.
            b.iter_batched(
                || ctx.clone(),
                |ctx| block_on(evaluate(&node, ctx, &Trivial, &limits)).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
