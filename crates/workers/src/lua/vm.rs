//! One sandboxed VM (owned by one pool thread) and how a dispatch runs on it.

use super::convert::{json_to_lua, lua_to_json, shape_result};
use super::limits::{self, Abort, HOOK_EVERY, LUA_MEMERRMSG};
use super::{LuaConfig, LuaInputs, ScriptEntry, ScriptKey};
use mlua::{ffi, ChunkMode, Function, Lua, LuaOptions, StdLib, Table, Value as LuaValue};
use serde_json::Value;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

const SANDBOX_LUA: &str = include_str!("sandbox.lua");

/// Compiled chunks kept per VM; the cache is cleared when it grows past this.
const MAX_CACHED_CHUNKS: usize = 512;

/// What a dispatch produced and whether the VM may serve the next one.
pub(super) struct Outcome {
    pub result: Result<(Value, bool), String>,
    pub keep_vm: bool,
}

enum RunError {
    /// The source does not compile (nothing ran; the VM stays clean).
    Compile(mlua::Error),
    /// Runtime error, including errors raised from bridges and limit aborts.
    Eval(mlua::Error),
    /// The return value cannot be converted.
    Json(String),
}

impl From<mlua::Error> for RunError {
    fn from(e: mlua::Error) -> Self {
        RunError::Eval(e)
    }
}

struct Cached {
    chunk: Function,
    /// Read-only `host` table, when the script has bridges.
    host: Option<Table>,
}

pub(super) struct Vm {
    lua: Lua,
    env_mt: Table,
    array_mt: Table,
    set_env: Function,
    make_bridge: Function,
    readonly: Function,
    chunks: HashMap<ScriptKey, Cached>,
}

