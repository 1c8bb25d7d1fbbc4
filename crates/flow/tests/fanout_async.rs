//! Fanout concurrency (`flow-ir.md` §7.2, §7.3, decision 5) with dispatchers that
//! suspend on tokio timers (paused clock, so timings are exact and instant).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use mse_flow::{evaluate, Dispatcher, FlowError, Limits, Node};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Dispatcher whose input is `{"tag", "ms", "fail"}`: sleeps `ms`, then succeeds
/// with `tag` or fails with `fail <tag>`. Tracks starts, completions, futures
/// dropped before completion (cancellations) and total polls.
#[derive(Default)]
struct Sleepy {
    started: Mutex<Vec<String>>,
    completed: AtomicUsize,
    cancelled: Mutex<Vec<String>>,
    polls: AtomicUsize,
}

/// Marks the dispatch as cancelled if dropped while still armed.
struct CancelGuard<'a> {
    tag: String,
    sink: &'a Mutex<Vec<String>>,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.sink.lock().unwrap().push(self.tag.clone());
        }
    }
}

/// Counts the polls of the inner future.
struct Counted<'a, F> {
    inner: Pin<Box<F>>,
    polls: &'a AtomicUsize,
}

impl<F: Future> Future for Counted<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

#[async_trait::async_trait]
impl Dispatcher for Sleepy {
    async fn dispatch(&self, _step_ref: &str, input: Value) -> Result<Value, String> {
        let tag = input["tag"].as_str().unwrap_or("?").to_owned();
        let ms = input["ms"].as_u64().unwrap_or(0);
        let fail = input["fail"].as_bool().unwrap_or(false);
        self.started.lock().unwrap().push(tag.clone());
        let mut guard = CancelGuard {
            tag: tag.clone(),
            sink: &self.cancelled,
            armed: true,
        };
        Counted {
            inner: Box::pin(tokio::time::sleep(Duration::from_millis(ms))),
            polls: &self.polls,
        }
        .await;
        guard.armed = false;
        self.completed.fetch_add(1, Ordering::SeqCst);
        if fail {
            Err(format!("fail {tag}"))
        } else {
            Ok(json!(tag))
        }
    }
}

impl Sleepy {
    fn cancelled(&self) -> Vec<String> {
        let mut v = self.cancelled.lock().unwrap().clone();
        v.sort();
        v
    }
    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }
}

fn item(tag: &str, ms: u64, fail: bool) -> Value {
    json!({"tag": tag, "ms": ms, "fail": fail})
}

fn flow(items: Vec<Value>, join: &str) -> Node {
    serde_json::from_value(json!({
        "kind": "fanout", "items": {"op": "lit", "value": items},
        "bind": {"op": "path", "at": "$.item"}, "join": join,
        "out": {"op": "path", "at": "$.out"},
        "body": {"kind": "step", "ref": "work", "in": {"op": "path", "at": "$.item"},
                 "out": {"op": "path", "at": "$.res"}}
    }))
    .unwrap()
}

/// Run and return (result, elapsed ms on the paused clock).
async fn timed(node: &Node, d: &Sleepy) -> (Result<Value, FlowError>, u128) {
    let start = Instant::now();
    let r = evaluate(node, json!({}), d, &Limits::default()).await;
    (r, start.elapsed().as_millis())
}

