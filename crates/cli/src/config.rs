//! Configuration of `mse serve`: three partial sources merged by precedence.
//!
//! Every option has a flag (`--max-body-bytes`), a config-file key of the same name
//! with `-` → `_` (`max_body_bytes`) and an environment variable `MSE_<KEY>`
//! (`MSE_MAX_BODY_BYTES`). Each source is parsed into an [`Options`] (all fields
//! optional), validated on its own so errors can name where the bad value came from,
//! and the three are merged field by field: **flag > config file > environment >
//! built-in default**. Clap's `env` attribute is deliberately not used: it would put
//! the environment above the file.

use mse_blueprint::AgentKind;
use mse_server::{Limits, ServerConfig, Storage};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:7777";
/// Default id of the Blueprint seeded at boot.
pub const DEFAULT_SEED_BLUEPRINT_ID: &str = "main";
/// Default drain time for in-flight requests on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Environment variable naming the config file (below `--config`).
pub const CONFIG_ENV: &str = "MSE_CONFIG";
/// Prefix of every environment variable read.
pub const ENV_PREFIX: &str = "MSE_";
/// Minimum decoded length of a token secret.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why the configuration could not be assembled. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {location}{message}", path.display())]
    Parse {
        path: PathBuf,
        /// `line L, column C: ` or empty.
        location: String,
        message: String,
    },
    /// A value that parsed but is not acceptable; `origin` says where it came from.
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("expected 'text' or 'json', got '{s}'")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// A token-signing secret (hex on input, at least [`MIN_SECRET_BYTES`] decoded).
/// Its value never appears in `Debug` output or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s.trim()).map_err(|_| {
            "not valid hex (expected an even number of 0-9a-f characters)".to_string()
        })?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "too short: {} bytes decoded, at least {MIN_SECRET_BYTES} required ({} hex characters)",
                bytes.len(),
                2 * MIN_SECRET_BYTES
            ));
        }
        Ok(Self(bytes))
    }
}

/// The admin bearer token (decision 9). Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "must be printable ASCII without spaces (it is sent as a Bearer token)".into(),
            );
        }
        Ok(Self(s.to_string()))
    }
}

/// A non-empty identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident(pub String);

impl FromStr for Ident {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// The public base URL of the server (`http://` or `https://` + host), without a
/// trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(pub String);

impl FromStr for BaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let url = s.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or("must start with http:// or https://")?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must name a host, without spaces (e.g. http://10.0.0.5:7777)".into());
        }
        Ok(Self(url.to_string()))
    }
}

/// Where the stores keep their state: `sqlite` (default) or `memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageKind(pub Storage);

impl FromStr for StorageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(StorageKind)
    }
}

/// An agent kind by its wire name (`operator`, `agent_block`, `rust_fn`, `lua`,
/// `subprocess`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentKindName(pub AgentKind);

impl FromStr for AgentKindName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        AgentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .map(AgentKindName)
            .ok_or_else(|| {
                format!(
                    "unknown agent kind '{s}' (expected one of: {})",
                    AgentKind::ALL.map(AgentKind::as_str).join(", ")
                )
            })
    }
}

/// Deserialize through `FromStr` from a TOML string, keeping the parse message.
macro_rules! deserialize_via_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_from_str!(
    Secret,
    AdminToken,
    Ident,
    BaseUrl,
    StorageKind,
    AgentKindName
);

/// Parsing of one environment-variable value.
pub trait EnvValue: Sized {
    fn parse_env(s: &str) -> Result<Self, String>;
}

macro_rules! env_value_via_from_str {
    ($($t:ty),*) => {$(
        impl EnvValue for $t {
            fn parse_env(s: &str) -> Result<Self, String> {
                s.trim().parse::<$t>().map_err(|e| e.to_string())
            }
        }
    )*};
}
env_value_via_from_str!(
    u64,
    usize,
    SocketAddr,
    LogFormat,
    Ident,
    BaseUrl,
    StorageKind,
    AgentKindName
);

impl EnvValue for PathBuf {
    fn parse_env(s: &str) -> Result<Self, String> {
        Ok(PathBuf::from(s))
    }
}

