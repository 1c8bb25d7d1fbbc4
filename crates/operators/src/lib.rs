//! Operator login sessions and their WebSocket protocol.
//!
//! An operator (a human or an AI agent) mints a session with `POST /v1/operators`,
//! claiming role aliases, then connects a WebSocket. One session serves three
//! faces to the engine: senior bridge (`ask`), spawn hook (`hook_before` /
//! `hook_after`) and operator backend (`spawn`). This crate holds the session
//! state and protocol; the HTTP server only moves frames between the socket and
//! [`OperatorSession::handle_frame`] / [`Connection::outgoing`].
//!
//! Every request waits at most [`OperatorConfig::reply_timeout`]; a session that
//! loses its socket keeps its pending requests for [`OperatorConfig::reconnect_grace`]
//! (answers may arrive on the new socket), and a deleted session fails them at once.

pub mod hub;
pub mod protocol;
pub mod session;

pub use hub::{validate_role, AuthError, Connection, MintError, Minted, OperatorHub, SessionInfo};
pub use protocol::{ClientMsg, RequestKind, ServerMsg};
pub use session::{OperatorSession, Outgoing};

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Longest wait for `answer` / `hook_ack` / `spawn_ack` (default 300 s). The run's
    /// TTL bounds it as well, since an expired run drops its waiting steps.
    pub reply_timeout: Duration,
    /// How long pending requests survive a lost socket (default 30 s).
    pub reconnect_grace: Duration,
    /// Sessions with no socket and nothing pending for this long are deleted and
    /// their roles released (default 24 h; zero disables).
    pub idle_ttl: Duration,
    /// Frames queued per socket (default 1024); a full queue fails new requests.
    pub outgoing_queue: usize,
    /// Base URL named in `spawn` directives (e.g. `http://127.0.0.1:7777`).
    pub public_base_url: String,
    /// WebSocket ping period; a peer that misses two pongs is disconnected (default 30 s).
    pub ping_interval: Duration,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_secs(300),
            reconnect_grace: Duration::from_secs(30),
            idle_ttl: Duration::from_secs(24 * 3600),
            outgoing_queue: 1024,
            public_base_url: "http://127.0.0.1:7777".into(),
            ping_interval: Duration::from_secs(30),
        }
    }
}
