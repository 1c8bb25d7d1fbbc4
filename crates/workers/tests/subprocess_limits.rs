//! Subprocess workers: time and output limits, kill on cancel / abandon, no orphans.

#[path = "fixtures/subprocess_harness.rs"]
mod harness;

use harness::*;
use mse_engine::TaskStatus;
use mse_workers::subprocess::SubprocessConfig;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Leader writes its pid to `$1/pid`, a background grandchild's pid to `$1/gc`.
const SLEEPER: &str = r#"sleep 30 & echo $! > "$1/gc"; echo $$ > "$1/pid"; wait"#;

async fn assert_all_gone(dir: &std::path::Path) {
    for name in ["pid", "gc"] {
        let pid = read_pid(&dir.join(name), Duration::from_secs(5)).await;
        assert!(
            wait_gone(pid, Duration::from_secs(5)).await,
            "{name} {pid} survived"
        );
    }
}

#[tokio::test]
async fn time_limit_kills_the_whole_group() {
    let h = Harness::with_config(SubprocessConfig {
        time_limit: Duration::from_millis(300),
        ..Default::default()
    });
    for mode in [Value::Null, json!("ndjson_lines")] {
        let dir = temp_dir();
        let spec = sh(
            SLEEPER,
            &[dir.to_str().unwrap()],
            json!({"stream_mode": mode}),
        );
        let t0 = Instant::now();
        let (tid, out) = h.run(spec, "x").await;
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let text = failed(out);
        assert!(
            text.contains("subprocess time limit exceeded (300ms)"),
            "{text}"
        );
        assert_eq!(
            h.engine.task_snapshot(&tid).unwrap().status,
            TaskStatus::Blocked
        );
        assert_all_gone(&dir).await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[tokio::test]
async fn time_limit_plain_sleep() {
    let h = Harness::with_config(SubprocessConfig {
        time_limit: Duration::from_millis(300),
        ..Default::default()
    });
    let t0 = Instant::now();
    let (_, out) = h
        .run(json!({"program": "sleep", "args": ["30"]}), "x")
        .await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(failed(out).contains("subprocess time limit exceeded (300ms)"));
}

#[tokio::test]
async fn output_limit_fails_cleanly() {
    let h = Harness::with_config(SubprocessConfig {
        max_output_bytes: 1024 * 1024,
        ..Default::default()
    });
    for mode in [
        Value::Null,
        json!("ndjson_lines"),
        json!("sse_events"),
        json!("length_prefixed"),
    ] {
        let t0 = Instant::now();
        let spec = sh("yes | head -c 100000000", &[], json!({"stream_mode": mode}));
        let (_, out) = h.run(spec, "x").await;
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{mode}: {:?}",
            t0.elapsed()
        );
        let text = failed(out);
        assert_eq!(
            text, "subprocess output limit exceeded (1048576 bytes)",
            "{mode}"
        );
    }
}

#[tokio::test]
async fn output_exactly_at_the_limit_is_accepted() {
    let h = Harness::with_config(SubprocessConfig {
        max_output_bytes: 1000,
        ..Default::default()
    });
    let (_, out) = h
        .run(
            sh("head -c 1000 /dev/zero | tr '\\0' a", &[], json!({})),
            "x",
        )
        .await;
    assert_eq!(pass(out)["raw"].as_str().unwrap().len(), 1000);
    let (_, out) = h
        .run(
            sh("head -c 1001 /dev/zero | tr '\\0' a", &[], json!({})),
            "x",
        )
        .await;
    assert!(failed(out).contains("output limit exceeded"));
}

#[tokio::test]
async fn cancel_kills_the_process_group() {
    let h = Harness::new();
    let dir = temp_dir();
    let script = format!(
        r#"{SLEEPER_BG}
echo '{{"type":"progress","stage":"'$$'"}}'
wait"#,
        SLEEPER_BG = r#"sleep 30 & echo $! > "$1/gc"; echo $$ > "$1/pid""#
    );
    let spec = sh(
        &script,
        &[dir.to_str().unwrap()],
        json!({"stream_mode": "ndjson_lines"}),
    );
    let (tid, task) = h.run_in_background(spec, "x");
    let leader: u32 = h
        .wait_progress(&tid, Duration::from_secs(10))
        .await
        .parse()
        .unwrap();
    assert!(!pid_gone(leader), "leader runs before the cancel");
    let engine = h.engine.clone();
    let t = tid.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        engine.cancel_task_trusted(&t).unwrap();
    });
    let t0 = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("dispatch returns promptly after cancel")
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(failed(out), "cancelled");
    assert_eq!(
        leader,
        read_pid(&dir.join("pid"), Duration::from_secs(1)).await
    );
    assert_all_gone(&dir).await;
    assert_eq!(
        h.engine.task_snapshot(&tid).unwrap().status,
        TaskStatus::Cancelled
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dropped_dispatch_future_kills_the_process_group() {
    // An abandoned fanout branch: the dispatch future is dropped mid-attempt.
    let h = Harness::new();
    let dir = temp_dir();
    let spawner = h.spawner(sh(SLEEPER, &[dir.to_str().unwrap()], json!({})));
    let tid = h.start("x");
    let dispatch = h
        .engine
        .dispatch_attempt(&h.att.token, &tid, spawner.as_ref());
    let gc = dir.join("gc");
    let watcher = async {
        let pid = read_pid(&gc, Duration::from_secs(10)).await;
        assert!(!pid_gone(pid), "grandchild runs before the drop");
    };
    tokio::select! {
        r = dispatch => panic!("dispatch finished: {r:?}"),
        _ = watcher => {}
    }
    assert_all_gone(&dir).await;
    assert_eq!(
        h.engine.task_snapshot(&tid).unwrap().status,
        TaskStatus::Cancelled
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn background_leftovers_are_killed_after_a_normal_finish() {
    // The child exits at once, leaving a background process with its stdio closed.
    let h = Harness::new();
    let dir = temp_dir();
    let script = r#"sleep 30 </dev/null >/dev/null 2>&1 & echo $! > "$1/gc"; echo $$ > "$1/pid"; echo '{"done":1}'"#;
    let (_, out) = h
        .run(sh(script, &[dir.to_str().unwrap()], json!({})), "x")
        .await;
    assert_eq!(pass(out), json!({"done": 1}));
    assert_all_gone(&dir).await;
    std::fs::remove_dir_all(dir).unwrap();
}
