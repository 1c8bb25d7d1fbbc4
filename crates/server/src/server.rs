//! Starting and stopping: [`bind`] builds the state and binds the listener,
//! [`Bound::run`] serves until the shutdown future resolves, then drains
//! in-flight requests for at most `shutdown_grace` (§14.20: the reference drops
//! them) and stops the background tasks.

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
}

/// Build the state (engine, layers, factories, launcher, stores, seed), start
/// the engine sweeper and bind the listener.
pub async fn bind(cfg: ServerConfig) -> Result<Bound, ServerError> {
    let addr = cfg.bind;
    let state = AppState::build(cfg).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    state.set_local_addr(local_addr);
    let sweeper = state.engine().start_sweeper();
    Ok(Bound {
        listener,
        local_addr,
        state,
        sweeper,
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
            "listening on http://{}; blueprint store: {}; output store: {}; seed blueprint: {}; \
             subprocess agents: {}; admin token: {}; data dir: {}",
            self.local_addr,
            self.state.blueprint_store_kind(),
            self.state.output_store_kind(),
            cfg.seed_blueprint_id,
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
            ..
        } = self;
        let grace = state.config().shutdown_grace;
        let app = crate::app::router(state);
        let listener = listener.tap_io(|tcp| {
            // Small responses go out at once instead of waiting for an ACK.
            let _ = tcp.set_nodelay(true);
        });
        let (fired_tx, mut fired_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
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
        result
    }
}
