//! Blueprint store figures through HTTP, on the default SQLite storage:
//!
//! 1. seed `versions` distinct versions of one id (`POST /v1/blueprints/bench`);
//! 2. latency of `GET /v1/blueprints/bench/head`, `.../history?limit=20` and
//!    `.../versions/{v}` over `requests` sequential requests each (target: head
//!    p99 ≤ 2 ms);
//! 3. throughput of `POST /v1/tasks` for the same one-step `rust_fn` Blueprint
//!    (no process spawned) sent inline vs. by id (latest, fixed version, semver
//!    requirement), `conns` connections for `secs` seconds each (target: by id
//!    within 10 % of inline).
//!
//! `cargo run --release -p mse-server --example blueprints_bench -- [versions] [requests] [secs] [conns]`
//! (defaults 10000 2000 5 64; the runs are 3 interleaved rounds per case, median
//! reported). `MSE_BENCH_STORAGE=memory` uses the in-memory stores.
//!
//! Client and server share the machine, so absolute numbers are pessimistic.

#[path = "support/load.rs"]
mod load;
use load::load;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bp(i: usize) -> Value {
    json!({
        "id": "bench",
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": format!("version {i}")},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "metadata": {"version_label": format!("1.{}.{}", i / 1000, i % 1000)}
    })
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

async fn latency(client: &reqwest::Client, url: &str, n: usize) -> String {
    for _ in 0..50 {
        client.get(url).send().await.unwrap().bytes().await.unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        r.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    format!(
        "p50 {:>8.3?}  p99 {:>8.3?}  max {:>8.3?}",
        pct(&lat, 50),
        pct(&lat, 99),
        lat[lat.len() - 1]
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (versions, requests, secs, conns) =
        (arg(1, 10_000), arg(2, 2000), arg(3, 5) as u64, arg(4, 64));

    let dir = std::env::temp_dir().join(format!("mse-bp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = mse_server::ServerConfig::ephemeral(dir.clone());
    cfg.storage = match std::env::var("MSE_BENCH_STORAGE").as_deref() {
        Ok("memory") => mse_server::Storage::Memory,
        _ => mse_server::Storage::Sqlite,
    };
    let bound = mse_server::bind(cfg).await.unwrap();
    println!("{}", bound.describe());
    let base = format!("http://{}", bound.local_addr());
    let state = bound.state().clone();
    tokio::spawn(bound.run(std::future::pending()));
    let client = reqwest::Client::new();

    // 1. Seed.
    let t = Instant::now();
    let mut last = String::new();
    let mut first = String::new();
    for i in 0..versions {
        let r = client
            .post(format!("{base}/v1/blueprints/bench"))
            .json(&bp(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        last = r.json::<Value>().await.unwrap()["version"]
            .as_str()
            .unwrap()
            .to_string();
        if i == 0 {
            first = last.clone();
        }
    }
    let took = t.elapsed();
    println!(
        "seed {versions} versions: {took:.2?} ({:.0} writes/s, {:.3?} each)",
        versions as f64 / took.as_secs_f64(),
        took / versions.max(1) as u32
    );
    let doctor: Value = client
        .get(format!("{base}/v1/doctor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!("database: {}", doctor["database"]);

    // 2. Read latency, sequential.
    let head = format!("{base}/v1/blueprints/bench/head");
    println!(
        "GET head              {}",
        latency(&client, &head, requests).await
    );
    let hist = format!("{base}/v1/blueprints/bench/history?limit=20");
    println!(
        "GET history?limit=20  {}",
        latency(&client, &hist, requests).await
    );
    let old = format!("{base}/v1/blueprints/bench/versions/{first}");
    println!(
        "GET versions/{{first}}  {}",
        latency(&client, &old, requests).await
    );

    // The store alone: read_head sequentially and from 64 tasks at once.
    let store = state.blueprints().clone();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        store.read_head("bench").await.unwrap();
    }
    println!(
        "store read_head sequential: {:.2?} per call",
        t.elapsed() / n
    );
    let t = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..n / 64 {
                    store.read_head("bench").await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "store read_head 64 tasks: {:.0} calls/s",
        (n / 64 * 64) as f64 / t.elapsed().as_secs_f64()
    );

    // 3. Runs: inline vs by id, same Blueprint (the head).
    let url = format!("{base}/v1/tasks");
    let inline =
        json!({"blueprint": {"kind": "inline", "value": bp(versions - 1)}, "init_ctx": {}});
    let by_id = |version: Value| json!({"blueprint": {"kind": "id", "id": "bench", "version": version}, "init_ctx": {}});
    let cases = [
        ("inline", inline),
        ("id latest", by_id(json!({"kind": "latest"}))),
        ("id fixed", by_id(json!({"kind": "fixed", "value": last}))),
        (
            "id semver_req",
            by_id(json!({"kind": "semver_req", "req": format!("^1.{}", (versions - 1) / 1000)})),
        ),
    ];
    // Warm-up (compiled cache, connections).
    for (_, body) in &cases {
        load(url.clone(), body.clone(), 1, conns).await;
    }
    // Interleaved rounds, median per case (the machine is shared and noisy).
    const ROUNDS: usize = 3;
    let mut results: Vec<Vec<(f64, Duration, Duration)>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, body)) in cases.iter().enumerate() {
            results[i].push(load(url.clone(), body.clone(), secs, conns).await);
        }
    }
    let median = |mut v: Vec<(f64, Duration, Duration)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let medians: Vec<_> = results.into_iter().map(median).collect();
    let inline_rps = medians[0].0;
    for ((name, _), (rps, p50, p99)) in cases.iter().zip(medians) {
        println!(
            "POST /v1/tasks {name:<13} {rps:>8.0} req/s  p50 {p50:>8.3?}  p99 {p99:>8.3?}  ({:.1} % of inline; median of {ROUNDS} x {secs} s, {conns} connections)",
            100.0 * rps / inline_rps
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
