//! Starting and stopping: [`bind`] builds the state and binds the listener,
//! [`Bound::run`] serves until the shutdown future resolves, then drains
//! in-flight requests for at most `shutdown_grace` (§14.20: the reference drops
//! them) and stops the background tasks. Open operator WebSockets are closed
//! (1001) as soon as shutdown begins: upgraded connections are not part of the
//! HTTP drain.

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::state::AppState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server whose listener is bound but not yet serving.
pub struct Bound {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    sweeper: JoinHandle<()>,
    /// Reaps idle operator sessions (`None` when `operator_idle_ttl` is zero).
    reaper: Option<JoinHandle<()>>,
    /// The enhance consumer, started by `run` (`None` when disabled).
    enhance: Option<std::sync::Arc<mse_enhance::EnhanceConsumer>>,
}

/// Bind the listener, build the state (engine, layers, factories, launcher,
/// operator hub, stores, seed) and start the engine sweeper and the operator
/// reaper. The listener is bound first so that operator directives can name the
/// real address when the configured port is 0.
pub async fn bind(cfg: ServerConfig) -> Result<Bound, ServerError> {
    let addr = cfg.bind;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let state = AppState::build_at(cfg, local_addr).await?;
    state.set_local_addr(local_addr);
    let sweeper = state.engine().start_sweeper();
    let enhance = if state.config().enhance_enabled {
        let consumer = std::sync::Arc::new(state.enhance_consumer());
        let report = consumer
            .startup()
            .await
            .map_err(|e| ServerError::Config(format!("enhance startup: {e}")))?;
        tracing::info!("enhance: {report}");
        Some(consumer)
    } else {
        None
    };
    let reaper = (!state.config().limits.operator_idle_ttl.is_zero())
        .then(|| state.operators().start_reaper());
    Ok(Bound {
        listener,
        local_addr,
        state,
        sweeper,
        reaper,
        enhance,
    })
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// One-line description for the startup log (no secrets).
    pub fn describe(&self) -> String {
        let cfg = self.state.config();
        format!(
            "listening on http://{}; storage: {}; blueprint store: {}; output store: {}; \
             seed blueprint: {}; blueprint ref base: {}; subprocess agents: {}; admin token: {}; \
             operator base URL: {}; data dir: {}",
            self.local_addr,
            self.state.storage_description(),
            self.state.blueprint_store_kind(),
            self.state.output_store_kind(),
            cfg.seed_blueprint_id,
            cfg.blueprint_ref_base
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
            if cfg.allow_subprocess {
                "enabled"
            } else {
                "disabled"
            },
            if cfg.admin_token.is_some() {
                "required"
            } else {
                "not configured"
            },
            self.state.operators().config().public_base_url,
            cfg.data_dir.display(),
        )
    }

    /// Serve until `shutdown` resolves, then stop accepting, let in-flight
    /// requests finish (bounded by `config.shutdown_grace`) and stop the
    /// background tasks.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Bound {
            listener,
            state,
            sweeper,
            reaper,
            enhance,
            ..
        } = self;
        let consumer = enhance.map(|c| {
            let stop = state.shutdown_token().clone();
            tokio::spawn(async move { c.run(async move { stop.cancelled().await }).await })
        });
        let grace = state.config().shutdown_grace;
        // A slow or stalled client (slowloris) loses its connection instead of holding it.
        let header_read_timeout = state.config().limits.header_read_timeout;
        let sockets = state.shutdown_token().clone();
        let app = crate::app::router(state);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            sockets.cancel();
        };
        let result = serve_connections(listener, app, signal, grace, header_read_timeout).await;
        sweeper.abort();
        if let Some(consumer) = consumer {
            // The consumer saw the shutdown token; an interrupted issue is re-queued at the next start.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), consumer).await;
        }
        if let Some(reaper) = reaper {
            reaper.abort();
        }
        result
    }
}

/// Accept connections until `signal` resolves, then stop accepting and give the
/// open connections `grace` to finish their requests.
async fn serve_connections(
    listener: TcpListener,
    app: axum::Router,
    signal: impl Future<Output = ()>,
    grace: Duration,
    header_read_timeout: Duration,
) -> Result<(), ServerError> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small responses go out at once instead of waiting for an ACK.
                let _ = tcp.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut signal => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace = ?grace, "shutdown grace elapsed; abandoning in-flight requests");
        }
    }
    Ok(())
}
