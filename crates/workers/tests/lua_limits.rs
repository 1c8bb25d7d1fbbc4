//! Time and memory limits, cancellation, and pool recovery.

#[path = "lua_common.rs"]
mod common;

use common::{assert_eval_error, Got, Harness};
use mse_workers::lua::{HostBridge, LuaConfig, LuaInputs, LuaScript};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

fn limited(pool_size: usize) -> Harness {
    Harness::new(LuaConfig {
        pool_size,
        time_limit: Duration::from_millis(200),
        memory_limit: 16 * MIB,
    })
}

const TIME_MSG: &str = "lua time limit exceeded (200ms)";
const MEM_MSG: &str = "lua memory limit exceeded (16 MiB)";

#[tokio::test]
async fn infinite_loops_hit_the_time_limit() {
    let h = limited(1);
    let loops = [
        "while true do end",
        "local i = 0 while true do i = i + 1 end",
        "local function f() return f() end return f()",
        // swallowing the error does not help
        "pcall(function() while true do end end) return 'escaped'",
        "while true do pcall(function() while true do end end) end",
        "while true do pcall(error, 'x') end",
        "xpcall(function() while true do end end, function(e) return e end) return 'escaped'",
        "xpcall(function() error('x') end, function(e) while true do end end) return 'escaped'",
        // coroutines inherit the hook
        "coroutine.wrap(function() while true do end end)() return 'escaped'",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "local co = coroutine.wrap(function() while true do coroutine.yield() end end) while true do co() end",
        // metamethods and loaded chunks too
        "local t = setmetatable({}, {__index = function(t, k) while true do end end}) return t.x",
        "load('while true do end')() return 'escaped'",
        "table.sort({3, 2, 1}, function(a, b) while true do end end)",
    ];
    for src in loops {
        let t0 = Instant::now();
        let text = h.fail(src).await;
        let took = t0.elapsed();
        assert_eval_error(&text, TIME_MSG);
        assert!(took < Duration::from_millis(1500), "{src}: took {took:?}");
        assert!(
            took >= Duration::from_millis(190),
            "{src}: stopped too early ({took:?})"
        );
    }
    assert_eq!(h.pass("return 'alive'", "").await, json!("alive"));
}

#[tokio::test]
async fn memory_bombs_hit_the_memory_limit() {
    // a generous time limit: these must fail on memory even on a loaded machine
    let h = Harness::new(LuaConfig {
        pool_size: 1,
        time_limit: Duration::from_secs(10),
        memory_limit: 16 * MIB,
    });
    let bombs = [
        "local s = 'x' while true do s = s .. s end",
        "local t = {} local i = 0 while true do i = i + 1 t[i] = {i, i, i} end",
        "return string.rep('x', 64 * 1024 * 1024)",
        "local t = {} for i = 1, 1e9 do t[i] = tostring(i) end",
        // catching the memory error does not help
        "pcall(function() local s = 'x' while true do s = s .. s end end) return 'escaped'",
        "local ok, e = pcall(string.rep, 'x', 1 << 30) return {caught = e}",
    ];
    for src in bombs {
        let text = h.fail(src).await;
        assert_eval_error(&text, MEM_MSG);
        // the next dispatch on the same single-thread pool works
        assert_eq!(
            h.pass("return #string.rep('y', 1024 * 1024)", "").await,
            json!(1024 * 1024),
            "after {src}"
        );
    }
}

#[tokio::test]
async fn a_huge_ctx_is_a_memory_error_not_a_crash() {
    let h = Harness::new(LuaConfig {
        pool_size: 1,
        time_limit: Duration::from_secs(10),
        memory_limit: 16 * MIB,
    });
    let big = serde_json::to_string(&vec!["0123456789abcdef".repeat(4); 100_000]).unwrap();
    match h.inline("return #_CTX", &big).await {
        Got::Failed(text) => assert_eval_error(&text, MEM_MSG),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.pass("return 1", "").await, json!(1));
}

