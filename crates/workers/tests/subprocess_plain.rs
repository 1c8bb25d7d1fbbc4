//! Subprocess workers, plain mode: value/ok rules, stdin vs last-arg delivery.

#[path = "fixtures/subprocess_harness.rs"]
mod harness;

use harness::*;
use mse_workers::subprocess::SubprocessConfig;
use serde_json::json;

#[tokio::test]
async fn json_stdout_is_the_value() {
    let h = Harness::new();
    let (_, out) = h
        .run(
            sh(
                r#"cat >/dev/null; printf '  {"a": [1, 2.5]}\n\n'"#,
                &[],
                json!({}),
            ),
            "x",
        )
        .await;
    assert_eq!(pass(out), json!({"a": [1, 2.5]}));
}

#[tokio::test]
async fn non_json_stdout_gives_raw_and_stderr() {
    let h = Harness::new();
    let (_, out) = h
        .run(
            sh("echo '  hello world  '; echo oops >&2", &[], json!({})),
            "x",
        )
        .await;
    assert_eq!(
        pass(out),
        json!({"raw": "  hello world", "stderr": "oops\n"})
    );
}

#[tokio::test]
async fn empty_stdout_exit_0() {
    let h = Harness::new();
    let (_, out) = h.run(sh("echo warn >&2", &[], json!({})), "x").await;
    assert_eq!(pass(out), json!({"raw": "", "stderr": "warn\n"}));
}

#[tokio::test]
async fn null_stdout_is_null() {
    let h = Harness::new();
    let (_, out) = h.run(sh("echo null", &[], json!({})), "x").await;
    assert_eq!(pass(out), serde_json::Value::Null);
}

#[tokio::test]
async fn nonzero_exit_with_json_is_blocked() {
    let h = Harness::new();
    let (_, out) = h
        .run(
            sh(r#"echo '{"partial": true}'; exit 3"#, &[], json!({})),
            "x",
        )
        .await;
    assert_eq!(blocked(out), json!({"partial": true}));
}

#[tokio::test]
async fn death_by_signal_is_blocked() {
    let h = Harness::new();
    let (_, out) = h.run(sh("echo 1; kill -9 $$", &[], json!({})), "x").await;
    assert_eq!(blocked(out), json!(1));
}

#[tokio::test]
async fn directive_goes_to_stdin_without_extra_arg() {
    let h = Harness::new();
    let directive = r#"{"k": "v w", "n": 1}"#;
    // argc is printed to stderr; stdout echoes stdin verbatim.
    let (_, out) = h
        .run(sh(r#"cat; echo "argc=$#" >&2"#, &[], json!({})), directive)
        .await;
    assert_eq!(pass(out), json!({"k": "v w", "n": 1}));
    let (_, out) = h
        .run(sh(r#"printf 'argc=%s' "$#""#, &[], json!({})), directive)
        .await;
    assert_eq!(pass(out)["raw"], "argc=0");
}

#[tokio::test]
async fn directive_as_last_arg_and_stdin_closed() {
    let h = Harness::new();
    let directive = r#"{"via": "arg 'quoted' $HOME"}"#;
    // `cat` must see EOF at once (stdin is /dev/null), then the last arg is printed.
    let script = r#"cat; printf '%s' "$2""#;
    let (_, out) = h
        .run(
            sh(script, &["first"], json!({"use_stdin": false})),
            directive,
        )
        .await;
    assert_eq!(pass(out), json!({"via": "arg 'quoted' $HOME"}));
    let (_, out) = h
        .run(
            sh(
                r#"printf '%s|%s' "$#" "$1""#,
                &["a"],
                json!({"use_stdin": false}),
            ),
            "d",
        )
        .await;
    assert_eq!(pass(out)["raw"], "2|a");
}

#[tokio::test]
async fn child_ignoring_large_stdin_is_fine() {
    // The child exits without reading: the write hits EPIPE, which is not an error.
    let h = Harness::new();
    let big = "x".repeat(4 * 1024 * 1024);
    let (_, out) = h.run(json!({"program": "true"}), &big).await;
    assert_eq!(pass(out), json!({"raw": "", "stderr": ""}));
}

#[tokio::test]
async fn large_stdin_and_stdout_do_not_deadlock() {
    // The child writes a lot before reading stdin: stdin is fed concurrently.
    let h = Harness::new();
    let big = "y".repeat(1024 * 1024);
    let script = "head -c 2000000 /dev/zero | tr '\\0' a; wc -c";
    let (_, out) = h.run(sh(script, &[], json!({})), &big).await;
    let raw = pass(out)["raw"].as_str().unwrap().to_string();
    assert!(raw.len() > 2_000_000);
    assert!(raw.ends_with("1048576"), "{}", &raw[raw.len() - 20..]);
}

#[tokio::test]
async fn stderr_is_capped_in_plain_mode() {
    let h = Harness::with_config(SubprocessConfig {
        max_stderr_bytes: 1000,
        ..Default::default()
    });
    let (_, out) = h
        .run(
            sh(
                "head -c 3000000 /dev/zero | tr '\\0' e >&2; echo done",
                &[],
                json!({}),
            ),
            "x",
        )
        .await;
    let v = pass(out);
    assert_eq!(v["raw"], "done");
    assert_eq!(v["stderr"].as_str().unwrap(), "e".repeat(1000));
}

#[tokio::test]
async fn missing_program_is_internal_spawn_failure() {
    let h = Harness::new();
    let (tid, out) = h
        .run(json!({"program": "/nonexistent/mse-no-such-program"}), "x")
        .await;
    let text = failed(out);
    assert!(text.starts_with("internal: spawn failed: "), "{text}");
    let (_, out) = h
        .run(json!({"program": "mse-no-such-program-on-path"}), "x")
        .await;
    assert!(failed(out).starts_with("internal: spawn failed: "));
    // The failed spawn leaves the task terminal.
    let st = h.engine.task_snapshot(&tid).unwrap();
    assert!(st.status.is_terminal());
}

#[tokio::test]
async fn working_dir_is_configurable() {
    let dir = temp_dir();
    let h = Harness::with_config(SubprocessConfig {
        working_dir: Some(dir.clone()),
        ..Default::default()
    });
    let (_, out) = h.run(json!({"program": "pwd"}), "x").await;
    let raw = pass(out)["raw"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::canonicalize(raw).unwrap(),
        std::fs::canonicalize(&dir).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
