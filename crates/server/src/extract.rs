//! Request extractors that enforce the limits of decision 4 and answer every
//! rejection as JSON (decision 3), replacing axum's plain-text rejections.
//!
//! - [`JsonBody`]: content type (`application/json` or `application/*+json`, else
//!   415), body size (`limits.max_body_bytes`, else 413), nesting depth scanned on
//!   the raw bytes before parsing (400), then one typed parse: syntax errors are
//!   400, shape errors 422 with the failing field's path.
//! - [`RawBody`]: the size limit only (`/v1/worker/submit`).
//! - Both give up on a body that takes longer than [`BODY_READ_TIMEOUT`] (408).
//! - [`Query`] and [`Path`]: axum's, with 400 JSON rejections.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A JSON request body parsed into `T`.
pub struct JsonBody<T>(pub T);

/// The raw request body (any content type).
pub struct RawBody(pub Bytes);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let limits = &state.config().limits;
        let declared = content_length(req.headers());
        let bytes = read_body(req.into_body(), declared, limits.max_body_bytes).await?;
        parse_json(&bytes, limits.max_json_depth).map(JsonBody)
    }
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let declared = content_length(req.headers());
        let limit = state.config().limits.max_body_bytes;
        read_body(req.into_body(), declared, limit)
            .await
            .map(RawBody)
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than the limit of {limit} bytes"),
    )
}

/// `application/json`, or `application/<anything>+json`, parameters allowed.
fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected request with `Content-Type: application/json`",
        )
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsupported)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return Err(unsupported());
    };
    let json = kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json")));
    if json {
        Ok(())
    } else {
        Err(unsupported())
    }
}

/// How long a client may take to send its body (a trickling client must not
/// hold a request open forever). 60 s allow 16 MiB at ~270 KiB/s.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Collect the body, refusing more than `limit` bytes (413). A declared
/// `Content-Length` over the limit is refused without reading.
async fn read_body(body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let collect = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    let Ok(collected) = collect.await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timed out reading the request body",
        ));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to read the request body: {e}"
        ))),
    }
}

/// Whether `bytes` nests arrays/objects deeper than `max` (brackets inside
/// strings are ignored). Runs before parsing so a hostile body cannot recurse.
pub fn nesting_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// serde_json refuses nesting beyond this whatever the configuration says.
pub const PARSER_MAX_DEPTH: usize = 127;

/// Depth check (the configured limit, at most [`PARSER_MAX_DEPTH`]), then one
/// typed parse. The fast path is plain serde_json; only a failing body is parsed
/// again with path tracking to name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    let max_depth = max_depth.min(PARSER_MAX_DEPTH);
    if nesting_exceeds(bytes, max_depth) {
        return Err(ApiError::bad_request(format!(
            "JSON nesting deeper than {max_depth}"
        )));
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(e) => Err(describe_parse_error::<T>(bytes, e)),
    }
}

fn describe_parse_error<T: DeserializeOwned>(bytes: &[u8], first: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if !matches!(first.classify(), Category::Data) {
        return ApiError::bad_request(format!("invalid JSON: {first}"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let detail = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            }
        }
        Ok(_) => first.to_string(),
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("invalid request body: {detail}"),
    )
}

/// axum's `Query` with a 400 JSON rejection.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// axum's `Path` with JSON rejections (400 for undecodable segments).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| {
                let status = if e.status().is_server_error() {
                    e.status()
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::new(status, format!("invalid path: {}", e.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_ignores_strings() {
        assert!(!nesting_exceeds(br#"{"a":[1,2,{"b":"[[[[["}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[1,2,{"b":[]}]}"#, 3));
        assert!(!nesting_exceeds(br#""\"[[[[""#, 1));
        let deep = "[".repeat(100_000);
        assert!(nesting_exceeds(deep.as_bytes(), 128));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_json_content_type(&h).is_err());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
        ] {
            h.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_json_content_type(&h).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/+jsonx",
            "json",
        ] {
            h.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            assert!(check_json_content_type(&h).is_err(), "{bad}");
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Shape {
        a: u32,
        b: Vec<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        c: bool,
    }

    #[test]
    fn parse_errors_are_classified() {
        let e = parse_json::<Shape>(b"{nope", 10).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Shape>(b"", 10).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Shape>(br#"{"a":1,"b":[{"c":3}]}"#, 10).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("b[0].c"), "{}", e.message);
        let e = parse_json::<Shape>(br#"[[[[1]]]]"#, 3).unwrap_err();
        assert_eq!(e.message, "JSON nesting deeper than 3");
    }
}