#[tokio::test]
async fn cancelling_the_task_stops_the_script() {
    let h = Harness::new(LuaConfig {
        pool_size: 1,
        time_limit: Duration::from_secs(30),
        memory_limit: 16 * MIB,
    });
    let spawner = h
        .factory
        .build("spin", &json!({"source": "while true do end"}))
        .unwrap();
    let tid = h.start("spin", "");
    let engine = h.engine.clone();
    let cancel_tid = tid.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.cancel_task_trusted(&cancel_tid).unwrap();
    });
    let t0 = Instant::now();
    let r = h
        .engine
        .dispatch_attempt(&h.token, &tid, spawner.as_ref())
        .await;
    canceller.await.unwrap();
    assert!(
        matches!(r, Err(mse_engine::EngineError::DispatchFailed(ref t)) if t == "cancelled"),
        "{r:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    // the single VM thread is free again almost at once
    let t1 = Instant::now();
    assert_eq!(h.pass("return 'next'", "").await, json!("next"));
    assert!(
        t1.elapsed() < Duration::from_millis(500),
        "pool busy for {:?}",
        t1.elapsed()
    );
}

#[tokio::test]
async fn dropping_the_future_stops_the_script() {
    let h = Harness::new(LuaConfig {
        pool_size: 1,
        time_limit: Duration::from_secs(30),
        memory_limit: 16 * MIB,
    });
    let spin = h
        .factory
        .prepare("spin", &json!({"source": "while true do end"}))
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        h.factory.run(&spin, LuaInputs::new("spin", "")),
    )
    .await;
    assert!(r.is_err(), "the loop cannot finish");
    let quick = h
        .factory
        .prepare("q", &json!({"source": "return 2"}))
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(
        h.factory.run(&quick, LuaInputs::new("q", "")).await,
        Ok((json!(2), true))
    );
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "pool busy for {:?}",
        t0.elapsed()
    );
}

fn sleeper() -> BTreeMap<String, HostBridge> {
    let mut b: BTreeMap<String, HostBridge> = BTreeMap::new();
    b.insert(
        "sleep_ms".into(),
        Arc::new(|v: Value| {
            std::thread::sleep(Duration::from_millis(v.as_u64().unwrap_or(0)));
            Ok(Value::Null)
        }),
    );
    b
}

/// The limit runs from when the job starts, not from when it was queued.
#[tokio::test]
async fn queue_time_does_not_count() {
    let h = Harness::new(LuaConfig {
        pool_size: 1,
        time_limit: Duration::from_millis(250),
        memory_limit: 16 * MIB,
    });
    h.factory.register_script(
        "nap",
        LuaScript {
            label: "nap".into(),
            source: "host.sleep_ms(150) return _CTX".into(),
            bridges: sleeper(),
        },
    );
    let nap = h.factory.prepare("n", &json!({"fn_id": "nap"})).unwrap();
    let runs = (0..3).map(|i| h.factory.run(&nap, LuaInputs::new("n", i.to_string())));
    let results = futures::future::join_all(runs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r, Ok((json!(i), true)));
    }
}

/// A script stuck inside one C call (the hook cannot fire) still gets its error in
/// time, and a replacement thread keeps the pool serving.
#[tokio::test]
async fn stuck_in_c_still_times_out_and_the_pool_recovers() {
    let h = limited(1);
    h.factory.register_script(
        "stuck",
        LuaScript {
            label: "stuck".into(),
            source: "host.sleep_ms(1500) return 'late'".into(),
            bridges: sleeper(),
        },
    );
    let t0 = Instant::now();
    let got = h.dispatch("s", json!({"fn_id": "stuck"}), "").await;
    let took = t0.elapsed();
    let Got::Failed(text) = got else {
        panic!("{got:?}")
    };
    assert_eq!(
        text,
        format!("worker fn returned error: lua eval [stuck]: {TIME_MSG}")
    );
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let t1 = Instant::now();
    assert_eq!(
        h.pass("return 'replacement'", "").await,
        json!("replacement")
    );
    assert!(
        t1.elapsed() < Duration::from_millis(500),
        "pool busy for {:?}",
        t1.elapsed()
    );
}
