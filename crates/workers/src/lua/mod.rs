//! Sandboxed Lua 5.4 workers (blueprint spec §9.2, decisions 4 and 10).
//!
//! # Contract
//! An agent of kind `lua` has the spec `{"fn_id": "<id>"}` naming a script registered
//! with [`LuaFactory::register_script`], or (extension) `{"source": "<lua code>"}`, an
//! inline script labelled `inline:<agent>`. A dispatch evaluates the chunk with the
//! globals `_PROMPT`, `_AGENT`, `_TASK_ID`, `_ATTEMPT`, `_CTX` (the directive parsed as
//! JSON, `nil` when it is not JSON) and `host` (bridges, only when the script has
//! some); the first return value becomes the attempt's verdict (marshalling in
//! `convert.rs`: null sentinel, array mark, envelope `{value=..., ok=...}`).
//! Errors: `lua eval [<label>]: <error + traceback>` and `lua → json [<label>]: <detail>`,
//! reported as `worker fn returned error: ...`.
//!
//! # Sandbox
//! Scripts see a fresh environment table per dispatch whose `__index` is a shared,
//! unreachable base holding only: `assert error getmetatable ipairs next pairs rawequal
//! rawget rawlen select tonumber tostring type _VERSION`, wrapped `pcall xpcall load
//! collectgarbage setmetatable rawset print`, and read-only copies of `string` (without
//! `dump`), `table`, `math`, `utf8`, `coroutine`, and `os` reduced to
//! `time clock date difftime`. There is no `io`, `package`, `debug`, `warn`, nor any
//! way to load C modules or bytecode; `require`, `dofile`, `loadfile`, `string.dump`
//! and `os.execute/exit/getenv/remove/rename/tmpname/setlocale` are stubs raising
//! `<name> is not available in the Lua sandbox`.
//! `load` accepts text chunks only and defaults to the dispatch's environment;
//! `collectgarbage` allows `count`, `step`, `collect`, `isrunning`; `setmetatable`
//! refuses `__gc` (a finalizer could run during a later dispatch); `rawset` refuses the
//! shared tables; the string metatable and every shared metatable are hidden
//! (`__metatable`). `print` goes to the `tracing` debug log.
//!
//! # Limits
//! - Wall time ([`LuaConfig::time_limit`], measured from when the job starts running):
//!   a count hook checks the deadline and the cancel flag every 1000 instructions and
//!   raises `lua time limit exceeded (<limit>)`; the abort is sticky and the `pcall`
//!   family re-raises it, so a script cannot catch its way out. The async side also
//!   stops waiting after `limit + grace` (see `pool.rs`).
//! - Memory ([`LuaConfig::memory_limit`], per VM, via mlua's allocator limit):
//!   `lua memory limit exceeded (<limit>)`.
//! - Cancellation: dropping the [`LuaFactory::run`] future (cancelled task, abandoned
//!   fanout branch) sets the job's cancel flag; the hook aborts the script promptly and
//!   a job still queued is skipped.
//!
//! # Pool
//! [`LuaConfig::pool_size`] OS threads each own one VM and take jobs from one queue,
//! replying on a tokio oneshot. Compiled chunks are cached per VM (by registration for
//! `fn_id` scripts, by BLAKE3 of label and source for inline ones); each dispatch
//! re-points the cached chunk's `_ENV` upvalue at its fresh environment instead of
//! re-parsing. Nothing a script can reach survives its dispatch: globals live in the
//! per-dispatch table, shared tables are read-only, finalizers are refused. After any
//! Lua error (including limit aborts) the thread discards its VM and builds a new one
//! (after replying, off the caller's path).
//!
//! Latency: an idle thread spins ~50 µs for the next job before sleeping, and `run`
//! polls the reply (yielding to the runtime) for ~40 µs before parking, so a small
//! script avoids both futex/eventfd round trips (`benches/lua.rs`).

