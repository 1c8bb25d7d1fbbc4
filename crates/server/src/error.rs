//! Error types: [`ApiError`], the one shape every failed request takes
//! (`{"error": "..."}` with a meaningful status, decision 3), and [`ServerError`],
//! what can stop the server from starting or serving.
//!
//! The mapping from engine, store and launch errors to statuses lives here so
//! every route classifies the same failure the same way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mse_blueprint::LaunchError;
use mse_engine::EngineError;
use mse_store::StoreError;
use std::net::SocketAddr;

/// A failed request: status plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// An engine failure, prefixed with the operation that failed.
    pub fn engine(context: &str, e: EngineError) -> Self {
        let status = if e.is_unauthenticated() {
            StatusCode::UNAUTHORIZED
        } else if e.is_forbidden() {
            StatusCode::FORBIDDEN
        } else {
            match &e {
                EngineError::TaskNotFound(_)
                | EngineError::SessionNotFound
                | EngineError::ResumeKeyNotFound
                | EngineError::ResourceNotFound(_) => StatusCode::NOT_FOUND,
                EngineError::StaleHandle(_)
                | EngineError::InvalidTransition(_)
                | EngineError::Cancelled => StatusCode::CONFLICT,
                EngineError::SpawnDepthExceeded { .. } => StatusCode::BAD_REQUEST,
                EngineError::PollTimeout => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        Self::new(status, format!("{context}: {e}"))
    }

    /// A store failure, prefixed with the operation that failed.
    pub fn store(context: &str, e: StoreError) -> Self {
        let status = match &e {
            StoreError::InvalidId(_) | StoreError::BadVersion(_) | StoreError::BadSemver { .. } => {
                StatusCode::BAD_REQUEST
            }
            StoreError::NotFound(_)
            | StoreError::VersionNotFound { .. }
            | StoreError::NoSemverMatch { .. } => StatusCode::NOT_FOUND,
            StoreError::Archived(_) | StoreError::HeadMoved { .. } => StatusCode::CONFLICT,
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, format!("{context}: {e}"))
    }

    /// A failed run of `POST /v1/tasks` (`run: launch: <reason>`).
    pub fn launch(e: LaunchError) -> Self {
        let status = match e {
            LaunchError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, format!("run: launch: {e}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Serialize `{"error": message}` (the body of every error response).
pub fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message }))
        .unwrap_or_else(|_| br#"{"error":"unprintable error"}"#.to_vec())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut res = (self.status, error_body(&self.message)).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Why the server could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("seeding blueprint '{id}' failed: {source}")]
    Seed {
        id: String,
        #[source]
        source: StoreError,
    },
    /// The database could not be opened or used at startup (locked, read-only,
    /// corrupt, newer schema, unwritable directory). One line, naming the file.
    #[error("{0}")]
    Storage(String),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