#[tokio::test(start_paused = true)]
async fn all_runs_branches_concurrently_and_keeps_item_order() {
    let d = Sleepy::default();
    let node = flow(
        vec![
            item("a", 300, false),
            item("b", 100, false),
            item("c", 200, false),
        ],
        "all",
    );
    let (r, ms) = timed(&node, &d).await;
    let out = r.unwrap();
    let tags: Vec<&Value> = out["out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["res"])
        .collect();
    assert_eq!(tags, vec![&json!("a"), &json!("b"), &json!("c")]);
    assert_eq!(ms, 300, "branches overlap");
    assert_eq!(d.started(), vec!["a", "b", "c"], "started in item order");
}

#[tokio::test(start_paused = true)]
async fn all_fails_fast_and_cancels_the_rest() {
    let d = Sleepy::default();
    let node = flow(
        vec![
            item("a", 300, false),
            item("b", 50, true),
            item("c", 400, false),
        ],
        "all",
    );
    let (r, ms) = timed(&node, &d).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "dispatcher error for ref 'work': fail b"
    );
    assert_eq!(ms, 50);
    assert_eq!(d.cancelled(), vec!["a", "c"]);
    assert_eq!(d.completed.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn all_fails_fast_for_more_than_30_items() {
    // The reference quirk would wait ~400 ms for lower-indexed branches.
    let d = Sleepy::default();
    let mut items: Vec<Value> = (0..30)
        .map(|i| item(&format!("ok{i:02}"), 300 + i * 3, false))
        .collect();
    items.push(item("bad30", 50, true));
    let (r, ms) = timed(&flow(items, "all"), &d).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "dispatcher error for ref 'work': fail bad30"
    );
    assert_eq!(ms, 50);
    assert_eq!(d.cancelled().len(), 30);
}

#[tokio::test(start_paused = true)]
async fn all_first_failure_by_completion_time_wins() {
    let d = Sleepy::default();
    let node = flow(vec![item("a", 200, true), item("b", 100, true)], "all");
    let (r, ms) = timed(&node, &d).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "dispatcher error for ref 'work': fail b"
    );
    assert_eq!(ms, 100);
    assert_eq!(d.cancelled(), vec!["a"]);
}

#[tokio::test(start_paused = true)]
async fn any_takes_first_success_and_cancels_the_rest() {
    let d = Sleepy::default();
    let node = flow(
        vec![
            item("a", 10, true),
            item("b", 200, false),
            item("c", 100, false),
            item("d", 150, true),
        ],
        "any",
    );
    let (r, ms) = timed(&node, &d).await;
    let out = r.unwrap();
    assert_eq!(out["out"]["res"], json!("c"));
    assert_eq!(out["out"]["item"]["tag"], json!("c"));
    assert_eq!(ms, 100);
    assert_eq!(d.cancelled(), vec!["b", "d"]);
}

#[tokio::test(start_paused = true)]
async fn any_all_fail_reports_the_last_failure() {
    let d = Sleepy::default();
    let node = flow(
        vec![
            item("a", 30, true),
            item("b", 10, true),
            item("c", 20, true),
        ],
        "any",
    );
    let (r, ms) = timed(&node, &d).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "dispatcher error for ref 'work': fail a"
    );
    assert_eq!(ms, 30);
    assert!(d.cancelled().is_empty());
}

#[tokio::test(start_paused = true)]
async fn race_first_finisher_failure_fails_the_fanout() {
    let d = Sleepy::default();
    let node = flow(vec![item("a", 100, false), item("b", 50, true)], "race");
    let (r, ms) = timed(&node, &d).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "dispatcher error for ref 'work': fail b"
    );
    assert_eq!(ms, 50);
    assert_eq!(d.cancelled(), vec!["a"]);
}

#[tokio::test(start_paused = true)]
async fn race_first_finisher_success() {
    let d = Sleepy::default();
    let node = flow(
        vec![
            item("a", 100, true),
            item("b", 50, false),
            item("c", 70, false),
        ],
        "race",
    );
    let (r, ms) = timed(&node, &d).await;
    assert_eq!(r.unwrap()["out"]["res"], json!("b"));
    assert_eq!(ms, 50);
    assert_eq!(d.cancelled(), vec!["a", "c"]);
}

#[tokio::test(start_paused = true)]
async fn same_round_ties_go_to_the_lowest_index() {
    for (items, want) in [
        (vec![item("a", 100, false), item("b", 100, true)], Ok("a")),
        (
            vec![item("a", 100, true), item("b", 100, false)],
            Err("fail a"),
        ),
    ] {
        let d = Sleepy::default();
        let (r, _) = timed(&flow(items.clone(), "race"), &d).await;
        match want {
            Ok(tag) => assert_eq!(r.unwrap()["out"]["res"], json!(tag)),
            Err(msg) => assert!(r.unwrap_err().to_string().ends_with(msg)),
        }
        // `any` with two simultaneous successes: the lower index
        let d = Sleepy::default();
        let both_ok = vec![item("x", 100, false), item("y", 100, false)];
        let (r, _) = timed(&flow(both_ok, "any"), &d).await;
        assert_eq!(r.unwrap()["out"]["res"], json!("x"));
        // `all` with two simultaneous failures: the lower index
        let d = Sleepy::default();
        let both_bad = vec![item("x", 100, true), item("y", 100, true)];
        let (r, _) = timed(&flow(both_bad, "all"), &d).await;
        assert!(r.unwrap_err().to_string().ends_with("fail x"));
    }
}