mod convert;
mod limits;
mod pool;
mod queue;
mod vm;

use mlua::{ChunkMode, Lua, LuaOptions, StdLib};
use mse_engine::{SpawnCtx, SpawnError, Spawner};
use parking_lot::RwLock;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use convert::shape_result;

/// Pool and limit settings.
#[derive(Clone, Debug)]
pub struct LuaConfig {
    /// Number of VM threads.
    pub pool_size: usize,
    /// Wall-time limit of one dispatch (from when it starts running).
    pub time_limit: Duration,
    /// Memory limit of one VM, in bytes.
    pub memory_limit: usize,
}

impl Default for LuaConfig {
    /// `available_parallelism` threads (1..=8), 5 s, 64 MiB.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            pool_size: cores.clamp(1, 8),
            time_limit: Duration::from_secs(5),
            memory_limit: 64 * 1024 * 1024,
        }
    }
}

/// A host function exposed to scripts as `host.<name>(arg)`; JSON in, JSON out;
/// `Err(msg)` raises a Lua error (catchable with `pcall`).
pub type HostBridge = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// A script to register under a `fn_id`.
#[derive(Clone)]
pub struct LuaScript {
    /// Shown in error texts (`lua eval [<label>]: ...`) and as the chunk name.
    pub label: String,
    pub source: String,
    /// Fixed at registration.
    pub bridges: BTreeMap<String, HostBridge>,
}

/// The per-dispatch inputs (the globals `_AGENT`, `_PROMPT`, `_TASK_ID`, `_ATTEMPT`).
#[derive(Clone, Debug)]
pub struct LuaInputs {
    pub agent: Arc<str>,
    pub prompt: Arc<str>,
    pub task_id: Arc<str>,
    pub attempt: u32,
}

impl LuaInputs {
    /// Inputs outside the engine (task id `T-0000000000000000`, attempt 1).
    pub fn new(agent: impl Into<Arc<str>>, prompt: impl Into<Arc<str>>) -> Self {
        Self {
            agent: agent.into(),
            prompt: prompt.into(),
            task_id: Arc::from("T-0000000000000000"),
            attempt: 1,
        }
    }

    pub fn from_ctx(ctx: &SpawnCtx) -> Self {
        Self {
            agent: ctx.agent.clone(),
            prompt: ctx.prompt.clone(),
            task_id: Arc::from(ctx.task_id.as_str()),
            attempt: ctx.attempt,
        }
    }
}

/// Cache identity of a script inside a VM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ScriptKey {
    /// One registration (re-registering an id gets a new key).
    Registered(u64),
    /// BLAKE3 of label and source.
    Inline([u8; 32]),
}

struct ScriptEntry {
    key: ScriptKey,
    label: Arc<str>,
    source: Arc<str>,
    bridges: BTreeMap<String, HostBridge>,
}

/// A resolved script, ready to [`run`](LuaFactory::run).
#[derive(Clone)]
pub struct PreparedScript(Arc<ScriptEntry>);

impl PreparedScript {
    pub fn label(&self) -> &str {
        &self.0.label
    }
}

/// Builds `lua` spawners and runs scripts on the shared VM pool. Cheap to clone.
#[derive(Clone)]
pub struct LuaFactory {
    inner: Arc<Inner>,
}

struct Inner {
    pool: pool::Pool,
    scripts: RwLock<HashMap<String, Arc<ScriptEntry>>>,
    next_key: AtomicU64,
}

impl Default for LuaFactory {
    fn default() -> Self {
        Self::new(LuaConfig::default())
    }
}

