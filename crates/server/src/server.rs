//! Starting and stopping: [`bind`] builds the state and binds the listener,
//! [`Bound::run`] serves until the shutdown future resolves, then drains
//! in-flight requests for at most `shutdown_grace` (§14.20: the reference drops
//! them) and stops the background tasks. Open operator WebSockets are closed
//! (1001) as soon as shutdown begins: upgraded connections are not part of the
//! HTTP drain.

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::state::AppState;
use axum::serve::ListenerExt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
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
        let sockets = state.shutdown_token().clone();
        let app = crate::app::router(state);
        let listener = listener.tap_io(|tcp| {
            // Small responses go out at once instead of waiting for an ACK.
            let _ = tcp.set_nodelay(true);
        });
        let (fired_tx, mut fired_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            sockets.cancel();
            let _ = fired_tx.send(true);
        };
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .into_future();
        let deadline = async move {
            if fired_rx.wait_for(|fired| *fired).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = serve => r.map_err(ServerError::Io),
            () = deadline => {
                tracing::warn!(grace = ?grace, "shutdown grace elapsed; abandoning in-flight requests");
                Ok(())
            }
        };
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
