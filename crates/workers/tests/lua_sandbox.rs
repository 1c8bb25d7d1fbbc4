//! Sandbox: escapes fail with clear messages, and nothing a dispatch does is visible
//! to the next one on the same (reused) VM.

#[path = "lua_common.rs"]
mod common;

use common::{assert_eval_error, Harness};
use serde_json::json;

#[tokio::test]
async fn escapes_fail_with_clear_messages() {
    let h = Harness::single();
    let cases = [
        ("io.open('/etc/passwd')", "(global 'io')"),
        ("io.popen('id')", "(global 'io')"),
        (
            "os.execute('touch /tmp/pwned')",
            "os.execute is not available in the Lua sandbox",
        ),
        ("os.exit(1)", "os.exit is not available in the Lua sandbox"),
        (
            "return os.getenv('HOME')",
            "os.getenv is not available in the Lua sandbox",
        ),
        (
            "os.remove('/tmp/x')",
            "os.remove is not available in the Lua sandbox",
        ),
        (
            "os.rename('/tmp/x', '/tmp/y')",
            "os.rename is not available in the Lua sandbox",
        ),
        (
            "return os.tmpname()",
            "os.tmpname is not available in the Lua sandbox",
        ),
        (
            "require 'ffi'",
            "require is not available in the Lua sandbox",
        ),
        (
            "package.loadlib('libc.so.6', 'system')",
            "(global 'package')",
        ),
        (
            "dofile('/etc/passwd')",
            "dofile is not available in the Lua sandbox",
        ),
        (
            "loadfile('/etc/passwd')",
            "loadfile is not available in the Lua sandbox",
        ),
        (
            "return string.dump(function() end)",
            "string.dump is not available in the Lua sandbox",
        ),
        (
            "return load(string.dump(function() end))",
            "string.dump is not available in the Lua sandbox",
        ),
        (
            "return ('x').dump(print)",
            "attempt to call a nil value (field 'dump')",
        ),
        (
            "assert(load('\\27Lua\\84\\0'))",
            "attempt to load a binary chunk (mode is 't')",
        ),
        (
            "assert(load('\\27Lua', 'x', 'b'))",
            "attempt to load a binary chunk (mode is 't')",
        ),
        (
            "assert(load('\\27Lua', 'x', 'b', {}))",
            "attempt to load a binary chunk (mode is 't')",
        ),
        ("debug.sethook()", "(global 'debug')"),
        (
            "collectgarbage('stop')",
            "collectgarbage('stop') is not allowed in the sandbox",
        ),
        (
            "collectgarbage('generational')",
            "is not allowed in the sandbox",
        ),
        (
            "setmetatable({}, {__gc = print})",
            "__gc metamethods are not allowed",
        ),
        (
            "setmetatable({}, {__gc = true})",
            "__gc metamethods are not allowed",
        ),
        (
            "string.upper = nil",
            "attempt to modify read-only table 'string' (key 'upper')",
        ),
        (
            "rawset(string, 'upper', print)",
            "rawset: attempt to modify a read-only table",
        ),
        (
            "setmetatable(string, nil)",
            "cannot change a protected metatable",
        ),
        (
            "getmetatable('').__index.upper = print",
            "attempt to index a boolean value",
        ),
        (
            "setmetatable(_G, nil)",
            "cannot change a protected metatable",
        ),
        ("table.insert = nil", "read-only table 'table'"),
        ("math.pi = 3", "read-only table 'math'"),
        ("coroutine.resume = nil", "read-only table 'coroutine'"),
        ("os.time = nil", "read-only table 'os'"),
        (
            "setmetatable(_CTX, nil)",
            "cannot change a protected metatable",
        ),
        ("warn('@on')", "(global 'warn')"),
    ];
    for (src, needle) in cases {
        let text = match h.inline(src, "[]").await {
            common::Got::Failed(t) => t,
            other => panic!("{src}: expected failure, got {other:?}"),
        };
        assert_eval_error(&text, needle);
    }
}

#[tokio::test]
async fn safe_parts_still_work() {
    let h = Harness::single();
    let src = r#"
        local f = assert(load("return 1 + ...", "=chunk", "t"))
        local n = 0
        for _ in pairs(string) do n = n + 1 end
        return {
            time = math.type(os.time()), clock = type(os.clock()), year = #os.date("%Y"),
            diff = os.difftime(10, 4), loaded = f(41), upper = ("abc"):upper(),
            fmt = string.format("%05.1f|%q", 3.14159, "a\n"), count = type(collectgarbage("count")),
            mt = getmetatable(""), env_mt = getmetatable(_G), string_fns = n > 10,
            utf8 = utf8.len("日本"), co = coroutine.wrap(function() coroutine.yield(7) end)(),
            sorted = (function() local t = {3, 1, 2} table.sort(t) return t end)(),
            gsub = ("a-b"):gsub("-", "+"),
            rawset_own = (function() local t = {} rawset(t, "k", 1) return t.k end)(),
        }"#;
    assert_eq!(
        h.pass(src, "").await,
        json!({"time": "integer", "clock": "number", "year": 4, "diff": 6.0, "loaded": 42,
               "upper": "ABC", "fmt": "003.1|\"a\\\n\"", "count": "number", "mt": false,
               "env_mt": false, "string_fns": true, "utf8": 2, "co": 7, "sorted": [1, 2, 3],
               "gsub": "a+b", "rawset_own": 1})
    );
}