#[tokio::test(start_paused = true)]
async fn all_settled_waits_for_everything_in_item_order() {
    let d = Sleepy::default();
    let node = flow(
        vec![
            item("a", 300, true),
            item("b", 100, false),
            item("c", 200, true),
        ],
        "all_settled",
    );
    let (r, ms) = timed(&node, &d).await;
    let out = r.unwrap();
    assert_eq!(ms, 300);
    let recs = out["out"].as_array().unwrap();
    assert_eq!(
        recs[0],
        json!({"status": "rejected", "reason": "dispatcher error for ref 'work': fail a"})
    );
    assert_eq!(recs[1]["status"], json!("fulfilled"));
    assert_eq!(recs[1]["value"]["res"], json!("b"));
    assert_eq!(
        recs[2]["reason"],
        json!("dispatcher error for ref 'work': fail c")
    );
    assert!(d.cancelled().is_empty());
}

#[tokio::test(start_paused = true)]
async fn join_polls_only_woken_branches() {
    // 200 branches finishing one by one: each dispatch future should be polled
    // about twice (start + timer). Re-polling every pending branch on every wake
    // would need ~n²/2 = 20 000 polls.
    let d = Sleepy::default();
    let items: Vec<Value> = (0..200)
        .map(|i| item(&format!("t{i}"), 1 + i, false))
        .collect();
    let (r, _) = timed(&flow(items, "all"), &d).await;
    assert_eq!(r.unwrap()["out"].as_array().unwrap().len(), 200);
    let polls = d.polls.load(Ordering::SeqCst);
    assert!(polls <= 3 * 200, "polls = {polls}");
}

#[tokio::test(start_paused = true)]
async fn nested_fanout_branches_are_cancelled_too() {
    // Outer race: branch 0 runs an inner `all` of two slow steps; branch 1 finishes
    // first, so the inner dispatches are dropped.
    let inner = json!({
        "kind": "fanout", "items": {"op": "path", "at": "$.item.inner"},
        "bind": {"op": "path", "at": "$.it"}, "join": "all", "out": {"op": "path", "at": "$.o"},
        "body": {"kind": "step", "ref": "work", "in": {"op": "path", "at": "$.it"}, "out": {"op": "path", "at": "$.r"}}
    });
    let node: Node = serde_json::from_value(json!({
        "kind": "fanout",
        "items": {"op": "lit", "value": [
            {"inner": [item("i1", 500, false), item("i2", 600, false)]},
            {"inner": [item("fast", 10, false)]}
        ]},
        "bind": {"op": "path", "at": "$.item"}, "join": "race",
        "out": {"op": "path", "at": "$.out"}, "body": inner
    }))
    .unwrap();
    let d = Sleepy::default();
    let (r, ms) = timed(&node, &d).await;
    assert_eq!(r.unwrap()["out"]["o"][0]["r"], json!("fast"));
    assert_eq!(ms, 10);
    assert_eq!(d.cancelled(), vec!["i1", "i2"]);
}

#[tokio::test(start_paused = true)]
async fn try_around_failing_fanout_rolls_back() {
    let node: Node = serde_json::from_value(json!({
        "kind": "try", "err_at": {"op": "path", "at": "$.err"},
        "catch": {"kind": "seq", "children": []},
        "body": serde_json::to_value(flow(vec![item("a", 20, false), item("b", 10, true)], "all")).unwrap()
    }))
    .unwrap();
    let d = Sleepy::default();
    let out = evaluate(&node, json!({"k": 1}), &d, &Limits::default())
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"err": "dispatcher error for ref 'work': fail b", "k": 1})
    );
}

#[test]
fn evaluate_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let node = flow(vec![], "all");
    let d = Sleepy::default();
    let limits = Limits::default();
    let fut = evaluate(&node, json!({}), &d, &limits);
    assert_send(&fut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_when_spawned_on_a_multi_thread_runtime() {
    let handle = tokio::spawn(async {
        let d = Sleepy::default();
        let node = flow(vec![item("a", 5, false), item("b", 1, false)], "all");
        evaluate(&node, json!({}), &d, &Limits::default()).await
    });
    let out = handle.await.unwrap().unwrap();
    assert_eq!(out["out"][1]["res"], json!("b"));
}
