//! Subprocess workers: environment scrubbing and the MSE_* variables.

#[path = "fixtures/subprocess_harness.rs"]
mod harness;

use harness::*;
use mse_workers::subprocess::SubprocessConfig;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// One test per binary: it mutates the process environment.
#[tokio::test]
async fn environment_is_scrubbed_and_mse_vars_are_set() {
    std::env::set_var("MSE_TEST_SERVER_SECRET", "hunter2");
    std::env::set_var("TZ", "UTC");
    let h = Harness::new();

    // `env` run directly: the child's exact environment.
    let (tid, out) = h.run(json!({"program": "env"}), "x").await;
    let env = parse_env(pass(out)["raw"].as_str().unwrap());
    assert!(!env.contains_key("MSE_TEST_SERVER_SECRET"));
    assert_eq!(env["MSE_TASK_ID"], tid.as_str());
    assert_eq!(env["MSE_ATTEMPT"], "1");
    assert_eq!(env["MSE_CTX_AGENT"], "worker");
    assert_eq!(env["MSE_TOKEN_AGENT_ID"], format!("worker-of-{tid}"));
    assert!(!env["MSE_TOKEN_NONCE"].is_empty());
    assert!(env["MSE_WORKER_HANDLE"].starts_with("wh-"));
    assert_eq!(env["TZ"], "UTC");
    assert_eq!(env.get("PATH"), std::env::var("PATH").ok().as_ref());
    let allowed = SubprocessConfig::default().env_passthrough;
    for k in env.keys() {
        assert!(
            k.starts_with("MSE_") || allowed.contains(k),
            "unexpected variable {k}"
        );
    }

    // A custom passthrough list.
    let h2 = Harness::with_config(SubprocessConfig {
        env_passthrough: vec!["MSE_TEST_SERVER_SECRET".into()],
        ..Default::default()
    });
    let (_, out) = h2.run(json!({"program": "/usr/bin/env"}), "x").await;
    let env = parse_env(pass(out)["raw"].as_str().unwrap());
    assert_eq!(env["MSE_TEST_SERVER_SECRET"], "hunter2");
    assert!(!env.contains_key("PATH"));

    // The nonce and handle are the live credentials of this attempt.
    let dir = temp_dir();
    let script = r#"env > "$1/env"
echo '{"type":"progress","stage":"env written"}'
while [ ! -e "$1/go" ]; do sleep 0.02; done
echo '{"type":"final","content":{"kind":"inline","value":"ok"},"ok":true}'"#;
    let spec = sh(
        script,
        &[dir.to_str().unwrap()],
        json!({"stream_mode": "ndjson_lines"}),
    );
    let (tid, task) = h.run_in_background(spec, "x");
    h.wait_progress(&tid, Duration::from_secs(10)).await;
    let env = parse_env(&std::fs::read_to_string(dir.join("env")).unwrap());
    let target = h.engine.resolve_handle(&env["MSE_WORKER_HANDLE"]).unwrap();
    assert_eq!(target.task_id, tid);
    assert_eq!(target.attempt, 1);
    assert_eq!(target.nonce, env["MSE_TOKEN_NONCE"]);
    std::fs::write(dir.join("go"), b"").unwrap();
    assert_eq!(pass(task.await.unwrap()), json!("ok"));
    std::fs::remove_dir_all(dir).unwrap();
}
