//! Command-line interface (clap derive). Defaults, config keys and environment
//! variable names are appended to each flag's help at runtime from one table
//! (`config::Options::KEYS`, `config::default_display`) so they cannot drift.

use crate::config::{
    self, AdminToken, AgentKindName, BaseUrl, ConfigError, Ident, LogFormat, Options, Origin,
    Secret, StorageKind,
};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use mse_server::Storage;
use std::net::SocketAddr;
use std::path::PathBuf;

const ABOUT: &str = "mse: an orchestration server for agent swarms (Blueprints, flows, workers)";

const SERVE_ABOUT: &str = "Run the HTTP/WebSocket orchestration server";

const SERVE_LONG_ABOUT: &str = "\
Run the HTTP/WebSocket orchestration server.

Every option below can be given three ways:
  * as a flag:                  --max-body-bytes 1048576
  * as a key in the TOML config file (flag name with '-' -> '_'):
                                max_body_bytes = 1048576
  * as an environment variable (MSE_ + key in upper case):
                                MSE_MAX_BODY_BYTES=1048576

Precedence: command-line flag > config file > environment variable > built-in default.

The config file is --config, else $MSE_CONFIG, else ~/.mse/config.toml. A missing file
at the default location is fine; a file named with --config or MSE_CONFIG must exist.
Unknown keys and bad values are errors (exit code 2).

Logging goes to stderr; filter with RUST_LOG (default: info), e.g. RUST_LOG=mse=debug.
SIGINT or SIGTERM stops accepting connections and lets in-flight requests finish for up
to --shutdown-grace-secs; a second signal exits at once.

Exit codes: 0 clean shutdown, 1 startup or runtime failure (e.g. the address is in
use), 2 invalid command line or configuration.";

const AFTER_HELP: &str = "\
Precedence: flag > config file > environment (MSE_<KEY>) > default.
'--help' shows each option's config key and environment variable.";

const AFTER_LONG_HELP: &str = "\
Example config file (~/.mse/config.toml):
  bind = \"127.0.0.1:7790\"
  data_dir = \"/var/lib/mse\"
  admin_token = \"change-me\"
  max_concurrent_runs = 256
  lua_time_limit_ms = 2000";

