//! `mse`: the orchestration server's command line. `mse serve` runs the server.

// The engine's hot path allocates a lot; mimalloc is markedly faster than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod config;
mod logging;
mod secret;

use config::Settings;
use secret::SecretSource;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

/// Exit code for configuration and usage errors (clap uses it for its own).
const EXIT_CONFIG: u8 = 2;
/// Exit code for startup and runtime failures.
const EXIT_FAILURE: u8 = 1;
/// Extra time past the grace period before a stuck shutdown is cut short.
const SHUTDOWN_BACKSTOP: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        cli::Command::Serve(args) => serve(&args),
    }
}

fn serve(args: &cli::ServeArgs) -> ExitCode {
    let lookup = |k: &str| std::env::var(k).ok();
    let settings = match args
        .to_options()
        .and_then(|flags| config::resolve(flags, args.config.as_deref(), &lookup))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mse: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logging::init(settings.log_format);
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for var in config::unknown_env_vars(names) {
        warn!("ignoring environment variable {var}: not an mse setting");
    }

    let requested = settings
        .data_dir
        .clone()
        .unwrap_or_else(secret::default_data_dir);
    let data_dir = match secret::ensure_data_dir(&requested) {
        Ok(d) => d,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let (token_secret, secret_source) = match &settings.token_secret {
        Some(s) => (s.0.clone(), SecretSource::Configured),
        None => match secret::load_or_create(&data_dir) {
            Ok(pair) => pair,
            Err(e) => {
                error!("{e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
    };
    if !settings.bind.ip().is_loopback() && settings.admin_token.is_none() {
        warn!(
            bind = %settings.bind,
            "SECURITY: listening on a non-loopback address WITHOUT an admin token: anyone who \
             can reach {} can mint credentials, run tasks and change blueprints. Set \
             --admin-token (config admin_token, env MSE_ADMIN_TOKEN) or bind to 127.0.0.1.",
            settings.bind
        );
    }

    let cfg = config::server_config(&settings, data_dir, token_secret);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mse-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(run(cfg, &settings, secret_source));
    // Blocking work (e.g. a Lua VM past its deadline) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(cfg: mse_server::ServerConfig, settings: &Settings, secret: SecretSource) -> ExitCode {
    // Install the handlers before binding, so a signal during boot is not lost.
    let (sigint, sigterm) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(watch_signals(sigint, sigterm, tx, cfg.shutdown_grace));

    let bind = cfg.bind;
    let data_dir = cfg.data_dir.clone();
    let bound = match mse_server::bind(cfg).await {
        Ok(b) => b,
        Err(e) => {
            error!("cannot start the server on {bind}: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let config_file = settings
        .config_file
        .as_ref()
        .map_or_else(|| "none".to_string(), |p| p.display().to_string());
    info!(
        addr = %bound.local_addr(),
        data_dir = %data_dir.display(),
        config = %config_file,
        token_secret = secret.as_str(),
        "mse serve started: {}",
        bound.describe()
    );
    let shutdown = async move {
        // A dropped sender (cannot happen before exit) also means "stop".
        let _ = rx.await;
    };
    match bound.run(shutdown).await {
        Ok(()) => {
            info!("shutdown complete");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("server failed: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// First SIGINT/SIGTERM: start the graceful shutdown. A second signal, or the grace
/// period (plus a margin) running out, ends the process at once.
async fn watch_signals(
    mut sigint: Signal,
    mut sigterm: Signal,
    tx: tokio::sync::oneshot::Sender<()>,
    grace: Duration,
) {
    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    info!(
        signal = name,
        grace_secs = grace.as_secs(),
        "received {name}; stopping (send it again to exit at once)"
    );
    let _ = tx.send(());
    let code = tokio::select! {
        _ = sigint.recv() => 130,
        _ = sigterm.recv() => 143,
        _ = tokio::time::sleep(grace + SHUTDOWN_BACKSTOP) => {
            error!("shutdown did not finish within the grace period; exiting");
            std::process::exit(i32::from(EXIT_FAILURE));
        }
    };
    warn!("second signal: exiting without waiting for in-flight requests");
    std::process::exit(code);
}
