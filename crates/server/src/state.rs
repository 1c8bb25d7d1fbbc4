//! [`AppState`]: the engine, the launcher, the stores, the configuration and the
//! `/v1/sessions` map, shared by every handler behind one `Arc` (a request clones
//! a pointer, nothing else).
//!
//! Building it wires the pieces together in the order of http-api.md §13.2: the
//! engine (secret, retention), its built-in layers, the spawner factories (Lua with
//! its limits, subprocess only when allowed), the launcher (flow limits,
//! concurrency, TTL ceiling), the operator hub (login sessions served over
//! `/v1/operators/{sid}/ws`), the stores, and the seed Blueprint.
//!
//! Stores (Blueprints, outputs, issues, enhance settings, enhance log and the
//! enhance ledger over them): with [`Storage::Sqlite`] one database file
//! (`<data_dir>/mse.db`, WAL, migrations applied at open) is opened once and every
//! store is built on it; a
//! database that cannot be opened or written (locked, read-only, corrupt, newer
//! schema) stops the start with a one-line [`ServerError::Storage`]. With
//! [`Storage::Memory`] the stores are volatile.

use crate::cache::{InvalidatingLedger, InvalidatingStore, ResolveCache};
use crate::config::{ServerConfig, Storage};
use crate::error::ServerError;
use mse_blueprint::{
    AgentKind, Blueprint, BlueprintVersion, CompileError, CompiledBlueprint, LaunchConfig,
    Launcher, SpawnerFactories,
};
use mse_engine::{Engine, EngineConfig};
use mse_operators::{OperatorConfig, OperatorHub};
use mse_store::memory::{
    MemoryBlueprintStore, MemoryEnhanceLogStore, MemoryEnhanceSettingStore, MemoryIssueStore,
    MemoryLedger, MemoryOutputStore,
};
use mse_store::sqlite::{
    Database, SqliteBlueprintStore, SqliteEnhanceLogStore, SqliteEnhanceSettingStore,
    SqliteIssueStore, SqliteLedger, SqliteOutputStore,
};
use mse_store::{
    BlueprintStore, EnhanceLedger, EnhanceLogStore, EnhanceSettingStore, IssueStore, OutputStore,
    StoreError, StoredBlueprint, VersionSelector,
};
use mse_workers::lua::{LuaConfig, LuaFactory};
use mse_workers::rust_fn::RustFnRegistry;
use mse_workers::subprocess::{SubprocessConfig, SubprocessFactory};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// TTL of a run when neither the request nor the Blueprint sets one (§5.3).
pub const SERVER_DEFAULT_TTL_SECS: u64 = 1800;

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    launcher: Launcher,
    stores: Stores,
    /// Compiled stored Blueprints by version (`POST /v1/tasks` by id).
    compiled: CompiledCache,
    config: ServerConfig,
    sessions: SessionMap,
    operators: Arc<OperatorHub>,
    /// Cancelled when the server shuts down: open operator sockets close (1001).
    shutdown: CancellationToken,
    /// The address actually bound (known after `bind`).
    local_addr: OnceLock<SocketAddr>,
}

