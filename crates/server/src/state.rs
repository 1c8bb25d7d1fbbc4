//! [`AppState`]: the engine, the launcher, the stores, the configuration and the
//! `/v1/sessions` map, shared by every handler behind one `Arc` (a request clones
//! a pointer, nothing else).
//!
//! Building it wires the pieces together in the order of http-api.md §13.2: the
//! engine (secret, retention), its built-in layers, the spawner factories (Lua with
//! its limits, subprocess only when allowed), the launcher (flow limits,
//! concurrency, TTL ceiling), the operator hub (login sessions served over
//! `/v1/operators/{sid}/ws`), the stores, and the seed Blueprint.

use crate::config::ServerConfig;
use crate::error::ServerError;
use mse_blueprint::{LaunchConfig, Launcher, SpawnerFactories};
use mse_engine::{Engine, EngineConfig};
use mse_operators::{OperatorConfig, OperatorHub};
use mse_store::memory::{MemoryBlueprintStore, MemoryOutputStore};
use mse_store::{BlueprintStore, OutputStore};
use mse_workers::lua::{LuaConfig, LuaFactory};
use mse_workers::rust_fn::RustFnRegistry;
use mse_workers::subprocess::{SubprocessConfig, SubprocessFactory};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
    blueprints: Arc<dyn BlueprintStore>,
    outputs: Arc<dyn OutputStore>,
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
        let factories =
            SpawnerFactories::standard(&engine, RustFnRegistry::default(), lua, subprocess);
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
        let blueprints: Arc<dyn BlueprintStore> = Arc::new(MemoryBlueprintStore::new());
        let outputs: Arc<dyn OutputStore> = Arc::new(MemoryOutputStore::default());
        crate::seed::seed(blueprints.as_ref(), &cfg.seed_blueprint_id).await?;
        Ok(AppState {
            inner: Arc::new(Inner {
                engine,
                launcher,
                blueprints,
                outputs,
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
        &self.inner.blueprints
    }

    pub fn outputs(&self) -> &Arc<dyn OutputStore> {
        &self.inner.outputs
    }

    /// Kind of the Blueprint store (`memory`).
    pub fn blueprint_store_kind(&self) -> &'static str {
        "memory"
    }

    /// Kind of the output store (`memory`).
    pub fn output_store_kind(&self) -> &'static str {
        "memory"
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
