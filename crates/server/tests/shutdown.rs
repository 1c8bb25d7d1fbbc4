//! Graceful shutdown: a request in flight when shutdown starts still completes;
//! new connections are refused afterwards; the grace period bounds the drain.

mod common;

use common::*;
use std::time::{Duration, Instant};

const SLOW: &str = "local t=os.clock() while os.clock()-t<0.3 do end return 1";

#[tokio::test]
async fn in_flight_request_completes() {
    let mut s = start().await;
    let run = spawn_run(&s, inline(lua_blueprint(SLOW)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.trigger_shutdown();
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["final_ctx"]["out"], 1);
    s.stop().await.expect("clean shutdown");
    let r = reqwest::Client::new()
        .get(s.url("/v1/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "listener still accepting");
}

#[tokio::test]
async fn grace_period_bounds_the_drain() {
    let mut s = start_with(|c| c.shutdown_grace = Duration::from_millis(200)).await;
    let _run = spawn_run(
        &s,
        inline(lua_blueprint(
            "local t=os.clock() while os.clock()-t<3 do end return 1",
        )),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    s.stop().await.expect("shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let s = start().await;
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let mut cfg = mse_server::ServerConfig::ephemeral(std::env::temp_dir());
    cfg.bind = addr;
    let err = match mse_server::bind(cfg).await {
        Ok(_) => panic!("second bind on the same port succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&addr.to_string()), "{err}");
}