#[derive(Debug, Parser)]
#[command(name = "mse", version, about = ABOUT, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(
        about = SERVE_ABOUT,
        long_about = SERVE_LONG_ABOUT,
        after_help = AFTER_HELP,
        after_long_help = AFTER_LONG_HELP
    )]
    Serve(ServeArgs),
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (see the precedence rule above)
    #[arg(long, value_name = "PATH", help_heading = "Configuration")]
    pub config: Option<PathBuf>,

    /// Address to listen on, IP:port (host names are rejected)
    #[arg(long, value_name = "IP:PORT", help_heading = "Server")]
    pub bind: Option<SocketAddr>,

    /// Directory for persistent state (the token secret, the database); created (mode 0700) if missing
    #[arg(long, value_name = "DIR", help_heading = "Server")]
    pub data_dir: Option<PathBuf>,

    /// Where the stores keep their state: sqlite (<data_dir>/mse.db) or memory
    #[arg(long, value_name = "sqlite|memory", help_heading = "Storage")]
    pub storage: Option<String>,

    /// Volatile in-memory stores, for tests and demos (same as --storage memory)
    #[arg(long, action = ArgAction::SetTrue, conflicts_with = "storage", help_heading = "Storage")]
    pub memory: bool,

    /// Base directory of $file / $agent_md references in registered Blueprints
    #[arg(long, value_name = "DIR", help_heading = "Storage")]
    pub blueprint_ref_base: Option<PathBuf>,

    /// Kind of $agent_md agents when neither the reference nor the Blueprint names one
    #[arg(long, value_name = "KIND", help_heading = "Storage")]
    pub default_agent_kind: Option<String>,

    /// HMAC key for capability tokens, hex, at least 32 bytes (64 hex characters)
    #[arg(long, value_name = "HEX", help_heading = "Security")]
    pub token_secret: Option<String>,

    /// Bearer token required on every route that mints credentials or changes state
    #[arg(long, value_name = "TOKEN", help_heading = "Security")]
    pub admin_token: Option<String>,

    /// Allow `subprocess` agents, which run arbitrary programs on this host
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Security")]
    pub allow_subprocess: bool,

    /// Do not run the enhance consumer (issues then stay pending)
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Enhance")]
    pub no_enhance: bool,

    /// Idle poll interval of the enhance consumer, in milliseconds
    #[arg(long, value_name = "MS", help_heading = "Enhance")]
    pub enhance_interval_ms: Option<u64>,

    /// Id of the Blueprint seeded at boot
    #[arg(long, value_name = "ID", help_heading = "Server")]
    pub seed_blueprint_id: Option<String>,

    /// Log format on stderr
    #[arg(long, value_name = "FORMAT", help_heading = "Server")]
    pub log_format: Option<LogFormat>,

    /// Largest accepted request body; larger bodies get 413
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_body_bytes: Option<usize>,

    /// Deepest accepted JSON nesting of a request body
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_json_depth: Option<usize>,

    /// Most items in one fanout
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_fanout_width: Option<usize>,

    /// Deepest nesting of fanouts
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_fanout_depth: Option<usize>,

    /// Ceiling on a loop's iterations
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_loop_iterations: Option<u64>,

    /// Runs evaluated at once; more get 429
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_concurrent_runs: Option<usize>,

    /// Upper bound on a run's TTL, seconds
    #[arg(long, value_name = "SECS", help_heading = "Limits")]
    pub max_run_ttl_secs: Option<u64>,

    /// Wall time of one Lua dispatch, milliseconds
    #[arg(long, value_name = "MS", help_heading = "Limits")]
    pub lua_time_limit_ms: Option<u64>,

    /// Memory of one Lua VM, bytes
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub lua_memory_limit_bytes: Option<usize>,

    /// Wall time of one subprocess worker, seconds
    #[arg(long, value_name = "SECS", help_heading = "Limits")]
    pub subprocess_time_limit_secs: Option<u64>,

    /// Most stdout kept from one subprocess worker, bytes
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub subprocess_max_output_bytes: Option<usize>,

    /// How long an operator may take to reply, seconds (never past the run TTL)
    #[arg(long, value_name = "SECS", help_heading = "Limits")]
    pub operator_reply_timeout_secs: Option<u64>,

    /// How long an operator's pending requests survive a lost socket, seconds
    #[arg(long, value_name = "SECS", help_heading = "Operators")]
    pub operator_reconnect_grace_secs: Option<u64>,

    /// Delete operator sessions with no socket and nothing pending after this long, seconds
    #[arg(long, value_name = "SECS", help_heading = "Operators")]
    pub operator_idle_ttl_secs: Option<u64>,

    /// WebSocket ping period on operator sockets; two silent periods disconnect, seconds
    #[arg(long, value_name = "SECS", help_heading = "Operators")]
    pub operator_ping_interval_secs: Option<u64>,

    /// How long a client may take to send a request's headers, seconds
    #[arg(long, value_name = "SECS", help_heading = "Limits")]
    pub header_read_timeout_secs: Option<u64>,

    /// Base URL named in operator spawn directives (e.g. https://mse.example.org)
    #[arg(long, value_name = "URL", help_heading = "Operators")]
    pub public_base_url: Option<String>,

    /// How long finished tasks are kept, seconds
    #[arg(long, value_name = "SECS", help_heading = "Limits")]
    pub task_retention_secs: Option<u64>,

    /// Most finished tasks kept
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_retained_tasks: Option<usize>,

    /// Most data-plane output records kept; the oldest go first
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_output_records: Option<usize>,

    /// How long in-flight requests may run after SIGINT/SIGTERM, seconds
    #[arg(long, value_name = "SECS", help_heading = "Server")]
    pub shutdown_grace_secs: Option<u64>,
}