impl Vm {
    pub(super) fn new(cfg: &LuaConfig) -> mlua::Result<Self> {
        let libs = StdLib::COROUTINE
            | StdLib::TABLE
            | StdLib::STRING
            | StdLib::UTF8
            | StdLib::MATH
            | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::default())?;
        let check = lua.create_function(|_, err: LuaValue| -> mlua::Result<()> {
            if let Some(msg) = limits::poll() {
                return Err(mlua::Error::RuntimeError(msg));
            }
            if let LuaValue::String(s) = &err {
                if s.as_bytes() == LUA_MEMERRMSG.as_bytes() {
                    return Err(mlua::Error::RuntimeError(limits::abort(Abort::Memory)));
                }
            }
            Ok(())
        })?;
        let log = lua.create_function(|_, text: mlua::String| {
            tracing::debug!(target: "mse_workers::lua", "print: {}", text.to_string_lossy());
            Ok(())
        })?;
        let (env_mt, array_mt, set_env, make_bridge, readonly) = lua
            .load(SANDBOX_LUA)
            .set_name("=mse-sandbox")
            .set_mode(ChunkMode::Text)
            .call::<(Table, Table, Function, Function, Function)>((check, log))?;
        // Safety: plain C API calls on the VM's own state, inside mlua's protected call.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                ffi::lua_sethook(
                    state,
                    Some(limits::count_hook),
                    ffi::LUA_MASKCOUNT,
                    HOOK_EVERY,
                );
            })?;
        }
        lua.set_memory_limit(cfg.memory_limit)?;
        Ok(Self {
            lua,
            env_mt,
            array_mt,
            set_env,
            make_bridge,
            readonly,
            chunks: HashMap::new(),
        })
    }

    /// Run one dispatch under the limits. Never panics (bridges are isolated).
    pub(super) fn dispatch(
        &mut self,
        script: &ScriptEntry,
        inputs: &LuaInputs,
        cfg: &LuaConfig,
        start: Instant,
        cancel: Arc<AtomicBool>,
    ) -> Outcome {
        limits::begin(start, cfg.time_limit, cfg.memory_limit, cancel);
        let r = catch_unwind(AssertUnwindSafe(|| self.run(script, inputs)));
        let abort = limits::end();
        let label = &script.label;
        let eval = |msg: &str| format!("lua eval [{label}]: {msg}");
        if let Some(a) = abort {
            // Whatever the script made of the error, the abort decides the verdict.
            return Outcome {
                result: Err(eval(&abort_message(a, cfg))),
                keep_vm: false,
            };
        }
        match r {
            Err(_) => Outcome {
                result: Err(eval("internal panic while running the script")),
                keep_vm: false,
            },
            Ok(Ok(v)) => Outcome {
                result: Ok(shape_result(v)),
                keep_vm: true,
            },
            Ok(Err(RunError::Json(detail))) => Outcome {
                result: Err(format!("lua → json [{label}]: {detail}")),
                keep_vm: true,
            },
            Ok(Err(RunError::Compile(e))) => Outcome {
                result: Err(eval(&describe(&e))),
                keep_vm: true,
            },
            Ok(Err(RunError::Eval(e))) => {
                let msg = if is_memory_error(&e) {
                    limits::memory_message(cfg.memory_limit)
                } else {
                    describe(&e)
                };
                Outcome {
                    result: Err(eval(&msg)),
                    keep_vm: false,
                }
            }
        }
    }

    fn run(&mut self, script: &ScriptEntry, inputs: &LuaInputs) -> Result<Value, RunError> {
        let (chunk, host) = {
            let cached = self.cached(script)?;
            (cached.chunk.clone(), cached.host.clone())
        };
        let lua = &self.lua;
        let env = lua.create_table_with_capacity(0, 8)?;
        env.raw_set("_PROMPT", &*inputs.prompt)?;
        env.raw_set("_AGENT", &*inputs.agent)?;
        env.raw_set("_TASK_ID", &*inputs.task_id)?;
        env.raw_set("_ATTEMPT", i64::from(inputs.attempt))?;
        if let Ok(ctx) = serde_json::from_str::<Value>(&inputs.prompt) {
            env.raw_set("_CTX", json_to_lua(lua, &ctx, &self.array_mt)?)?;
        }
        if let Some(host) = host {
            env.raw_set("host", host)?;
        }
        env.raw_set("_G", &env)?;
        env.set_metatable(Some(self.env_mt.clone()));
        self.set_env.call::<()>(&env)?;
        // Re-point the cached chunk's `_ENV` (upvalue 1 of a main chunk) at this
        // dispatch's environment. Safety: stack holds (chunk, env); setupvalue pops env.
        unsafe {
            lua.exec_raw::<()>((&chunk, &env), |state| {
                ffi::lua_setupvalue(state, -2, 1);
                ffi::lua_pop(state, 1);
            })?;
        }
        let ret: LuaValue = chunk.call(())?;
        lua_to_json(&ret, &self.array_mt).map_err(RunError::Json)
    }

    fn cached(&mut self, script: &ScriptEntry) -> Result<&Cached, RunError> {
        if !self.chunks.contains_key(&script.key) {
            if self.chunks.len() >= MAX_CACHED_CHUNKS {
                self.chunks.clear();
            }
            let chunk = self
                .lua
                .load(&*script.source)
                .set_name(format!("={}", script.label))
                .set_mode(ChunkMode::Text)
                .into_function()
                .map_err(RunError::Compile)?;
            let host = if script.bridges.is_empty() {
                None
            } else {
                Some(self.host_table(script)?)
            };
            self.chunks
                .insert(script.key.clone(), Cached { chunk, host });
        }
        Ok(&self.chunks[&script.key])
    }

    /// `host.<name>(arg)` for each bridge: JSON in, JSON out, failures raise.
    fn host_table(&self, script: &ScriptEntry) -> mlua::Result<Table> {
        let lua = &self.lua;
        let t = lua.create_table()?;
        for (name, bridge) in &script.bridges {
            let bridge = bridge.clone();
            let array_mt = self.array_mt.clone();
            let fname = name.clone();
            let raw = lua.create_function(move |lua, arg: LuaValue| {
                let fail = |msg: String| Ok((false, LuaValue::String(lua.create_string(msg)?)));
                let json = match lua_to_json(&arg, &array_mt) {
                    Ok(j) => j,
                    Err(d) => return fail(format!("host.{fname}: argument: {d}")),
                };
                match catch_unwind(AssertUnwindSafe(|| bridge(json))) {
                    Ok(Ok(v)) => Ok((true, json_to_lua(lua, &v, &array_mt)?)),
                    Ok(Err(msg)) => fail(format!("host.{fname}: {msg}")),
                    Err(_) => fail(format!("host.{fname}: bridge panicked")),
                }
            })?;
            t.raw_set(name.as_str(), self.make_bridge.call::<Function>(raw)?)?;
        }
        self.readonly.call(("host", t))
    }
}

fn abort_message(a: Abort, cfg: &LuaConfig) -> String {
    match a {
        Abort::Time => limits::time_message(cfg.time_limit),
        Abort::Memory => limits::memory_message(cfg.memory_limit),
        Abort::Cancelled => limits::CANCELLED_MESSAGE.to_string(),
    }
}

fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::RuntimeError(m) => m.starts_with(LUA_MEMERRMSG),
        _ => false,
    }
}

/// The Lua error text (message + traceback) without mlua's category prefix.
fn describe(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => format!("syntax error: {message}"),
        mlua::Error::CallbackError { traceback, cause } => {
            format!("{}\n{traceback}", describe(cause))
        }
        other => other.to_string(),
    }
}
