-- Trusted sandbox setup. Runs once per VM, with the VM's real globals, before any
-- script. Builds the shared read-only base that every dispatch environment inherits
-- (through `__index`), and returns the helpers the host needs.
--
-- Arguments: check(err) -- raises if the running dispatch was aborted (time limit,
--                          cancellation, memory); records LUA_ERRMEM as a memory abort;
--            log(text)  -- sink for `print`.
local check, log = ...

local G = _G
local type, error, select, next, tostring, ipairs = type, error, select, next, tostring, ipairs
local rawget, real_rawset, real_setmetatable = rawget, rawset, setmetatable
local real_pcall, real_xpcall, real_load, real_collectgarbage = pcall, xpcall, load, collectgarbage
local concat = table.concat

-- Shared tables scripts can see; `rawset` refuses them.
local protected = real_setmetatable({}, { __mode = "k" })

-- A read-only view of `src`: reads pass through, writes raise, the metatable is hidden,
-- and `pairs` iterates `src` without handing it out.
local function readonly(name, src)
  local proxy = {}
  real_setmetatable(proxy, {
    __index = src,
    __newindex = function(_, k)
      error("attempt to modify read-only table '" .. name .. "' (key '" .. tostring(k) .. "')", 2)
    end,
    __pairs = function()
      return function(_, k) return next(src, k) end, proxy, nil
    end,
    __len = function() return #src end,
    __metatable = false,
  })
  protected[proxy] = true
  return proxy
end

-- Library tables are copied so the originals (e.g. the string metatable's __index)
-- are never reachable from a script.
local function lib(name, t)
  local c = {}
  for k, v in next, t do c[k] = v end
  return readonly(name, c)
end

-- No bytecode: string.dump is removed everywhere (also from "s":dump()).
string.dump = nil
-- getmetatable("") returns false; the string metatable cannot be modified.
getmetatable("").__metatable = false

-- Errors caught by pcall/xpcall/coroutine.resume are re-raised when the dispatch
-- has been aborted, so a script cannot swallow its own time or memory limit.
local function after_error(ok, ...)
  if not ok then check((...)) end
  return ok, ...
end

local function pcall(f, ...)
  return after_error(real_pcall(f, ...))
end

local function xpcall(f, msgh, ...)
  return after_error(real_xpcall(f, function(e)
    check(e)
    return msgh(e)
  end, ...))
end

local co = {}
for k, v in next, coroutine do co[k] = v end
local real_resume, real_close = coroutine.resume, coroutine.close
co.resume = function(c, ...) return after_error(real_resume(c, ...)) end
co.close = function(c) return after_error(real_close(c)) end

-- load: text chunks only; without an explicit env the chunk sees the environment
-- of the running dispatch.
local cur_env = nil
local function load(chunk, name, _mode, ...)
  if select("#", ...) > 0 then
    return real_load(chunk, name, "t", (...))
  end
  return real_load(chunk, name, "t", cur_env)
end

local gc_allowed = { count = true, step = true, collect = true, isrunning = true }
local function collectgarbage(opt, ...)
  if opt == nil then opt = "collect" end
  if not gc_allowed[opt] then
    error("collectgarbage('" .. tostring(opt) .. "') is not allowed in the sandbox", 2)
  end
  return real_collectgarbage(opt, ...)
end

-- Finalizers could run during a later dispatch; they are refused.
local function setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed in the sandbox", 2)
  end
  return real_setmetatable(t, mt)
end

local function rawset(t, k, v)
  if protected[t] then
    error("rawset: attempt to modify a read-only table", 2)
  end
  return real_rawset(t, k, v)
end

local function print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  log(concat(parts, "\t"))
end

-- Removed functions that scripts commonly call get a stub with a clear message.
local function disabled(name)
  return function()
    error(name .. " is not available in the Lua sandbox", 2)
  end
end

local os_safe = {}
for _, k in ipairs({ "time", "clock", "date", "difftime" }) do os_safe[k] = os[k] end
for _, k in ipairs({ "execute", "exit", "getenv", "remove", "rename", "tmpname", "setlocale" }) do
  os_safe[k] = disabled("os." .. k)
end
local string_safe = {}
for k, v in next, string do string_safe[k] = v end
string_safe.dump = disabled("string.dump")

local base = {
  assert = assert, error = error, getmetatable = getmetatable, ipairs = ipairs,
  next = next, pairs = pairs, rawequal = rawequal, rawget = rawget, rawlen = rawlen,
  select = select, tonumber = tonumber, tostring = tostring, type = type,
  _VERSION = _VERSION,
  pcall = pcall, xpcall = xpcall, load = load, collectgarbage = collectgarbage,
  setmetatable = setmetatable, rawset = rawset, print = print,
  string = readonly("string", string_safe),
  table = lib("table", table),
  math = lib("math", math),
  utf8 = lib("utf8", utf8),
  coroutine = readonly("coroutine", co),
  os = readonly("os", os_safe),
  require = disabled("require"), dofile = disabled("dofile"), loadfile = disabled("loadfile"),
}

-- Per-dispatch environments inherit `base`; their metatable is hidden and fixed.
local env_mt = { __index = base, __metatable = false }

-- Arrays converted from JSON carry this (hidden) metatable as their mark.
local array_mt = { __metatable = "array" }

local function set_env(e) cur_env = e end

-- host.<name>(arg): the raw bridge returns (true, value) or (false, message).
local function make_bridge(raw)
  return function(arg)
    local ok, v = raw(arg)
    if not ok then error(v, 2) end
    return v
  end
end

-- Nothing below is reachable from scripts; scrub it anyway.
for _, k in ipairs({ "dofile", "loadfile", "require", "package", "io", "os", "debug",
                     "collectgarbage", "load", "rawset", "setmetatable", "print", "warn" }) do
  G[k] = nil
end

return env_mt, array_mt, set_env, make_bridge, readonly
