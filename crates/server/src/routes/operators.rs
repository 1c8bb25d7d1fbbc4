//! `/v1/operators`: operator login sessions and their WebSocket (operators.md §1–§2).
//!
//! | Route | Credential | Success | Errors |
//! |---|---|---|---|
//! | `POST /v1/operators` `{"roles"?:[..]}` | admin token if configured | 200 `{sid, token, roles}` | 400 invalid role, 409 `{"error":"roles conflict","conflicts":[..]}` |
//! | `GET /v1/operators/{sid}` | `Bearer <login token>` | 200 `{sid, roles, connected}` | 401 missing, 404 unknown sid, 401 mismatch |
//! | `DELETE /v1/operators/{sid}` | same | 204 (closes the socket, fails pending requests) | same |
//! | `GET /v1/operators/{sid}/ws` | same, after the handshake check | 101 | 4xx handshake, then as above |
//!
//! Every error is JSON (decision 3), including axum's handshake rejections.
//!
//! The session is attached (`OperatorHub::connect`) before the 101 is sent, so
//! `connected` is true and the registrations exist as soon as the client sees
//! the upgrade. The socket task then moves frames between the WebSocket and the session (the
//! protocol lives in `mse-operators`): queued [`Outgoing`] frames are written
//! in batches, client text frames go to [`OperatorSession::handle_frame`] and any
//! error frame it returns is written back, binary frames are ignored. Every
//! `ping_interval` a Ping is sent; a peer that sent nothing (no Pong, no frame)
//! for two intervals is disconnected, and so is one whose writes stall that
//! long. When the loop ends the socket detaches its generation (a superseded
//! socket cannot detach its successor) and closes with the reason's code:
//! 1000 session deleted, 4000 superseded, 1001 server shutdown or dead peer.
//! No lock is held across an `.await`: the session's locks are taken only
//! inside its synchronous methods.

use crate::auth::AdminGuard;
use crate::error::{error_body, ApiError};
use crate::extract::{JsonBody, Path};
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::SinkExt;
use mse_operators::{
    AuthError, Connection, MintError, Minted, OperatorSession, Outgoing, SessionInfo,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant, MissedTickBehavior};

#[derive(Deserialize)]
pub struct MintBody {
    #[serde(default)]
    roles: Vec<String>,
}

/// `POST /v1/operators`.
pub async fn mint(
    State(state): State<AppState>,
    _admin: AdminGuard<true>,
    JsonBody(body): JsonBody<MintBody>,
) -> Result<Json<Minted>, Response> {
    match state.operators().mint(body.roles) {
        Ok(minted) => {
            tracing::info!(sid = %minted.sid, roles = ?minted.roles, "operator session minted");
            Ok(Json(minted))
        }
        Err(MintError::Conflict(conflicts)) => {
            let body = serde_json::json!({"error": "roles conflict", "conflicts": conflicts});
            Err((StatusCode::CONFLICT, Json(body)).into_response())
        }
        Err(e @ MintError::InvalidRole(_)) => {
            Err(ApiError::bad_request(e.to_string()).into_response())
        }
    }
}

/// The value of `Authorization: Bearer <token>` (exact `Bearer ` prefix), if any.
fn login_bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Bearer present (401), sid known (404), token equal (401), in that order.
fn authenticate(
    state: &AppState,
    sid: &str,
    headers: &HeaderMap,
) -> Result<Arc<OperatorSession>, ApiError> {
    state
        .operators()
        .authenticate(sid, login_bearer(headers))
        .map_err(|e| match e {
            AuthError::UnknownSid => ApiError::not_found(e.to_string()),
            AuthError::Missing | AuthError::Mismatch => ApiError::unauthorized(e.to_string()),
        })
}

/// `GET /v1/operators/{sid}`.
pub async fn info(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    let session = authenticate(&state, &sid, &headers)?;
    Ok(Json(state.operators().info(&session)))
}

