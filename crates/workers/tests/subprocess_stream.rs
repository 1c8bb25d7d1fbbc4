//! Subprocess workers, streaming modes: framing, live events, verdict rules.

#[path = "fixtures/subprocess_harness.rs"]
mod harness;

use harness::*;
use mse_engine::{ContentRef, OutputEvent};
use serde_json::{json, Value};
use std::time::Duration;

fn ndjson() -> Value {
    json!({"stream_mode": "ndjson_lines"})
}

fn finals(tail: &[OutputEvent]) -> Vec<(Value, bool)> {
    tail.iter()
        .filter_map(|e| match e {
            OutputEvent::Final { content, ok } => Some((content.clone().into_result_value(), *ok)),
            _ => None,
        })
        .collect()
}

const FINAL_PAGES: &str =
    r#"{"type":"final","content":{"kind":"inline","value":{"pages":3}},"ok":true}"#;

#[tokio::test]
async fn ndjson_progress_and_final() {
    let h = Harness::new();
    let script = format!(
        r#"echo '{{"type":"progress","stage":"fetch"}}'
echo
echo '   not json at all'
echo '  {{"type":"progress","stage":"parse","note":"n","extra":1}}  '
echo '{{"type":"partial","chunk":{{"kind":"inline","value":"c"}}}}'
echo '{{"type":"artifact","name":"a","content":{{"kind":"file_ref","path":"/tmp/x","mime":"text/plain","size_hint":3}}}}'
echo '{FINAL_PAGES}'"#
    );
    let (tid, out) = h.run(sh(&script, &[], ndjson()), "x").await;
    assert_eq!(pass(out), json!({"pages": 3}));
    let tail = h.tail(&tid);
    assert_eq!(
        tail,
        vec![
            OutputEvent::Progress {
                stage: "fetch".into(),
                note: None
            },
            OutputEvent::Progress {
                stage: "parse".into(),
                note: Some("n".into())
            },
            OutputEvent::Partial {
                chunk: ContentRef::Inline { value: json!("c") }
            },
            OutputEvent::Artifact {
                name: "a".into(),
                content: ContentRef::FileRef {
                    path: "/tmp/x".into(),
                    mime: Some("text/plain".into()),
                    size_hint: Some(3)
                }
            },
            OutputEvent::final_inline(json!({"pages": 3}), true),
        ]
    );
}