impl ServeArgs {
    /// The flags as one configuration source. Secrets are parsed here rather than by
    /// clap so that a bad value is never echoed in an error message.
    pub fn to_options(&self) -> Result<Options, ConfigError> {
        fn parse<T: std::str::FromStr<Err = String>>(
            key: &str,
            v: &Option<String>,
        ) -> Result<Option<T>, ConfigError> {
            v.as_deref()
                .map(|s| {
                    s.parse().map_err(|message| ConfigError::Invalid {
                        origin: config::flag(key),
                        message,
                    })
                })
                .transpose()
        }
        let o = Options {
            bind: self.bind,
            data_dir: self.data_dir.clone(),
            storage: if self.memory {
                Some(StorageKind(Storage::Memory))
            } else {
                parse::<StorageKind>("storage", &self.storage)?
            },
            blueprint_ref_base: self.blueprint_ref_base.clone(),
            default_agent_kind: parse::<AgentKindName>(
                "default_agent_kind",
                &self.default_agent_kind,
            )?,
            token_secret: parse::<Secret>("token_secret", &self.token_secret)?,
            admin_token: parse::<AdminToken>("admin_token", &self.admin_token)?,
            // The flag can only switch subprocess agents on.
            allow_subprocess: self.allow_subprocess.then_some(true),
            // The flag can only switch the consumer off.
            no_enhance: self.no_enhance.then_some(true),
            enhance_interval_ms: self.enhance_interval_ms,
            seed_blueprint_id: parse::<Ident>("seed_blueprint_id", &self.seed_blueprint_id)?,
            log_format: self.log_format,
            max_body_bytes: self.max_body_bytes,
            max_json_depth: self.max_json_depth,
            max_fanout_width: self.max_fanout_width,
            max_fanout_depth: self.max_fanout_depth,
            max_loop_iterations: self.max_loop_iterations,
            max_concurrent_runs: self.max_concurrent_runs,
            max_run_ttl_secs: self.max_run_ttl_secs,
            lua_time_limit_ms: self.lua_time_limit_ms,
            lua_memory_limit_bytes: self.lua_memory_limit_bytes,
            subprocess_time_limit_secs: self.subprocess_time_limit_secs,
            subprocess_max_output_bytes: self.subprocess_max_output_bytes,
            operator_reply_timeout_secs: self.operator_reply_timeout_secs,
            operator_reconnect_grace_secs: self.operator_reconnect_grace_secs,
            operator_idle_ttl_secs: self.operator_idle_ttl_secs,
            operator_ping_interval_secs: self.operator_ping_interval_secs,
            header_read_timeout_secs: self.header_read_timeout_secs,
            public_base_url: parse::<BaseUrl>("public_base_url", &self.public_base_url)?,
            task_retention_secs: self.task_retention_secs,
            max_retained_tasks: self.max_retained_tasks,
            max_output_records: self.max_output_records,
            shutdown_grace_secs: self.shutdown_grace_secs,
        };
        o.validate(Origin::Flags)?;
        Ok(o)
    }
}

/// The clap command with every option's default, config key and env var in its help.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", |serve| {
        let mut serve = serve.mut_arg("config", |arg| {
            arg.help("TOML config file [default: ~/.mse/config.toml] [env: MSE_CONFIG]")
                .long_help(format!(
                    "TOML config file; see the precedence rule above.\n[default: {}]\n[env: {}]",
                    config::default_config_path().display(),
                    config::CONFIG_ENV
                ))
        });
        for key in Options::KEYS {
            let default = config::default_display(key).unwrap_or_default();
            let env = config::env_var(key);
            serve = serve.mut_arg(*key, |arg| {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let short_default = match *key {
                    "data_dir" => "platform data dir/mse".to_string(),
                    "token_secret" => "random, persisted in the data dir".to_string(),
                    "admin_token" => "none".to_string(),
                    _ => default.clone(),
                };
                arg.help(format!("{help} [default: {short_default}]"))
                    .long_help(format!(
                        "{help}.\n[default: {default}]\n[config key: {key}] [env: {env}]"
                    ))
            });
        }
        serve
    })
}

