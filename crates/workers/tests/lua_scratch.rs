#[path = "lua_common.rs"]
mod common;
use common::Harness;
#[tokio::test]
async fn show() {
    let h = Harness::single();
    for src in ["local function inner() error('kaput') end\ninner()", "return host.x", "return {[true]=1}", "string.upper = 1", "rawset(string, 'x', 1)", "io.open('/etc/passwd')", "os.execute('true')", "require 'ffi'", "return load(string.dump(function() end))", "assert(load('\\27Lua'))", "setmetatable({}, {__gc = print})", "getmetatable('').__index = 1", "collectgarbage('stop')", "debug.getinfo(1)", "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x"] {
        println!("{src}\n  => {:?}\n", h.inline(src, "").await);
    }
    let _ = h.factory.build("a", &serde_json::json!({"source": "return {"})).map(|_| ()).map_err(|e| println!("{e}"));
}
