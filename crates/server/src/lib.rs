//! The HTTP API of the orchestration server (`mse serve`).
//!
//! Wire contract: the reference's routes and shapes (spec `http-api.md` §1–§9),
//! with the project decisions on top (every client error is a 4xx JSON `{"error": ...}`; 401 for unknown,
//! forged or expired credentials, 403 for valid-but-not-allowed, 404 for unknown
//! resources; configurable limits; optional admin token).
//!
//! Layout:
//! - [`state`]: everything a request handler needs ([`AppState`]) and how it is built;
//! - [`server`]: [`bind`] and [`Bound::run`] (listener, graceful shutdown);
//! - `app`: the router, fallbacks and middleware;
//! - `error`, `extract`, `auth`: the JSON error type, body/query extractors with
//!   limits, and bearer/admin credential parsing;
//! - `routes::*`: one module per route family (`blueprints`: the Blueprint store
//!   over HTTP and the JSON Schema);
//! - `cache`: the resolution cache of runs by id (heads and fixed versions),
//!   cleared by every write through the server's store handles;
//! - [`refs`]: `$file` / `$agent_md` expansion of registered Blueprints, sandboxed
//!   to the configured reference base directory.

mod app;
mod auth;
mod cache;
pub mod config;
mod error;
mod extract;
pub mod refs;
mod routes;
mod seed;
mod server;
mod state;

pub use app::router;
pub use config::{Limits, ServerConfig, Storage, DATABASE_FILE};
pub use error::{ApiError, ServerError};
pub use server::{bind, Bound};
pub use state::AppState;