#[tokio::test]
async fn events_are_forwarded_live() {
    let h = Harness::new();
    let dir = temp_dir();
    let go = dir.join("go");
    let script = format!(
        r#"echo '{{"type":"progress","stage":"started"}}'
while [ ! -e "$1" ]; do sleep 0.02; done
echo '{FINAL_PAGES}'"#
    );
    let (tid, task) = h.run_in_background(sh(&script, &[go.to_str().unwrap()], ndjson()), "x");
    assert_eq!(
        h.wait_progress(&tid, Duration::from_secs(10)).await,
        "started"
    );
    assert!(!task.is_finished());
    std::fs::write(&go, b"").unwrap();
    assert_eq!(pass(task.await.unwrap()), json!({"pages": 3}));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn file_ref_final_becomes_value() {
    let h = Harness::new();
    let script =
        r#"echo '{"type":"final","content":{"kind":"file_ref","path":"/o.bin"},"ok":true}'"#;
    let (_, out) = h.run(sh(script, &[], ndjson()), "x").await;
    assert_eq!(
        pass(out),
        json!({"file_ref": "/o.bin", "mime": null, "size_hint": null})
    );
}

#[tokio::test]
async fn last_final_wins() {
    let h = Harness::new();
    let script = r#"echo '{"type":"final","content":{"kind":"inline","value":1},"ok":false}'
echo '{"type":"final","content":{"kind":"inline","value":2},"ok":true}'"#;
    let (tid, out) = h.run(sh(script, &[], ndjson()), "x").await;
    assert_eq!(pass(out), json!(2));
    assert_eq!(
        finals(&h.tail(&tid)),
        vec![(json!(1), false), (json!(2), true)]
    );
}

#[tokio::test]
async fn final_ok_but_exit_1_is_blocked() {
    let h = Harness::new();
    let script = format!("echo '{FINAL_PAGES}'; exit 1");
    let (tid, out) = h.run(sh(&script, &[], ndjson()), "x").await;
    assert_eq!(blocked(out), json!({"pages": 3}));
    // The child's final, then the corrected one.
    assert_eq!(
        finals(&h.tail(&tid)),
        vec![(json!({"pages": 3}), true), (json!({"pages": 3}), false)]
    );
}

#[tokio::test]
async fn final_not_ok_exit_0_is_blocked() {
    let h = Harness::new();
    let script = r#"echo '{"type":"final","content":{"kind":"inline","value":"no"},"ok":false}'"#;
    let (tid, out) = h.run(sh(script, &[], ndjson()), "x").await;
    assert_eq!(blocked(out), json!("no"));
    assert_eq!(finals(&h.tail(&tid)).len(), 1);
}

#[tokio::test]
async fn no_final_gives_synthetic_final() {
    let h = Harness::new();
    for (script, exit_success) in [
        (r#"echo '{"type":"progress","stage":"s"}'"#, true),
        ("echo garbage; exit 2", false),
    ] {
        let (tid, out) = h.run(sh(script, &[], ndjson()), "x").await;
        let expected = json!({
            "raw": "",
            "note": "streaming mode: no Final event received",
            "exit_success": exit_success,
        });
        assert_eq!(blocked(out), expected);
        assert_eq!(finals(&h.tail(&tid)), vec![(expected, false)]);
    }
}

#[tokio::test]
async fn ndjson_invalid_utf8_fails_the_worker() {
    let h = Harness::new();
    let script = r#"echo '{"type":"progress","stage":"a"}'; printf '\377\376\n'; echo '{"type":"final","content":{"kind":"inline","value":1},"ok":true}'"#;
    let (tid, out) = h.run(sh(script, &[], ndjson()), "x").await;
    let text = failed(out);
    assert!(text.starts_with("ndjson read: "), "{text}");
    // Events before the bad line were forwarded.
    assert_eq!(h.tail(&tid).len(), 1);
}

#[tokio::test]
async fn sse_events_multiline_and_eof_flush() {
    let h = Harness::new();
    let script = r#"printf 'event: progress\nid: 1\nretry: 5\n: comment\n'
printf 'data: {"type":"progress",\ndata:"stage":"one"}\n\n'
printf 'data: not json\n\n\n'
printf 'data:  {"type":"progress","stage":"two"}\r\n\r\n'
printf 'data: {"type":"final",\ndata: "content":{"kind":"inline","value":\ndata: [1,\ndata: 2]},"ok":true}'"#;
    let (tid, out) = h
        .run(sh(script, &[], json!({"stream_mode": "sse_events"})), "x")
        .await;
    assert_eq!(pass(out), json!([1, 2]));
    let tail = h.tail(&tid);
    let stages: Vec<_> = tail
        .iter()
        .filter_map(|e| match e {
            OutputEvent::Progress { stage, .. } => Some(stage.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stages, ["one", "two"]);
    assert_eq!(tail.len(), 3);
}

#[tokio::test]
async fn sse_invalid_utf8_fails_the_worker() {
    let h = Harness::new();
    let (_, out) = h
        .run(
            sh(
                r"printf 'data: \377\n\n'",
                &[],
                json!({"stream_mode": "sse_events"}),
            ),
            "x",
        )
        .await;
    let text = failed(out);
    assert!(text.starts_with("sse read: "), "{text}");
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Runs `cat <file>` (plus an optional shell tail) in `length_prefixed` mode.
async fn run_frames(h: &Harness, bytes: &[u8], after: &str) -> (mse_engine::TaskId, Outcome) {
    let dir = temp_dir();
    let file = dir.join("frames.bin");
    std::fs::write(&file, bytes).unwrap();
    let script = format!(r#"cat "$1"; {after}"#);
    let spec = sh(
        &script,
        &[file.to_str().unwrap()],
        json!({"stream_mode": "length_prefixed"}),
    );
    let r = h.run(spec, "x").await;
    std::fs::remove_dir_all(dir).unwrap();
    r
}

#[tokio::test]
async fn length_prefixed_frames_until_zero_terminator() {
    let h = Harness::new();
    let mut bytes = frame(br#"{"type":"progress","stage":"p"}"#);
    bytes.extend(frame(b"{ not json"));
    bytes.extend(frame(
        br#"{"type":"final","content":{"kind":"inline","value":"v"},"ok":true}"#,
    ));
    bytes.extend(0u32.to_be_bytes());
    // Ignored after the terminator.
    bytes.extend(frame(
        br#"{"type":"final","content":{"kind":"inline","value":"late"},"ok":true}"#,
    ));
    // The child keeps writing after the terminator: it must not block on a full pipe.
    let (tid, out) = run_frames(&h, &bytes, "head -c 3000000 /dev/zero").await;
    assert_eq!(pass(out), json!("v"));
    assert_eq!(h.tail(&tid).len(), 2);
}

#[tokio::test]
async fn length_prefixed_truncated_payload_stops_silently() {
    let h = Harness::new();
    let mut bytes = frame(br#"{"type":"final","content":{"kind":"inline","value":7},"ok":true}"#);
    bytes.extend(100u32.to_be_bytes());
    bytes.extend(b"{\"type\":");
    let (_, out) = run_frames(&h, &bytes, "true").await;
    assert_eq!(pass(out), json!(7));

    // Truncated header, nothing else: no final.
    let (_, out) = run_frames(&h, &[0, 0], "true").await;
    assert_eq!(blocked(out)["exit_success"], true);
}

#[tokio::test]
async fn chatty_stderr_does_not_deadlock_streaming() {
    let h = Harness::new();
    let script = format!("head -c 8000000 /dev/zero >&2; echo '{FINAL_PAGES}'");
    let (_, out) = tokio::time::timeout(
        Duration::from_secs(30),
        h.run(sh(&script, &[], ndjson()), "x"),
    )
    .await
    .expect("no deadlock");
    assert_eq!(pass(out), json!({"pages": 3}));
}

#[tokio::test]
async fn stdin_reader_gets_eof_when_directive_is_an_arg() {
    let h = Harness::new();
    let script = format!("cat; echo '{FINAL_PAGES}'");
    let spec = sh(
        &script,
        &[],
        json!({"stream_mode": "ndjson_lines", "use_stdin": false}),
    );
    let (_, out) = tokio::time::timeout(Duration::from_secs(30), h.run(spec, "x"))
        .await
        .expect("stdin closed");
    assert_eq!(pass(out), json!({"pages": 3}));
}
