#[path = "lua_common.rs"]
mod common;
use common::Harness;
use mse_workers::lua::LuaConfig;
use std::time::{Duration, Instant};
#[tokio::test]
async fn show() {
    let h = Harness::new(LuaConfig { pool_size: 1, time_limit: Duration::from_millis(2000), memory_limit: 16 << 20 });
    for src in ["local s = 'x' while true do s = s .. s end",
        "local t = {} local i = 0 while true do i = i + 1 t[i] = {i, i, i} end",
        "return string.rep('x', 64 * 1024 * 1024)",
        "local t = {} for i = 1, 1e9 do t[i] = tostring(i) end",
        "pcall(function() local s = 'x' while true do s = s .. s end end) return 'escaped'",
        "local ok, e = pcall(string.rep, 'x', 1 << 30) return {caught = e}"] {
        let t0 = Instant::now();
        let r = h.inline(src, "").await;
        println!("{src}\n  => {:?} {:?}\n", t0.elapsed(), r);
    }
}
