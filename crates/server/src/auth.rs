//! Credentials on the wire: `Authorization: Bearer` parsing, the worker-handle vs.
//! capability-token classification (tokens.md §8), and the optional admin token
//! (decision 9).
//!
//! Missing or malformed credentials are 401 (decision 3); a bearer that is
//! neither a handle nor a decodable token is 400 `invalid token: ...`. Nothing
//! here logs or echoes a credential.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName};
use mse_engine::CapToken;
use subtle::ConstantTimeEq;

/// Header carrying the admin token where `Authorization` is taken.
pub const ADMIN_HEADER: HeaderName = HeaderName::from_static("x-admin-token");

/// The value of `Authorization: Bearer <value>` (exact scheme `Bearer `, value
/// trimmed and non-empty). `what` names the expected value in messages.
pub fn bearer<'a>(headers: &'a HeaderMap, what: &str) -> Result<&'a str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    parse_bearer(value.as_bytes(), what)
}

fn parse_bearer<'a>(raw: &'a [u8], what: &str) -> Result<&'a str, ApiError> {
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|s| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
        .ok_or_else(|| ApiError::unauthorized("invalid Authorization header encoding"))?;
    let rest = text.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized(format!("Authorization must be 'Bearer <{what}>'"))
    })?;
    let value = rest.trim();
    if value.is_empty() {
        return Err(ApiError::unauthorized(format!(
            "Authorization bearer is empty: expected 'Bearer <{what}>'"
        )));
    }
    Ok(value)
}

/// A worker credential.
pub enum Credential<'a> {
    /// A `wh-` worker handle.
    Handle(&'a str),
    /// A decoded (not yet verified) capability token.
    Token(CapToken),
}

/// tokens.md §8: `wh-`, 5–64 characters, alphanumeric after the prefix.
pub fn is_handle(s: &str) -> bool {
    (5..=64).contains(&s.len())
        && s.starts_with("wh-")
        && s[3..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Decode a bearer that must be a full capability token (400 when it is not).
pub fn decode_token(value: &str) -> Result<CapToken, ApiError> {
    CapToken::decode(value).map_err(|e| ApiError::bad_request(format!("invalid token: {e}")))
}

/// Classify a bearer as a handle or a token.
pub fn classify(value: &str) -> Result<Credential<'_>, ApiError> {
    if is_handle(value) {
        Ok(Credential::Handle(value))
    } else {
        decode_token(value).map(Credential::Token)
    }
}

/// Constant-time equality of two secrets (only the length can leak).
pub fn secret_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the request carries the configured admin token, in `X-Admin-Token`
/// or (when `allow_bearer`) as `Authorization: Bearer`. True when none is set.
pub fn has_admin(state: &AppState, headers: &HeaderMap, allow_bearer: bool) -> bool {
    let Some(admin) = state.config().admin_token.as_deref() else {
        return true;
    };
    if let Some(v) = headers.get(&ADMIN_HEADER) {
        return v.to_str().is_ok_and(|v| secret_eq(v.trim(), admin));
    }
    allow_bearer && bearer(headers, "admin token").is_ok_and(|v| secret_eq(v, admin))
}

/// Extractor guarding a route with the admin token when one is configured.
/// `BEARER = false` accepts only `X-Admin-Token` (the route uses its Bearer for
/// something else). Placed before body extractors so it is checked first.
pub struct AdminGuard<const BEARER: bool>;

impl<const BEARER: bool> FromRequestParts<AppState> for AdminGuard<BEARER> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if has_admin(state, &parts.headers, BEARER) {
            Ok(AdminGuard)
        } else {
            let how = if BEARER {
                "'Authorization: Bearer <admin token>' or 'X-Admin-Token: <admin token>'"
            } else {
                "'X-Admin-Token: <admin token>'"
            };
            Err(ApiError::unauthorized(format!(
                "admin token required: pass {how}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_forms() {
        assert_eq!(parse_bearer(b"Bearer abc ", "t").unwrap(), "abc");
        assert_eq!(parse_bearer(b"Bearer   x", "t").unwrap(), "x");
        for bad in [
            &b"bearer x"[..],
            b"Bearer",
            b"Bearer   ",
            b"Basic x",
            b"Bearer \xff",
        ] {
            let e = parse_bearer(bad, "t").unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{bad:?}");
        }
    }

    #[test]
    fn handle_classification() {
        assert!(is_handle("wh-zz"));
        assert!(is_handle("wh-0123456789abcdef0123456789abcdef"));
        assert!(!is_handle("wh-z"));
        assert!(!is_handle("wh-ab_c"));
        assert!(!is_handle(&format!("wh-{}", "a".repeat(62))));
        assert!(!is_handle("eyJhZ2VudF9pZCI6"));
    }

    #[test]
    fn constant_time_eq() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
