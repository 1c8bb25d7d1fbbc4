//! Rough in-process load check of `POST /v1/tasks` against a bare axum handler
//! that parses and echoes the same body (the performance target is p99 ≤ 5 ms at
//! 64 connections and ≥ 90 % of the bare handler's throughput).
//!
//! `cargo run --release -p mse-server --example tasks_load -- [secs] [connections]`
//!
//! With `MSE_URL=http://127.0.0.1:7777` the `/v1/tasks` phase targets that
//! server (e.g. a release `mse serve`) instead of an in-process one.
//!
//! Client and servers share the machine, so absolute numbers are pessimistic;
//! the ratio is what matters. The dedicated load script is the reference.

use axum::routing::post;
use axum::{Json, Router};
#[path = "support/load.rs"]
mod load;
use load::load;
use serde_json::{json, Value};

// As in the `mse` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let conns = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let body = json!({"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {"ticket": "ABC-12"}});

    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_addr = bare.local_addr().unwrap();
    let app = Router::new().route("/echo", post(|Json(v): Json<Value>| async move { Json(v) }));
    tokio::spawn(async move { axum::serve(bare, app).await.unwrap() });

    let base = match std::env::var("MSE_URL") {
        Ok(url) => url,
        Err(_) => {
            let cfg = mse_server::ServerConfig::ephemeral(std::env::temp_dir());
            let bound = mse_server::bind(cfg).await.unwrap();
            let addr = bound.local_addr();
            tokio::spawn(bound.run(std::future::pending()));
            format!("http://{addr}")
        }
    };

    let (b_rps, b_p50, b_p99) = load(
        format!("http://{bare_addr}/echo"),
        body.clone(),
        secs,
        conns,
    )
    .await;
    println!("bare echo : {b_rps:>9.0} req/s  p50 {b_p50:?}  p99 {b_p99:?}");
    let (t_rps, t_p50, t_p99) = load(format!("{base}/v1/tasks"), body, secs, conns).await;
    println!("/v1/tasks : {t_rps:>9.0} req/s  p50 {t_p50:?}  p99 {t_p99:?}");
    println!("ratio     : {:.1} %", 100.0 * t_rps / b_rps);
}
