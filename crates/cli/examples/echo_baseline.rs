//! Load-test baseline: a bare axum server whose `POST /v1/tasks` parses the JSON
//! body and echoes it back, with the same allocator and runtime settings as `mse`.
//! `scripts/load.sh` compares `mse serve` against it.
//!
//! Usage: `echo_baseline <IP:PORT>` (port 0 picks a free port; the address is printed).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};

async fn echo(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(body)
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7801".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mse-worker")
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
        let local = listener.local_addr().expect("local address");
        // Same socket option as `mse serve`.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        eprintln!("echo_baseline listening on http://{local}");
        let app = Router::new().route("/v1/tasks", post(echo));
        axum::serve(listener, app).await.expect("serve");
    });
}