impl LuaFactory {
    /// Starts `pool_size` VM threads (they exit when the last handle is dropped).
    pub fn new(cfg: LuaConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool: pool::Pool::new(cfg),
                scripts: RwLock::new(HashMap::new()),
                next_key: AtomicU64::new(1),
            }),
        }
    }

    pub fn config(&self) -> &LuaConfig {
        self.inner.pool.config()
    }

    /// Register (or replace) the script behind `fn_id`. Spawners already built keep
    /// the script they resolved.
    pub fn register_script(&self, fn_id: &str, script: LuaScript) {
        let key = ScriptKey::Registered(self.inner.next_key.fetch_add(1, Ordering::Relaxed));
        let entry = Arc::new(ScriptEntry {
            key,
            label: script.label.into(),
            source: script.source.into(),
            bridges: script.bridges,
        });
        self.inner.scripts.write().insert(fn_id.to_string(), entry);
    }

    /// Resolve a spec: `{"fn_id": "<id>"}` or `{"source": "<lua code>"}`.
    /// The error is the compile-time (`InvalidSpec`) detail.
    pub fn prepare(&self, agent: &str, spec: &Value) -> Result<PreparedScript, String> {
        if let Some(fn_id) = spec.get("fn_id").and_then(Value::as_str) {
            let entry = self.inner.scripts.read().get(fn_id).cloned();
            return entry
                .map(PreparedScript)
                .ok_or_else(|| format!("fn_id '{fn_id}' not registered in factory"));
        }
        let Some(source) = spec.get("source").and_then(Value::as_str) else {
            return Err("lua spec: 'fn_id' (string) required".into());
        };
        let label = format!("inline:{agent}");
        check_compiles(&label, source, self.config().memory_limit)
            .map_err(|e| format!("lua spec: source does not compile: {e}"))?;
        let mut h = blake3::Hasher::new();
        h.update(label.as_bytes());
        h.update(&[0]);
        h.update(source.as_bytes());
        Ok(PreparedScript(Arc::new(ScriptEntry {
            key: ScriptKey::Inline(*h.finalize().as_bytes()),
            label: label.into(),
            source: source.into(),
            bridges: BTreeMap::new(),
        })))
    }

    /// Validate `spec` and build the route for `agent`.
    pub fn build(&self, agent: &str, spec: &Value) -> Result<Arc<dyn Spawner>, String> {
        Ok(Arc::new(LuaSpawner {
            factory: self.clone(),
            script: self.prepare(agent, spec)?,
        }))
    }

    /// Run a script on the pool: `(value, ok)` per §9.2 step 5, or the worker error
    /// text. Dropping the future cancels the script.
    pub async fn run(
        &self,
        script: &PreparedScript,
        inputs: LuaInputs,
    ) -> Result<(Value, bool), String> {
        self.inner.pool.run(script.0.clone(), inputs).await
    }
}

struct LuaSpawner {
    factory: LuaFactory,
    script: PreparedScript,
}

#[async_trait::async_trait]
impl Spawner for LuaSpawner {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        let (value, ok) = self
            .factory
            .run(&self.script, LuaInputs::from_ctx(ctx))
            .await
            .map_err(SpawnError::worker_fn)?;
        ctx.finish(value, ok);
        Ok(())
    }
}

thread_local! {
    /// A bare VM used only to syntax-check inline sources.
    static CHECKER: RefCell<Option<Lua>> = const { RefCell::new(None) };
}

fn check_compiles(label: &str, source: &str, memory_limit: usize) -> Result<(), String> {
    CHECKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                Lua::new_with(StdLib::NONE, LuaOptions::default()).map_err(|e| e.to_string())?,
            );
        }
        let lua = slot.as_ref().expect("checker VM just created");
        let _ = lua.set_memory_limit(memory_limit);
        let r = lua
            .load(source)
            .set_name(format!("={label}"))
            .set_mode(ChunkMode::Text)
            .into_function();
        match r {
            Ok(_) => Ok(()),
            Err(mlua::Error::SyntaxError { message, .. }) => Err(message),
            Err(e) => {
                *slot = None; // e.g. out of memory: start over next time
                Err(e.to_string())
            }
        }
    })
}