/// The base URL named in operator `spawn` directives: the configured
/// `public_base_url` (trailing `/` removed), else `http://<addr>` with an
/// unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
pub fn public_base_url(cfg: &ServerConfig, addr: SocketAddr) -> String {
    if let Some(url) = &cfg.public_base_url {
        return url.trim_end_matches('/').to_string();
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

impl AppState {
    /// Build everything but the listener (see the module doc). Seeds the seed
    /// Blueprint when its id has no head. Operator directives name
    /// `cfg.public_base_url`, else `cfg.bind` ([`crate::bind`] passes the bound
    /// address instead, which matters for port 0).
    pub async fn build(cfg: ServerConfig) -> Result<AppState, ServerError> {
        let addr = cfg.bind;
        Self::build_at(cfg, addr).await
    }

    /// [`AppState::build`] for a server listening on `addr`.
    pub(crate) async fn build_at(
        cfg: ServerConfig,
        addr: SocketAddr,
    ) -> Result<AppState, ServerError> {
        if cfg.token_secret.is_empty() {
            return Err(ServerError::Config("token secret is empty".into()));
        }
        if let Some(base) = &cfg.blueprint_ref_base {
            if !base.is_dir() {
                return Err(ServerError::Config(format!(
                    "blueprint ref base {} is not a directory",
                    base.display()
                )));
            }
        }
        let limits = &cfg.limits;
        let engine = Engine::new(EngineConfig {
            token_secret: Some(cfg.token_secret.clone()),
            task_retention: limits.task_retention,
            max_retained_tasks: limits.max_retained_tasks,
            ..EngineConfig::default()
        });
        mse_engine::layers::builtin::register_defaults(engine.layers());
        let lua = LuaFactory::new(LuaConfig {
            time_limit: limits.lua_time_limit,
            memory_limit: limits.lua_memory_limit,
            ..LuaConfig::default()
        });
        let base_url = public_base_url(&cfg, addr);
        let subprocess = cfg.allow_subprocess.then(|| {
            SubprocessFactory::new(SubprocessConfig {
                time_limit: limits.subprocess_time_limit,
                max_output_bytes: limits.subprocess_max_output,
                // Children can self-fetch with MSE_WORKER_HANDLE against this URL.
                extra_env: vec![("MSE_BASE_URL".into(), base_url.clone())],
                ..SubprocessConfig::default()
            })
        });
        let rust_fns = RustFnRegistry::default();
        let factories = SpawnerFactories::standard(&engine, rust_fns.clone(), lua, subprocess);
        // The enhance pipeline's steps; its `compile` axis uses these very factories.
        let compile_with = factories.clone();
        let compile_check: mse_enhance::CompileCheck =
            Arc::new(move |bp: &mse_blueprint::Blueprint| {
                mse_blueprint::compile(&Arc::new(bp.clone()), &compile_with)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        mse_enhance::register(&rust_fns, Some(compile_check));
        let launcher = Launcher::new(
            engine.clone(),
            factories,
            LaunchConfig {
                flow_limits: mse_flow::Limits {
                    max_fanout_width: limits.max_fanout_width,
                    max_loop_iterations: limits.max_loop_iterations,
                    max_fanout_depth: limits.max_fanout_depth,
                },
                max_concurrent_runs: limits.max_concurrent_runs.max(1),
                default_ttl: Duration::from_secs(SERVER_DEFAULT_TTL_SECS),
                max_ttl: limits.max_run_ttl,
            },
        );
        let operators = OperatorHub::new(
            engine.clone(),
            OperatorConfig {
                reply_timeout: limits.operator_reply_timeout,
                reconnect_grace: limits.operator_reconnect_grace,
                idle_ttl: limits.operator_idle_ttl,
                ping_interval: limits.operator_ping_interval,
                public_base_url: base_url,
                ..OperatorConfig::default()
            },
        );
        let stores = open_stores(&cfg).await?;
        crate::seed::seed(stores.blueprints.as_ref(), &cfg.seed_blueprint_id).await?;
        Ok(AppState {
            inner: Arc::new(Inner {
                engine,
                launcher,
                stores,
                compiled: CompiledCache::new(COMPILED_CACHE_ENTRIES),
                config: cfg,
                sessions: SessionMap::default(),
                operators,
                shutdown: CancellationToken::new(),
                local_addr: OnceLock::new(),
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn launcher(&self) -> &Launcher {
        &self.inner.launcher
    }

    pub fn blueprints(&self) -> &Arc<dyn BlueprintStore> {
        &self.inner.stores.blueprints
    }

    pub fn outputs(&self) -> &Arc<dyn OutputStore> {
        &self.inner.stores.outputs
    }

    /// The enhance issue queue (routes: next issue).
    pub fn issues(&self) -> &Arc<dyn IssueStore> {
        &self.inner.stores.issues
    }

    /// Enhance settings (routes: next issue).
    pub fn enhance_settings(&self) -> &Arc<dyn EnhanceSettingStore> {
        &self.inner.stores.settings
    }

    /// The enhance outcome log (routes: next issue).
    pub fn enhance_log(&self) -> &Arc<dyn EnhanceLogStore> {
        &self.inner.stores.log
    }

    /// Atomic finish of an enhance issue over the stores above.
    pub fn enhance_ledger(&self) -> &Arc<dyn EnhanceLedger> {
        &self.inner.stores.ledger
    }

    /// The enhance consumer over this state's stores and launcher.
    pub fn enhance_consumer(&self) -> mse_enhance::EnhanceConsumer {
        let cfg = self.config();
        mse_enhance::EnhanceConsumer::new(
            mse_enhance::EnhanceStores {
                blueprints: self.blueprints().clone(),
                issues: self.issues().clone(),
                settings: self.enhance_settings().clone(),
                log: self.enhance_log().clone(),
                ledger: self.enhance_ledger().clone(),
            },
            self.launcher().clone(),
            mse_enhance::ConsumerConfig {
                interval: cfg.enhance_interval,
                allow_subprocess_spawner: cfg.allow_subprocess,
                wait_for_operators: true,
                ..mse_enhance::ConsumerConfig::default()
            },
        )
    }

    /// The database behind the stores (`None` with in-memory storage).
    pub fn database(&self) -> Option<&Database> {
        self.inner.stores.database.as_ref()
    }

    /// Kind of the stores: `sqlite` or `memory`.
    pub fn storage(&self) -> Storage {
        if self.inner.stores.database.is_some() {
            Storage::Sqlite
        } else {
            Storage::Memory
        }
    }

    /// `sqlite <path>` or `memory` (startup log line).
    pub fn storage_description(&self) -> String {
        match self.database().and_then(Database::path) {
            Some(p) => format!("sqlite {}", p.display()),
            None => "memory".to_string(),
        }
    }

    /// Kind of the Blueprint store (`sqlite` or `memory`).
    pub fn blueprint_store_kind(&self) -> &'static str {
        self.storage().as_str()
    }

    /// Kind of the output store (`sqlite` or `memory`).
    pub fn output_store_kind(&self) -> &'static str {
        self.storage().as_str()
    }

    /// Resolve a stored Blueprint for a run (`POST /v1/tasks` by id): heads and
    /// fixed versions come from the resolution cache when fresh (see `cache.rs`).
    pub async fn resolve(
        &self,
        id: &str,
        selector: &VersionSelector,
    ) -> Result<StoredBlueprint, StoreError> {
        mse_store::validate_blueprint_id(id)?;
        self.inner
            .stores
            .resolve_cache
            .resolve(self.blueprints().as_ref(), id, selector)
            .await
    }

    /// The compiled form of a stored Blueprint version, compiled at most once while
    /// it stays in the cache (see [`CompiledCache`]).
    pub fn compiled(
        &self,
        version: BlueprintVersion,
        bp: &Arc<Blueprint>,
    ) -> Result<Arc<CompiledBlueprint>, CompileError> {
        self.inner
            .compiled
            .get_or_compile(version, bp, &self.inner.launcher)
    }

    /// Entries in the resolution cache (heads and fixed versions).
    pub fn resolve_cache_len(&self) -> usize {
        self.inner.stores.resolve_cache.len()
    }

    /// Entries in the compiled-Blueprint cache.
    pub fn compiled_cache_len(&self) -> usize {
        self.inner.compiled.len()
    }

    pub(crate) fn sessions(&self) -> &SessionMap {
        &self.inner.sessions
    }

    /// Operator login sessions (`/v1/operators`).
    pub fn operators(&self) -> &Arc<OperatorHub> {
        &self.inner.operators
    }

    /// Cancelled once the server begins shutting down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The bound address, or the configured one before binding.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .local_addr
            .get()
            .copied()
            .unwrap_or(self.inner.config.bind)
    }

    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.inner.local_addr.set(addr);
    }
}

/// The stores a server runs on, all on one database (or all in memory).
struct Stores {
    blueprints: Arc<dyn BlueprintStore>,
    outputs: Arc<dyn OutputStore>,
    issues: Arc<dyn IssueStore>,
    settings: Arc<dyn EnhanceSettingStore>,
    log: Arc<dyn EnhanceLogStore>,
    ledger: Arc<dyn EnhanceLedger>,
    database: Option<Database>,
    /// Cleared by every write through `blueprints` and `ledger`.
    resolve_cache: Arc<ResolveCache>,
}

impl Stores {
    /// Route every Blueprint write (direct or through the ledger) past the
    /// resolution cache.
    fn with_cache(mut self) -> Self {
        let cache = self.resolve_cache.clone();
        self.blueprints = Arc::new(InvalidatingStore {
            inner: self.blueprints,
            cache: cache.clone(),
        });
        self.ledger = Arc::new(InvalidatingLedger {
            inner: self.ledger,
            cache,
        });
        self
    }
}

async fn open_stores(cfg: &ServerConfig) -> Result<Stores, ServerError> {
    let max_outputs = cfg.limits.max_output_records.max(1);
    let Some(path) = cfg.database_path() else {
        let blueprints = Arc::new(MemoryBlueprintStore::new());
        let issues = Arc::new(MemoryIssueStore::new());
        let log = Arc::new(MemoryEnhanceLogStore::new());
        // The ledger works on the very stores the routes see.
        let ledger = Arc::new(MemoryLedger::new(
            blueprints.clone(),
            issues.clone(),
            log.clone(),
        ));
        return Ok(Stores {
            blueprints,
            outputs: Arc::new(MemoryOutputStore::new(max_outputs)),
            issues,
            settings: Arc::new(MemoryEnhanceSettingStore::new()),
            log,
            ledger,
            database: None,
            resolve_cache: Arc::default(),
        }
        .with_cache());
    };
    let db = open_database(&path).await?;
    Ok(Stores {
        blueprints: Arc::new(SqliteBlueprintStore::new(db.clone())),
        outputs: Arc::new(SqliteOutputStore::new(db.clone(), max_outputs)),
        issues: Arc::new(SqliteIssueStore::new(db.clone())),
        settings: Arc::new(SqliteEnhanceSettingStore::new(db.clone())),
        log: Arc::new(SqliteEnhanceLogStore::new(db.clone())),
        ledger: Arc::new(SqliteLedger::new(db.clone())),
        database: Some(db),
        resolve_cache: Arc::default(),
    }
    .with_cache())
}

/// Open the database (creating its directory if needed), apply the migrations and
/// make sure it can be written: a read-only or locked file is reported now, not at
/// the first write.
pub async fn open_database(path: &Path) -> Result<Database, ServerError> {
    let fail = |detail: String| {
        ServerError::Storage(format!(
            "cannot use the database {}: {detail}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
    }
    let owned: PathBuf = path.to_path_buf();
    let db = tokio::task::spawn_blocking(move || Database::open(&owned))
        .await
        .map_err(|e| fail(format!("open task failed: {e}")))?
        .map_err(|e| fail(storage_detail(e, path)))?;
    db.call(|c| {
        // SQLite silently opens a write-protected file read-only.
        if c.is_readonly(rusqlite::MAIN_DB)
            .map_err(mse_store::sqlite::map_error)?
        {
            return Err(StoreError::Unavailable(
                "database is read-only: the file cannot be opened for writing".into(),
            ));
        }
        // Taking the write lock reports a database another process holds locked.
        c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(mse_store::sqlite::map_error)
    })
    .await
    .map_err(|e| fail(storage_detail(e, path)))?;
    Ok(db)
}

/// A store error's text without the path the message already starts with, plus a
/// hint at the usual cause.
fn storage_detail(e: StoreError, path: &Path) -> String {
    let text = match e {
        StoreError::Unavailable(m) => m,
        other => other.to_string(),
    };
    let p = path.display().to_string();
    let mut detail = text
        .strip_prefix(&format!("cannot open {p}: "))
        .or_else(|| text.strip_prefix(&format!("{p}: ")))
        .unwrap_or(&text)
        .to_string();
    // `database is locked: database is locked` (category and SQLite's own text).
    if let Some((a, b)) = detail.split_once(": ") {
        if a == b {
            detail = a.to_string();
        }
    }
    let hint = if detail.contains("read-only") || detail.contains("readonly") {
        " (check the permissions of the file and of its directory)"
    } else if detail.contains("locked") || detail.contains("busy") {
        " (is another process, e.g. a second mse serve, using this data directory?)"
    } else if detail.contains("corrupt") || detail.contains("not a database") {
        " (restore it from a backup, or move it away to start with an empty database)"
    } else {
        ""
    };
    format!("{detail}{hint}")
}

/// Compiled stored Blueprints keyed by version, so `POST /v1/tasks` by id compiles a
/// version once instead of on every run. Bounded: when full, it is cleared (the
/// next runs recompile what they use). Blueprints with `operator` agents are never
/// cached: compiling binds the operator backends registered at that moment.
pub(crate) struct CompiledCache {
    map: Mutex<HashMap<BlueprintVersion, Arc<CompiledBlueprint>>>,
    capacity: usize,
}

/// Entries of the compiled-Blueprint cache.
pub const COMPILED_CACHE_ENTRIES: usize = 256;

impl CompiledCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether a compiled `bp` may be reused by later runs.
    pub fn cacheable(bp: &Blueprint) -> bool {
        !bp.agents.iter().any(|a| a.kind == AgentKind::Operator)
    }

    pub fn get_or_compile(
        &self,
        version: BlueprintVersion,
        bp: &Arc<Blueprint>,
        launcher: &Launcher,
    ) -> Result<Arc<CompiledBlueprint>, CompileError> {
        if let Some(hit) = self.map.lock().get(&version) {
            return Ok(hit.clone());
        }
        // Compiling happens outside the lock.
        let compiled = Arc::new(launcher.compile(bp)?);
        if Self::cacheable(bp) {
            let mut map = self.map.lock();
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(version, compiled.clone());
        }
        Ok(compiled)
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// Sessions attached through `POST /v1/sessions`: token nonce (= session id) →
/// token expiry. Entries past their expiry are dropped on later inserts (the
/// engine reclaims the sessions themselves), so the map stays bounded by the
/// number of live sessions.
#[derive(Default)]
pub(crate) struct SessionMap {
    inner: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    by_nonce: HashMap<String, u64>,
    /// Size after the last purge; the next purge runs once the map doubles.
    purged_at: usize,
}

impl SessionMap {
    pub fn insert(&self, nonce: String, expire_at: u64) {
        let now = mse_engine::now_unix();
        let mut s = self.inner.lock();
        if s.by_nonce.len() >= (s.purged_at * 2).max(64) {
            s.by_nonce.retain(|_, exp| *exp > now);
            s.purged_at = s.by_nonce.len();
        }
        s.by_nonce.insert(nonce, expire_at);
    }

    /// Remove and return the entry's expiry.
    pub fn remove(&self, nonce: &str) -> Option<u64> {
        self.inner.lock().by_nonce.remove(nonce)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().by_nonce.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_defaults_to_the_bound_address() {
        let mut cfg = ServerConfig::ephemeral("/tmp/x".into());
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            public_base_url(&cfg, at("10.1.2.3:80")),
            "http://10.1.2.3:80"
        );
        assert_eq!(
            public_base_url(&cfg, at("0.0.0.0:7777")),
            "http://127.0.0.1:7777"
        );
        assert_eq!(public_base_url(&cfg, at("[::]:7777")), "http://[::1]:7777");
        cfg.public_base_url = Some("https://mse.example.org/".into());
        assert_eq!(
            public_base_url(&cfg, at("0.0.0.0:1")),
            "https://mse.example.org"
        );
    }
}