#[tokio::test]
async fn load_defaults_to_the_dispatch_environment() {
    let h = Harness::single();
    let src = r#"
        x = 5
        load("y = x + 1")()
        local sealed = load("return x", "=s", "t", {})()
        return {y = y, via_g = _G.y, sealed = sealed == nil}"#;
    assert_eq!(
        h.pass(src, "").await,
        json!({"y": 6, "via_g": 6, "sealed": true})
    );
}

/// One thread, so every dispatch below runs on the same VM.
#[tokio::test]
async fn nothing_leaks_between_dispatches() {
    let h = Harness::single();
    let first = r#"
        x = 1
        _G.print = nil
        print = 5
        load("z = 1")()
        coroutine.wrap(function() w = 1 end)()
        local tries = {
            pcall(function() string.upper = function() return "pwned" end end),
            pcall(rawset, string, "lower", function() return "pwned" end),
            pcall(function() getmetatable("").__index = {} end),
            pcall(setmetatable, string, {}),
            (pcall(function() table.concat = nil end)),
        }
        for _, ok in ipairs(tries) do assert(not ok, "a shared table was modified") end
        math.randomseed(1)
        return "done"
    "#;
    assert_eq!(h.pass(first, "").await, json!("done"));
    let second = r#"
        return {x = x == nil, z = z == nil, w = w == nil, print = type(print),
                upper = string.upper("a"), lower = ("A"):lower(), concat = type(table.concat),
                mt = getmetatable("")}"#;
    assert_eq!(
        h.pass(second, "").await,
        json!({"x": true, "z": true, "w": true, "print": "function", "upper": "A",
               "lower": "a", "concat": "function", "mt": false})
    );
}

/// A cached chunk is re-pointed at a fresh environment on every dispatch.
#[tokio::test]
async fn cached_chunk_gets_a_fresh_environment() {
    let h = Harness::single();
    let spawner = h
        .factory
        .build(
            "counter",
            &json!({"source": "counter = (counter or 0) + 1 return counter"}),
        )
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            h.dispatch_with(spawner.as_ref(), "counter", "").await,
            common::Got::Pass(json!(1))
        );
    }
    // the same source under another agent, and a different source, interleaved
    assert_eq!(
        h.dispatch(
            "other",
            json!({"source": "counter = (counter or 0) + 1 return counter"}),
            ""
        )
        .await,
        common::Got::Pass(json!(1))
    );
    assert_eq!(h.pass("return counter == nil", "").await, json!(true));
}

/// After an error the VM is replaced; the next dispatch sees a clean state too.
#[tokio::test]
async fn errors_do_not_poison_the_pool() {
    let h = Harness::single();
    let text = h.fail("leak = 1 error('x')").await;
    assert_eval_error(&text, "inline:a:1: x");
    assert_eq!(h.pass("return leak == nil", "").await, json!(true));
}

/// Many dispatches in flight on a multi-thread pool never see each other's globals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatches_stay_isolated() {
    let h = Harness::new(mse_workers::lua::LuaConfig {
        pool_size: 3,
        ..Default::default()
    });
    let spawner = h
        .factory
        .build(
            "iso",
            &json!({"source": r#"
                assert(mine == nil, "saw another dispatch's global")
                mine = _CTX.i
                for _ = 1, 2000 do assert(mine == _CTX.i) end
                return {i = mine, task = _TASK_ID}
            "#}),
        )
        .unwrap();
    let runs = (0..64).map(|i| {
        let h = &h;
        let spawner = spawner.clone();
        async move {
            let directive = json!({ "i": i }).to_string();
            (
                i,
                h.dispatch_with(spawner.as_ref(), "iso", &directive).await,
            )
        }
    });
    let mut tasks = std::collections::HashSet::new();
    for (i, got) in futures::future::join_all(runs).await {
        let common::Got::Pass(v) = got else {
            panic!("{i}: {got:?}")
        };
        assert_eq!(v["i"], json!(i));
        assert!(tasks.insert(v["task"].as_str().unwrap().to_string()));
    }
}
