//! Everything `mse serve` can be configured with. The CLI fills this from flags,
//! the TOML config file, `MSE_*` environment variables and defaults.

use mse_blueprint::AgentKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "mse.db";

/// Where the stores keep their state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// One SQLite database file, `<data_dir>/mse.db` (WAL mode, migrations at start).
    #[default]
    Sqlite,
    /// Volatile in-memory stores (tests and demos): everything is lost on exit.
    Memory,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Sqlite => "sqlite",
            Storage::Memory => "memory",
        }
    }
}

impl std::str::FromStr for Storage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "sqlite" => Ok(Storage::Sqlite),
            "memory" => Ok(Storage::Memory),
            other => Err(format!("expected 'sqlite' or 'memory', got '{other}'")),
        }
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resolved server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Run the enhance consumer (seeds `enhance-default` and setting `default`,
    /// re-queues interrupted issues, then processes issues one at a time).
    pub enhance_enabled: bool,
    /// Idle poll interval of the enhance consumer.
    pub enhance_interval: Duration,
    pub bind: SocketAddr,
    /// Where persistent state lives (token secret, the SQLite database).
    pub data_dir: PathBuf,
    /// SQLite (`<data_dir>/mse.db`, the default of `mse serve`) or in-memory stores
    /// (the default of [`ServerConfig::ephemeral`], which tests use).
    pub storage: Storage,
    /// Base directory of `$file` / `$agent_md` references in Blueprints registered
    /// through `POST /v1/blueprints/{id}`; `None` disables expansion.
    pub blueprint_ref_base: Option<PathBuf>,
    /// Kind of `$agent_md` agents when neither the reference nor the Blueprint names
    /// one (`None`: `operator`).
    pub default_agent_kind: Option<AgentKind>,
    /// HMAC secret for capability tokens (at least 32 bytes).
    pub token_secret: Vec<u8>,
    /// When set, required as `Authorization: Bearer <admin token>` on every route
    /// that mints credentials or changes state (decision 9).
    pub admin_token: Option<String>,
    /// Allow `subprocess` agents (decision 10).
    pub allow_subprocess: bool,
    pub limits: Limits,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Id of the Blueprint seeded at boot.
    pub seed_blueprint_id: String,
    /// Base URL operators and their SubAgents use to reach this server, named in
    /// `spawn` directives (e.g. `https://mse.example.org`). `None`: `http://` + the
    /// bound address (an unspecified IP such as `0.0.0.0` becomes loopback).
    pub public_base_url: Option<String>,
}

/// Every configurable limit (decision 4), with its default.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Request body size (default 16 MiB); larger bodies get 413.
    pub max_body_bytes: usize,
    /// JSON nesting depth of request bodies (default 128).
    pub max_json_depth: usize,
    /// Items of one fanout (default 1024).
    pub max_fanout_width: usize,
    /// Nesting of fanouts (default 8).
    pub max_fanout_depth: usize,
    /// Loop iteration ceiling (default 100 000).
    pub max_loop_iterations: u64,
    /// Runs evaluated at once (default 1024); more get 429.
    pub max_concurrent_runs: usize,
    /// Upper bound on a run's TTL (default 7 days).
    pub max_run_ttl: Duration,
    /// Lua wall time per dispatch (default 5 s) and memory per VM (default 64 MiB).
    pub lua_time_limit: Duration,
    pub lua_memory_limit: usize,
    /// Subprocess wall time (default 300 s) and stdout cap (default 16 MiB).
    pub subprocess_time_limit: Duration,
    pub subprocess_max_output: usize,
    /// How long an operator reply may take (default 300 s, never past the run TTL).
    pub operator_reply_timeout: Duration,
    /// How long an operator session's pending requests survive a lost socket
    /// before they fail (default 30 s); a reconnect within it may still answer them.
    pub operator_reconnect_grace: Duration,
    /// Operator sessions with no socket and nothing pending for this long are
    /// deleted and their roles released (default 24 h; zero disables).
    pub operator_idle_ttl: Duration,
    /// WebSocket ping period on operator sockets; a peer silent for two periods is
    /// disconnected (default 30 s; zero disables pings).
    pub operator_ping_interval: Duration,
    /// How long a client may take to send a request's headers (default 30 s); a
    /// slow or stalled client loses its connection.
    pub header_read_timeout: Duration,
    /// Retention of finished tasks (default 300 s).
    pub task_retention: Duration,
    /// Retained finished tasks at most (default 100 000).
    pub max_retained_tasks: usize,
    /// Data-plane output records kept at most; the oldest go first (default 100 000).
    pub max_output_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_json_depth: 128,
            max_fanout_width: 1024,
            max_fanout_depth: 8,
            max_loop_iterations: 100_000,
            max_concurrent_runs: 1024,
            max_run_ttl: Duration::from_secs(7 * 24 * 3600),
            lua_time_limit: Duration::from_secs(5),
            lua_memory_limit: 64 * 1024 * 1024,
            subprocess_time_limit: Duration::from_secs(300),
            subprocess_max_output: 16 * 1024 * 1024,
            operator_reply_timeout: Duration::from_secs(300),
            operator_reconnect_grace: Duration::from_secs(30),
            operator_idle_ttl: Duration::from_secs(24 * 3600),
            operator_ping_interval: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            task_retention: Duration::from_secs(300),
            max_retained_tasks: 100_000,
            max_output_records: mse_store::memory::DEFAULT_MAX_OUTPUT_RECORDS,
        }
    }
}

impl ServerConfig {
    /// A config for tests and embedding: loopback port 0, a random secret,
    /// in-memory stores (set `storage` to [`Storage::Sqlite`] for a database under
    /// `data_dir`).
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        let mut secret = vec![0u8; 32];
        mse_engine::ids::random_bytes(&mut secret);
        Self {
            enhance_enabled: false,
            enhance_interval: Duration::from_millis(100),
            bind: "127.0.0.1:0".parse().expect("valid address"),
            data_dir,
            storage: Storage::Memory,
            blueprint_ref_base: None,
            default_agent_kind: None,
            token_secret: secret,
            admin_token: None,
            allow_subprocess: false,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(10),
            seed_blueprint_id: "main".into(),
            public_base_url: None,
        }
    }
}

impl ServerConfig {
    /// The database file, when the stores are SQLite.
    pub fn database_path(&self) -> Option<PathBuf> {
        match self.storage {
            Storage::Sqlite => Some(self.data_dir.join(DATABASE_FILE)),
            Storage::Memory => None,
        }
    }
}