impl EnvValue for Secret {
    fn parse_env(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

impl EnvValue for AdminToken {
    fn parse_env(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

impl EnvValue for bool {
    fn parse_env(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            other => Err(format!("expected true or false, got '{other}'")),
        }
    }
}

/// Defines [`Options`] from one list of fields, so the struct, the key list, the
/// merge and the environment reader cannot drift apart.
macro_rules! options {
    ($( $(#[$m:meta])* $field:ident : $ty:ty ),* $(,)?) => {
        /// One source's worth of settings; `None` = not set by this source.
        /// Also the schema of the TOML config file (unknown keys are an error).
        #[derive(Clone, Debug, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Options {
            $( $(#[$m])* pub $field: Option<$ty>, )*
        }

        impl Options {
            /// Every config key, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Field by field: the value of `self` if set, else that of `lower`.
            pub fn or(self, lower: Options) -> Options {
                Options { $( $field: self.$field.or(lower.$field), )* }
            }

            /// Read `MSE_<KEY>` for every key. Empty values count as unset.
            pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Options, ConfigError> {
                let mut o = Options::default();
                $( o.$field = env_value::<$ty>(stringify!($field), lookup)?; )*
                Ok(o)
            }
        }
    };
}

options! {
    bind: SocketAddr,
    data_dir: PathBuf,
    storage: StorageKind,
    blueprint_ref_base: PathBuf,
    default_agent_kind: AgentKindName,
    token_secret: Secret,
    admin_token: AdminToken,
    allow_subprocess: bool,
    no_enhance: bool,
    enhance_interval_ms: u64,
    seed_blueprint_id: Ident,
    log_format: LogFormat,
    max_body_bytes: usize,
    max_json_depth: usize,
    max_fanout_width: usize,
    max_fanout_depth: usize,
    max_loop_iterations: u64,
    max_concurrent_runs: usize,
    max_run_ttl_secs: u64,
    lua_time_limit_ms: u64,
    lua_memory_limit_bytes: usize,
    subprocess_time_limit_secs: u64,
    subprocess_max_output_bytes: usize,
    operator_reply_timeout_secs: u64,
    operator_reconnect_grace_secs: u64,
    operator_idle_ttl_secs: u64,
    operator_ping_interval_secs: u64,
    header_read_timeout_secs: u64,
    public_base_url: BaseUrl,
    task_retention_secs: u64,
    max_retained_tasks: usize,
    max_output_records: usize,
    shutdown_grace_secs: u64,
}

/// Keys whose value must be greater than zero (zero would make the server unusable).
const POSITIVE_KEYS: &[&str] = &[
    "max_body_bytes",
    "max_json_depth",
    "max_concurrent_runs",
    "max_run_ttl_secs",
    "lua_time_limit_ms",
    "lua_memory_limit_bytes",
    "subprocess_time_limit_secs",
    "max_output_records",
];

/// The environment variable of a config key.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// The flag of a config key.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

fn env_value<T: EnvValue>(
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<T>, ConfigError> {
    let var = env_var(key);
    match lookup(&var) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => T::parse_env(&s)
            .map(Some)
            .map_err(|message| ConfigError::Invalid {
                origin: format!("environment variable {var}"),
                message,
            }),
    }
}

/// Where a set of options came from, for error messages.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    Flags,
    File(&'a Path),
    Env,
}

impl Options {
    /// The numeric value of a key, if it is a numeric key and set.
    fn numeric(&self, key: &str) -> Option<u64> {
        let u = |v: Option<usize>| v.map(|v| v as u64);
        match key {
            "max_body_bytes" => u(self.max_body_bytes),
            "max_json_depth" => u(self.max_json_depth),
            "max_concurrent_runs" => u(self.max_concurrent_runs),
            "max_run_ttl_secs" => self.max_run_ttl_secs,
            "lua_time_limit_ms" => self.lua_time_limit_ms,
            "lua_memory_limit_bytes" => u(self.lua_memory_limit_bytes),
            "subprocess_time_limit_secs" => self.subprocess_time_limit_secs,
            "max_output_records" => u(self.max_output_records),
            _ => None,
        }
    }

    /// Range checks that do not depend on other sources.
    pub fn validate(&self, origin: Origin<'_>) -> Result<(), ConfigError> {
        for key in POSITIVE_KEYS {
            if self.numeric(key) == Some(0) {
                let (origin, what) = match origin {
                    Origin::Flags => (flag(key), String::new()),
                    Origin::File(p) => (format!("config file {}", p.display()), format!("{key}: ")),
                    Origin::Env => (
                        format!("environment variable {}", env_var(key)),
                        String::new(),
                    ),
                };
                return Err(ConfigError::Invalid {
                    origin,
                    message: format!("{what}must be greater than 0"),
                });
            }
        }
        Ok(())
    }
}

/// The config file to read: `--config`, else `$MSE_CONFIG`, else the default path.
/// The flag is `true` when the location was given explicitly (then it must exist).
pub fn config_path(
    flag: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    if let Some(p) = lookup(CONFIG_ENV).filter(|s| !s.is_empty()) {
        return (PathBuf::from(p), true);
    }
    (default_config_path(), false)
}

/// `$HOME/.mse/config.toml` (`.mse/config.toml` when there is no home directory).
pub fn default_config_path() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_default()
        .join(".mse")
        .join("config.toml")
}

/// Read and parse a config file. A missing file is fine unless `explicit`.
/// Returns `None` (and empty options) when nothing was read.
pub fn load_file(path: &Path, explicit: bool) -> Result<Option<Options>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let opts = parse_toml(path, &text)?;
    opts.validate(Origin::File(path))?;
    Ok(Some(opts))
}

/// Parse TOML text into options; errors become one line with a position.
pub fn parse_toml(path: &Path, text: &str) -> Result<Options, ConfigError> {
    toml::from_str::<Options>(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let (line, col) = line_col(text, span.start);
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        // The message may span lines; keep it on one.
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        ConfigError::Parse {
            path: path.to_path_buf(),
            location,
            message,
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The merged configuration, every default applied except the data dir and the
/// token secret (those need the file system; see `secret.rs`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    /// `None` = the platform default.
    pub data_dir: Option<PathBuf>,
    /// SQLite under the data dir (default) or in memory.
    pub storage: Storage,
    /// Base directory of `$file` / `$agent_md` references (`None`: no expansion).
    pub blueprint_ref_base: Option<PathBuf>,
    /// Kind of `$agent_md` agents nobody names (`None`: `operator`).
    pub default_agent_kind: Option<AgentKind>,
    /// `None` = read or generate `<data_dir>/token_secret`.
    pub token_secret: Option<Secret>,
    pub admin_token: Option<AdminToken>,
    pub allow_subprocess: bool,
    /// Run the enhance consumer (`--no-enhance` turns it off).
    pub enhance: bool,
    pub enhance_interval: Duration,
    pub seed_blueprint_id: String,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    /// `None` = `http://` + the bound address.
    pub public_base_url: Option<String>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Merge the three sources (highest first) and apply defaults.
pub fn merge(
    flags: Options,
    file: Options,
    env: Options,
    config_file: Option<PathBuf>,
) -> Settings {
    let o = flags.or(file).or(env);
    let mut limits = Limits::default();
    macro_rules! set {
        ($field:ident = $key:ident) => {
            if let Some(v) = o.$key {
                limits.$field = v;
            }
        };
        ($field:ident = $key:ident, $conv:expr) => {
            if let Some(v) = o.$key {
                limits.$field = $conv(v);
            }
        };
    }
    set!(max_body_bytes = max_body_bytes);
    set!(max_json_depth = max_json_depth);
    set!(max_fanout_width = max_fanout_width);
    set!(max_fanout_depth = max_fanout_depth);
    set!(max_loop_iterations = max_loop_iterations);
    set!(max_concurrent_runs = max_concurrent_runs);
    set!(max_run_ttl = max_run_ttl_secs, Duration::from_secs);
    set!(lua_time_limit = lua_time_limit_ms, Duration::from_millis);
    set!(lua_memory_limit = lua_memory_limit_bytes);
    set!(
        subprocess_time_limit = subprocess_time_limit_secs,
        Duration::from_secs
    );
    set!(subprocess_max_output = subprocess_max_output_bytes);
    set!(
        operator_reply_timeout = operator_reply_timeout_secs,
        Duration::from_secs
    );
    set!(
        operator_reconnect_grace = operator_reconnect_grace_secs,
        Duration::from_secs
    );
    set!(
        operator_idle_ttl = operator_idle_ttl_secs,
        Duration::from_secs
    );
    set!(
        operator_ping_interval = operator_ping_interval_secs,
        Duration::from_secs
    );
    set!(
        header_read_timeout = header_read_timeout_secs,
        Duration::from_secs
    );
    set!(task_retention = task_retention_secs, Duration::from_secs);
    set!(max_retained_tasks = max_retained_tasks);
    set!(max_output_records = max_output_records);
    Settings {
        bind: o
            .bind
            .unwrap_or_else(|| DEFAULT_BIND.parse().expect("valid default address")),
        data_dir: o.data_dir,
        storage: o.storage.map_or(Storage::Sqlite, |s| s.0),
        blueprint_ref_base: o.blueprint_ref_base,
        default_agent_kind: o.default_agent_kind.map(|k| k.0),
        token_secret: o.token_secret,
        admin_token: o.admin_token,
        allow_subprocess: o.allow_subprocess.unwrap_or(false),
        enhance: !o.no_enhance.unwrap_or(false),
        enhance_interval: Duration::from_millis(o.enhance_interval_ms.unwrap_or(100).max(1)),
        seed_blueprint_id: o
            .seed_blueprint_id
            .map_or_else(|| DEFAULT_SEED_BLUEPRINT_ID.to_string(), |i| i.0),
        log_format: o.log_format.unwrap_or_default(),
        limits,
        shutdown_grace: Duration::from_secs(
            o.shutdown_grace_secs.unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
        ),
        public_base_url: o.public_base_url.map(|u| u.0),
        config_file,
    }
}

/// Everything up to the file system: read the file and the environment, merge with
/// the flags.
pub fn resolve(
    flags: Options,
    config_flag: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    flags.validate(Origin::Flags)?;
    let env = Options::from_env(lookup)?;
    env.validate(Origin::Env)?;
    let (path, explicit) = config_path(config_flag, lookup);
    let file = load_file(&path, explicit)?;
    let read = file.is_some().then_some(path);
    Ok(merge(flags, file.unwrap_or_default(), env, read))
}

/// `MSE_*` variables in the environment that match no key (likely typos).
pub fn unknown_env_vars(vars: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|v| v.starts_with(ENV_PREFIX) && v != CONFIG_ENV)
        .filter(|v| !Options::KEYS.iter().any(|k| &env_var(k) == v))
        .collect();
    unknown.sort();
    unknown
}

/// The built-in default of a key, rendered for `--help`.
pub fn default_display(key: &str) -> Option<String> {
    let l = Limits::default();
    let secs = |d: Duration| d.as_secs().to_string();
    Some(match key {
        "bind" => DEFAULT_BIND.into(),
        "data_dir" => format!(
            "{} (the platform data directory + /mse)",
            crate::secret::default_data_dir().display()
        ),
        "storage" => format!(
            "sqlite (one database file, <data_dir>/{}; 'memory' keeps nothing across restarts)",
            mse_server::DATABASE_FILE
        ),
        "blueprint_ref_base" => "none (no $file / $agent_md expansion)".into(),
        "default_agent_kind" => "operator".into(),
        "token_secret" => {
            "random, generated on first start and kept in <data_dir>/token_secret".into()
        }
        "admin_token" => "none (admin routes open, like the reference)".into(),
        "allow_subprocess" => "false".into(),
        "no_enhance" => "false (the enhance consumer runs)".into(),
        "enhance_interval_ms" => "100".into(),
        "seed_blueprint_id" => DEFAULT_SEED_BLUEPRINT_ID.into(),
        "log_format" => "text".into(),
        "max_body_bytes" => l.max_body_bytes.to_string(),
        "max_json_depth" => l.max_json_depth.to_string(),
        "max_fanout_width" => l.max_fanout_width.to_string(),
        "max_fanout_depth" => l.max_fanout_depth.to_string(),
        "max_loop_iterations" => l.max_loop_iterations.to_string(),
        "max_concurrent_runs" => l.max_concurrent_runs.to_string(),
        "max_run_ttl_secs" => secs(l.max_run_ttl),
        "lua_time_limit_ms" => l.lua_time_limit.as_millis().to_string(),
        "lua_memory_limit_bytes" => l.lua_memory_limit.to_string(),
        "subprocess_time_limit_secs" => secs(l.subprocess_time_limit),
        "subprocess_max_output_bytes" => l.subprocess_max_output.to_string(),
        "operator_reply_timeout_secs" => secs(l.operator_reply_timeout),
        "operator_reconnect_grace_secs" => secs(l.operator_reconnect_grace),
        "operator_idle_ttl_secs" => format!("{} (0 = never reap)", secs(l.operator_idle_ttl)),
        "operator_ping_interval_secs" => {
            format!("{} (0 = no pings)", secs(l.operator_ping_interval))
        }
        "public_base_url" => "http:// + the bound address".into(),
        "header_read_timeout_secs" => secs(l.header_read_timeout),
        "task_retention_secs" => secs(l.task_retention),
        "max_retained_tasks" => l.max_retained_tasks.to_string(),
        "max_output_records" => l.max_output_records.to_string(),
        "shutdown_grace_secs" => DEFAULT_SHUTDOWN_GRACE_SECS.to_string(),
        _ => return None,
    })
}

/// Build the server configuration from settings plus the prepared data dir and secret.
pub fn server_config(s: &Settings, data_dir: PathBuf, token_secret: Vec<u8>) -> ServerConfig {
    // Start from `ephemeral` so fields added to ServerConfig later keep a default.
    let mut cfg = ServerConfig::ephemeral(data_dir);
    cfg.bind = s.bind;
    cfg.token_secret = token_secret;
    cfg.admin_token = s.admin_token.as_ref().map(|t| t.0.clone());
    cfg.allow_subprocess = s.allow_subprocess;
    cfg.enhance_enabled = s.enhance;
    cfg.enhance_interval = s.enhance_interval;
    cfg.limits = s.limits.clone();
    cfg.shutdown_grace = s.shutdown_grace;
    cfg.seed_blueprint_id = s.seed_blueprint_id.clone();
    cfg.public_base_url = s.public_base_url.clone();
    cfg.storage = s.storage;
    cfg.blueprint_ref_base = s.blueprint_ref_base.clone();
    cfg.default_agent_kind = s.default_agent_kind;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn toml(text: &str) -> Result<Options, ConfigError> {
        parse_toml(Path::new("/etc/mse.toml"), text)
    }

    #[test]
    fn keys_cover_flags_and_env_names() {
        assert_eq!(Options::KEYS.len(), 33);
        assert_eq!(env_var("max_body_bytes"), "MSE_MAX_BODY_BYTES");
        assert_eq!(flag("max_body_bytes"), "--max-body-bytes");
        for k in Options::KEYS {
            assert!(default_display(k).is_some(), "{k} has no default text");
        }
    }

    #[test]
    fn precedence_flag_file_env_default() {
        let flags = Options {
            bind: Some(addr("127.0.0.1:3")),
            ..Default::default()
        };
        let file = Options {
            bind: Some(addr("127.0.0.1:1")),
            max_json_depth: Some(7),
            ..Default::default()
        };
        let e = Options::from_env(&env(&[
            ("MSE_BIND", "127.0.0.1:2"),
            ("MSE_MAX_JSON_DEPTH", "9"),
            ("MSE_MAX_FANOUT_WIDTH", "5"),
        ]))
        .unwrap();
        let s = merge(flags.clone(), file.clone(), e.clone(), None);
        assert_eq!(s.bind, addr("127.0.0.1:3"));
        assert_eq!(s.limits.max_json_depth, 7, "file beats env");
        assert_eq!(s.limits.max_fanout_width, 5, "env beats default");
        assert_eq!(s.limits.max_body_bytes, Limits::default().max_body_bytes);
        let s = merge(Options::default(), file, e.clone(), None);
        assert_eq!(s.bind, addr("127.0.0.1:1"));
        let s = merge(Options::default(), Options::default(), e, None);
        assert_eq!(s.bind, addr("127.0.0.1:2"));
        let s = merge(
            Options::default(),
            Options::default(),
            Options::default(),
            None,
        );
        assert_eq!(s.bind, addr(DEFAULT_BIND));
        assert_eq!(s.seed_blueprint_id, "main");
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(!s.allow_subprocess);
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn durations_use_their_units() {
        let o = toml(
            "max_run_ttl_secs = 60\nlua_time_limit_ms = 250\nsubprocess_time_limit_secs = 2\n\
             operator_reply_timeout_secs = 3\ntask_retention_secs = 0\nshutdown_grace_secs = 1\n\
             operator_reconnect_grace_secs = 4\noperator_idle_ttl_secs = 0\n\
             operator_ping_interval_secs = 5\n",
        )
        .unwrap();
        let s = merge(Options::default(), o, Options::default(), None);
        assert_eq!(s.limits.operator_reconnect_grace, Duration::from_secs(4));
        assert_eq!(s.limits.operator_idle_ttl, Duration::ZERO);
        assert_eq!(s.limits.operator_ping_interval, Duration::from_secs(5));
        let d = merge(
            Options::default(),
            Options::default(),
            Options::default(),
            None,
        );
        assert_eq!(d.limits.operator_reconnect_grace, Duration::from_secs(30));
        assert_eq!(d.limits.operator_idle_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(d.limits.operator_ping_interval, Duration::from_secs(30));
        assert_eq!(d.public_base_url, None);
        assert_eq!(s.limits.max_run_ttl, Duration::from_secs(60));
        assert_eq!(s.limits.lua_time_limit, Duration::from_millis(250));
        assert_eq!(s.limits.subprocess_time_limit, Duration::from_secs(2));
        assert_eq!(s.limits.operator_reply_timeout, Duration::from_secs(3));
        assert_eq!(s.limits.task_retention, Duration::ZERO);
        assert_eq!(s.shutdown_grace, Duration::from_secs(1));
    }

    #[test]
    fn full_toml_file_parses() {
        let secret = "ab".repeat(32);
        let text = format!(
            "bind = \"0.0.0.0:8080\"\ndata_dir = \"/var/lib/mse\"\ntoken_secret = \"{secret}\"\n\
             admin_token = \"s3cret\"\nallow_subprocess = true\nseed_blueprint_id = \"seed\"\n\
             log_format = \"json\"\nmax_body_bytes = 1024\nmax_json_depth = 16\nmax_fanout_width = 4\n\
             max_fanout_depth = 2\nmax_loop_iterations = 10\nmax_concurrent_runs = 3\n\
             max_run_ttl_secs = 100\nlua_time_limit_ms = 10\nlua_memory_limit_bytes = 1000000\n\
             subprocess_time_limit_secs = 5\nsubprocess_max_output_bytes = 99\n\
             operator_reply_timeout_secs = 7\ntask_retention_secs = 8\nmax_retained_tasks = 9\n\
             shutdown_grace_secs = 2\n"
        );
        let o = toml(&text).unwrap();
        assert_eq!(o.token_secret, Some(Secret(vec![0xab; 32])));
        assert_eq!(o.admin_token, Some(AdminToken("s3cret".into())));
        assert_eq!(o.log_format, Some(LogFormat::Json));
        assert_eq!(o.allow_subprocess, Some(true));
        let s = merge(Options::default(), o, Options::default(), None);
        assert_eq!(s.bind, addr("0.0.0.0:8080"));
        assert_eq!(s.data_dir.as_deref(), Some(Path::new("/var/lib/mse")));
        assert_eq!(s.limits.max_retained_tasks, 9);
        assert_eq!(s.limits.subprocess_max_output, 99);
        assert_eq!(s.seed_blueprint_id, "seed");
    }

    #[test]
    fn toml_errors_are_one_line_with_position() {
        let e = toml("bind = \"127.0.0.1:1\"\nbnid = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config file /etc/mse.toml: line 2, column 1: unknown field `bnid`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = toml("bind = \n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = toml("bind = \"localhost:80\"").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = toml("max_json_depth = -1").unwrap_err().to_string();
        assert!(e.contains("max_json_depth") || e.contains("line 1"), "{e}");
        let e = toml("log_format = \"xml\"").unwrap_err().to_string();
        assert!(e.contains("xml"), "{e}");
        let e = toml("allow_subprocess = \"yes\"").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn secrets_are_validated_and_never_echoed() {
        let short = "abcd";
        let e = toml(&format!("token_secret = \"{short}\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too short"), "{e}");
        assert!(!e.contains(short), "secret echoed: {e}");
        let bad = "zz".repeat(32);
        let e = toml(&format!("token_secret = \"{bad}\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid hex") && !e.contains(&bad), "{e}");
        let e = Options::from_env(&env(&[("MSE_TOKEN_SECRET", &bad)]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable MSE_TOKEN_SECRET: not valid hex"),
            "{e}"
        );
        assert!(!format!("{:?}", Secret(vec![1; 32])).contains('1'));
        assert!(toml("admin_token = \"\"").is_err());
        assert!(toml("admin_token = \"a b\"").is_err());
        assert_eq!(
            "AB".repeat(40).parse::<Secret>().unwrap(),
            Secret(vec![0xab; 40]),
            "upper case and longer secrets are fine"
        );
    }

    #[test]
    fn env_values() {
        let o = Options::from_env(&env(&[
            ("MSE_ALLOW_SUBPROCESS", "1"),
            ("MSE_LOG_FORMAT", "json"),
            ("MSE_DATA_DIR", "/tmp/x"),
            ("MSE_ADMIN_TOKEN", ""),
            ("MSE_TASK_RETENTION_SECS", " 12 "),
        ]))
        .unwrap();
        assert_eq!(o.allow_subprocess, Some(true));
        assert_eq!(o.log_format, Some(LogFormat::Json));
        assert_eq!(o.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(o.admin_token, None, "empty = unset");
        assert_eq!(o.task_retention_secs, Some(12));
        let e = Options::from_env(&env(&[("MSE_BIND", "localhost:1")])).unwrap_err();
        assert!(
            e.to_string().starts_with("environment variable MSE_BIND: "),
            "{e}"
        );
        let e = Options::from_env(&env(&[("MSE_ALLOW_SUBPROCESS", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("MSE_ALLOW_SUBPROCESS"), "{e}");
    }

    #[test]
    fn zero_limits_are_rejected_naming_the_source() {
        let e = toml("max_concurrent_runs = 0")
            .unwrap()
            .validate(Origin::File(Path::new("/c.toml")));
        assert_eq!(
            e.unwrap_err().to_string(),
            "config file /c.toml: max_concurrent_runs: must be greater than 0"
        );
        let o = Options::from_env(&env(&[("MSE_LUA_TIME_LIMIT_MS", "0")])).unwrap();
        assert_eq!(
            o.validate(Origin::Env).unwrap_err().to_string(),
            "environment variable MSE_LUA_TIME_LIMIT_MS: must be greater than 0"
        );
        let o = Options {
            max_body_bytes: Some(0),
            ..Default::default()
        };
        assert_eq!(
            o.validate(Origin::Flags).unwrap_err().to_string(),
            "--max-body-bytes: must be greater than 0"
        );
        let o = Options {
            task_retention_secs: Some(0),
            max_fanout_depth: Some(0),
            ..Default::default()
        };
        assert!(o.validate(Origin::Flags).is_ok());
    }

    #[test]
    fn config_file_location() {
        let none = env(&[]);
        let (p, explicit) = config_path(Some(Path::new("/x.toml")), &none);
        assert_eq!((p.as_path(), explicit), (Path::new("/x.toml"), true));
        let (p, explicit) = config_path(None, &env(&[("MSE_CONFIG", "/y.toml")]));
        assert_eq!((p.as_path(), explicit), (Path::new("/y.toml"), true));
        let (p, explicit) = config_path(None, &none);
        assert!(p.ends_with(".mse/config.toml") && !explicit);
    }

    #[test]
    fn missing_files() {
        let missing = Path::new("/nonexistent/mse/config.toml");
        assert_eq!(load_file(missing, false).unwrap(), None);
        let e = load_file(missing, true).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read config file /nonexistent/mse/config.toml: "),
            "{e}"
        );
        // A directory is not a readable file.
        assert!(load_file(Path::new("/"), false).is_err());
    }

    #[test]
    fn resolve_reads_file_and_env() {
        let dir = std::env::temp_dir().join(format!("mse-cli-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:1\"\n").unwrap();
        let lookup = env(&[("MSE_BIND", "127.0.0.1:2"), ("MSE_SEED_BLUEPRINT_ID", "s")]);
        let s = resolve(Options::default(), Some(&path), &lookup).unwrap();
        assert_eq!(s.bind, addr("127.0.0.1:1"));
        assert_eq!(s.seed_blueprint_id, "s");
        assert_eq!(s.config_file.as_deref(), Some(path.as_path()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_env_vars_are_reported() {
        let v = unknown_env_vars(
            [
                "MSE_BIDN",
                "MSE_BIND",
                "MSE_CONFIG",
                "PATH",
                "MSE_FLOW_CASES",
            ]
            .map(String::from),
        );
        assert_eq!(
            v,
            vec!["MSE_BIDN".to_string(), "MSE_FLOW_CASES".to_string()]
        );
    }

    #[test]
    fn server_config_carries_everything() {
        let o = Options {
            bind: Some(addr("127.0.0.1:9")),
            admin_token: Some(AdminToken("t".into())),
            allow_subprocess: Some(true),
            max_retained_tasks: Some(5),
            ..Default::default()
        };
        let s = merge(o, Options::default(), Options::default(), None);
        let cfg = server_config(&s, PathBuf::from("/d"), vec![7; 32]);
        assert_eq!(cfg.bind, addr("127.0.0.1:9"));
        assert_eq!(cfg.admin_token.as_deref(), Some("t"));
        assert!(cfg.allow_subprocess);
        assert_eq!(cfg.limits.max_retained_tasks, 5);
        assert_eq!(cfg.token_secret, vec![7; 32]);
        assert_eq!(cfg.data_dir, PathBuf::from("/d"));
        assert_eq!(cfg.public_base_url, None);
        let o = Options {
            public_base_url: Some("https://mse.example.org/".parse().unwrap()),
            ..Default::default()
        };
        let s = merge(o, Options::default(), Options::default(), None);
        let cfg = server_config(&s, PathBuf::from("/d"), vec![7; 32]);
        assert_eq!(
            cfg.public_base_url.as_deref(),
            Some("https://mse.example.org")
        );
    }

    #[test]
    fn storage_ref_base_and_agent_kind() {
        let d = merge(
            Options::default(),
            Options::default(),
            Options::default(),
            None,
        );
        assert_eq!(d.storage, Storage::Sqlite, "SQLite is the default");
        assert_eq!(d.blueprint_ref_base, None);
        assert_eq!(d.default_agent_kind, None);
        assert_eq!(
            d.limits.max_output_records,
            Limits::default().max_output_records
        );
        let o = toml(
            "storage = \"memory\"\nblueprint_ref_base = \"/srv/bp\"\n\
             default_agent_kind = \"rust_fn\"\nmax_output_records = 7\n",
        )
        .unwrap();
        let s = merge(Options::default(), o, Options::default(), None);
        assert_eq!(s.storage, Storage::Memory);
        assert_eq!(s.blueprint_ref_base.as_deref(), Some(Path::new("/srv/bp")));
        assert_eq!(s.default_agent_kind, Some(AgentKind::RustFn));
        assert_eq!(s.limits.max_output_records, 7);
        let cfg = server_config(&s, PathBuf::from("/d"), vec![7; 32]);
        assert_eq!(cfg.storage, Storage::Memory);
        assert_eq!(cfg.database_path(), None);
        assert_eq!(
            cfg.blueprint_ref_base.as_deref(),
            Some(Path::new("/srv/bp"))
        );
        assert_eq!(cfg.default_agent_kind, Some(AgentKind::RustFn));
        assert_eq!(cfg.limits.max_output_records, 7);
        let cfg = server_config(&d, PathBuf::from("/d"), vec![7; 32]);
        assert_eq!(cfg.database_path(), Some(PathBuf::from("/d/mse.db")));

        let e = toml("storage = \"postgres\"").unwrap_err().to_string();
        assert!(e.contains("expected 'sqlite' or 'memory'"), "{e}");
        let e = toml("default_agent_kind = \"robot\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown agent kind 'robot'"), "{e}");
        let o = Options::from_env(&env(&[
            ("MSE_STORAGE", "memory"),
            ("MSE_DEFAULT_AGENT_KIND", "lua"),
            ("MSE_BLUEPRINT_REF_BASE", "/x"),
        ]))
        .unwrap();
        assert_eq!(o.storage, Some(StorageKind(Storage::Memory)));
        assert_eq!(o.default_agent_kind, Some(AgentKindName(AgentKind::Lua)));
        let e = Options::from_env(&env(&[("MSE_STORAGE", "disk")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable MSE_STORAGE: "),
            "{e}"
        );
        let e = toml("max_output_records = 0")
            .unwrap()
            .validate(Origin::File(Path::new("/c.toml")))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("max_output_records: must be greater than 0"),
            "{e}"
        );
    }

    #[test]
    fn public_base_url_is_validated() {
        assert_eq!(
            "http://10.0.0.5:7777".parse::<BaseUrl>().unwrap(),
            BaseUrl("http://10.0.0.5:7777".into())
        );
        for bad in ["", "10.0.0.5:7777", "ftp://x", "http://", "http://a b"] {
            assert!(bad.parse::<BaseUrl>().is_err(), "{bad:?}");
        }
        let e = toml("public_base_url = \"mse.local\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://"), "{e}");
        let o = Options::from_env(&env(&[("MSE_PUBLIC_BASE_URL", "https://h/")])).unwrap();
        assert_eq!(o.public_base_url, Some(BaseUrl("https://h".into())));
    }
}
