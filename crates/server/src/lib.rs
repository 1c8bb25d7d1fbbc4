//! The HTTP API of the orchestration server.

pub mod config;

pub use config::{Limits, ServerConfig};