/// Parse the process arguments; on a usage error clap prints it and exits with 2.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        command().debug_assert();
    }

    #[test]
    fn every_key_has_a_flag() {
        let cmd = command();
        let serve = cmd.find_subcommand("serve").unwrap();
        for key in Options::KEYS {
            let arg = serve
                .get_arguments()
                .find(|a| a.get_id() == *key)
                .unwrap_or_else(|| panic!("no flag for {key}"));
            assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()));
            let long = arg.get_long_help().unwrap().to_string();
            assert!(long.contains(&config::env_var(key)), "{long}");
            assert!(long.contains("[default: "), "{long}");
        }
    }

    fn args(list: &[&str]) -> Result<ServeArgs, clap::Error> {
        let m = command().try_get_matches_from(
            std::iter::once("mse")
                .chain(["serve"])
                .chain(list.iter().copied()),
        )?;
        match Cli::from_arg_matches(&m)?.command {
            Command::Serve(a) => Ok(a),
        }
    }

    #[test]
    fn flags_become_options() {
        let a = args(&[
            "--bind",
            "127.0.0.1:1",
            "--allow-subprocess",
            "--log-format",
            "json",
            "--lua-time-limit-ms",
            "20",
        ])
        .unwrap();
        let o = a.to_options().unwrap();
        assert_eq!(o.bind, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(o.allow_subprocess, Some(true));
        assert_eq!(o.log_format, Some(LogFormat::Json));
        assert_eq!(o.lua_time_limit_ms, Some(20));
        assert_eq!(o.max_body_bytes, None);
        let o = args(&[]).unwrap().to_options().unwrap();
        assert_eq!(o, Options::default(), "no flag sets nothing");
    }

    #[test]
    fn storage_flags() {
        let o = args(&["--memory"]).unwrap().to_options().unwrap();
        assert_eq!(o.storage, Some(StorageKind(Storage::Memory)));
        let o = args(&["--storage", "sqlite", "--blueprint-ref-base", "/b"])
            .unwrap()
            .to_options()
            .unwrap();
        assert_eq!(o.storage, Some(StorageKind(Storage::Sqlite)));
        assert_eq!(o.blueprint_ref_base, Some(PathBuf::from("/b")));
        assert_eq!(
            args(&["--memory", "--storage", "sqlite"])
                .unwrap_err()
                .exit_code(),
            2
        );
        let e = args(&["--storage", "disk"])
            .unwrap()
            .to_options()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--storage: expected 'sqlite' or 'memory'"),
            "{e}"
        );
        let e = args(&["--default-agent-kind", "Lua"])
            .unwrap()
            .to_options()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--default-agent-kind: unknown agent kind"),
            "{e}"
        );
        let o = args(&["--default-agent-kind", "agent_block"])
            .unwrap()
            .to_options()
            .unwrap();
        assert_eq!(
            o.default_agent_kind,
            Some(AgentKindName(mse_blueprint::AgentKind::AgentBlock))
        );
    }

    #[test]
    fn bad_flags() {
        assert_eq!(args(&["--bind", "localhost:1"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            args(&["--max-json-depth", "-3"]).unwrap_err().exit_code(),
            2
        );
        assert_eq!(args(&["--log-format", "xml"]).unwrap_err().exit_code(), 2);
        assert_eq!(args(&["--bogus"]).unwrap_err().exit_code(), 2);
        let e = args(&["--token-secret", "abcd"])
            .unwrap()
            .to_options()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--token-secret: too short") && !e.contains("abcd"),
            "{e}"
        );
        let e = args(&["--max-concurrent-runs", "0"])
            .unwrap()
            .to_options()
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--max-concurrent-runs: must be greater than 0");
    }
}
