//! One log line per HTTP request, and its request id.
//!
//! The id is the caller's `X-Request-Id` when it is short and printable (so a proxy's id follows
//! the request through), else a new random one; it is echoed in the response's `X-Request-Id`
//! and carried by a span, so every line logged while serving the request names it too. The path
//! is logged without its query string: a query may carry a token.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// The header that carries a request's id, in and out.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-given id kept; a longer one is replaced, not cut.
const MAX_ID: usize = 64;

/// The caller's id if it is 1 to 64 visible ASCII characters (no spaces, no controls: it goes
/// into log lines and a header as it is).
fn given_id(value: Option<&HeaderValue>) -> Option<String> {
    let id = value?.to_str().ok()?;
    let fits = !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_graphic());
    fits.then(|| id.to_owned())
}

/// The middleware: times the request, logs its line, echoes the id.
pub async fn log_request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = given_id(request.headers().get(&REQUEST_ID)).unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let span = tracing::info_span!("request", id = %id);
    let mut response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::warn!(request_id = %id, %method, %path, status, duration_ms, "request");
    } else {
        tracing::info!(request_id = %id, %method, %path, status, duration_ms, "request");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_taken() {
        let id = |s: &str| given_id(Some(&HeaderValue::from_str(s).expect("header")));
        assert_eq!(id("abc-123_XYZ.4"), Some("abc-123_XYZ.4".into()));
        assert_eq!(id(""), None);
        assert_eq!(id("with space"), None);
        assert_eq!(id(&"x".repeat(65)), None);
        assert_eq!(id(&"x".repeat(64)), Some("x".repeat(64)));
        assert_eq!(given_id(Some(&HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header"))), None);
        assert_eq!(given_id(None), None);
    }
}