/// `DELETE /v1/operators/{sid}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authenticate(&state, &sid, &headers)?;
    if !state.operators().delete(&sid) {
        // Deleted concurrently (another DELETE or the idle reaper).
        return Err(ApiError::not_found(AuthError::UnknownSid.to_string()));
    }
    tracing::info!(%sid, "operator session deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// axum's handshake rejection as a JSON error with the same status.
fn handshake_error(r: WebSocketUpgradeRejection) -> Response {
    let mut res = (
        r.status(),
        error_body(&format!("not a WebSocket handshake: {}", r.body_text())),
    )
        .into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /v1/operators/{sid}/ws`: handshake check, then authentication, then 101.
pub async fn ws(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(r) => return handshake_error(r),
    };
    let session = match authenticate(&state, &sid, &headers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // Attach before answering 101, so that once the client sees the upgrade the
    // session is connected and registered; requests issued before the socket
    // task starts wait in the outgoing queue.
    let Some(conn) = state.operators().connect(&session) else {
        return ApiError::not_found(AuthError::UnknownSid.to_string()).into_response();
    };
    let generation = conn.generation;
    let max = state.config().limits.max_body_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(move |e| {
            tracing::warn!(sid = %session.sid, error = %e, "operator WebSocket upgrade failed");
            session.detach(generation);
        })
        .on_upgrade(move |socket| serve_socket(state, conn, socket))
}

/// Why a socket loop ended.
enum End {
    /// Close with this code and reason (deleted, superseded, shutdown, dead peer).
    Close(u16, String),
    /// The peer closed or the stream ended: finish the closing handshake.
    PeerClosed(&'static str),
    /// The transport failed: nothing more can be written.
    Broken(String),
}

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
/// How long the closing handshake may take once the loop has ended.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames written per flush when several are queued.
const WRITE_BATCH: usize = 256;

async fn serve_socket(state: AppState, conn: Connection, mut socket: WebSocket) {
    let Connection {
        session,
        generation,
        mut outgoing,
    } = conn;
    tracing::info!(sid = %session.sid, generation, "operator socket connected");
    let cfg = state.operators().config();
    let end = pump(
        &mut socket,
        &session,
        &mut outgoing,
        cfg.ping_interval,
        state.shutdown_token(),
    )
    .await;
    // Detach first: new requests fail at once instead of queueing to a dying socket.
    session.detach(generation);
    drop(outgoing);
    let why = match end {
        End::Close(code, reason) => {
            close(&mut socket, code, &reason).await;
            format!("closed by the server ({code}: {reason})")
        }
        End::PeerClosed(why) => {
            // Let tungstenite answer the peer's Close and see the end of the stream.
            let _ = timeout(CLOSE_TIMEOUT, async {
                while let Some(Ok(_)) = socket.recv().await {}
            })
            .await;
            why.to_string()
        }
        End::Broken(why) => why,
    };
    tracing::info!(sid = %session.sid, generation, reason = %why, "operator socket disconnected");
}

/// Send a Close frame and wait (briefly) for the peer's answer.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let _ = timeout(CLOSE_TIMEOUT, async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }
    })
    .await;
}

/// Move frames until the socket must end.
async fn pump(
    socket: &mut WebSocket,
    session: &OperatorSession,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    ping_interval: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> End {
    let pinging = !ping_interval.is_zero();
    // A peer silent for this long is gone; a write stalled this long is too.
    let silence = if pinging {
        ping_interval * 2
    } else {
        Duration::from_secs(60)
    };
    let period = if pinging {
        ping_interval
    } else {
        Duration::from_secs(3600)
    };
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                return End::Close(CLOSE_GOING_AWAY, "server shutting down".into());
            }
            out = outgoing.recv() => match out {
                Some(Outgoing::Frame(text)) => {
                    match timeout(silence, write_batch(socket, outgoing, text)).await {
                        Ok(Ok(None)) => {}
                        Ok(Ok(Some(close))) => return close,
                        Ok(Err(e)) => return End::Broken(format!("write failed: {e}")),
                        Err(_) => return End::Broken(format!("write stalled for {silence:?}")),
                    }
                }
                Some(Outgoing::Close { code, reason }) => return End::Close(code, reason),
                None => return End::Close(CLOSE_NORMAL, "session closed".into()),
            },
            msg = socket.recv() => {
                last_seen = Instant::now();
                let reply = match msg {
                    Some(Ok(Message::Text(text))) => session.handle_frame(text.as_str()),
                    Some(Ok(Message::Close(_))) => return End::PeerClosed("closed by the peer"),
                    // Binary frames are ignored; Ping/Pong only prove liveness
                    // (tungstenite answers Pings itself).
                    Some(Ok(_)) => None,
                    Some(Err(e)) => return End::Broken(format!("transport error: {e}")),
                    None => return End::PeerClosed("end of stream"),
                };
                if let Some(err) = reply {
                    let text = serde_json::to_string(&err).expect("server messages serialize");
                    match timeout(silence, socket.send(Message::Text(text.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Broken(format!("write failed: {e}")),
                        Err(_) => return End::Broken(format!("write stalled for {silence:?}")),
                    }
                }
            }
            _ = tick.tick(), if pinging => {
                if last_seen.elapsed() >= silence {
                    return End::Close(
                        CLOSE_GOING_AWAY,
                        format!("no pong or frame for {silence:?}"),
                    );
                }
                match timeout(silence, socket.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return End::Broken(format!("ping failed: {e}")),
                    Err(_) => return End::Broken(format!("write stalled for {silence:?}")),
                }
            }
        }
    }
}

/// Write `first` and whatever else is already queued (up to [`WRITE_BATCH`]
/// frames), then flush once. Returns the close request met on the way, if any.
async fn write_batch(
    socket: &mut WebSocket,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    first: String,
) -> Result<Option<End>, axum::Error> {
    socket.feed(Message::Text(first.into())).await?;
    let mut close = None;
    for _ in 1..WRITE_BATCH {
        match outgoing.try_recv() {
            Ok(Outgoing::Frame(text)) => socket.feed(Message::Text(text.into())).await?,
            Ok(Outgoing::Close { code, reason }) => {
                close = Some(End::Close(code, reason));
                break;
            }
            Err(_) => break,
        }
    }
    socket.flush().await?;
    Ok(close)
}
