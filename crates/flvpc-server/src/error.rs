//! The one error type of the HTTP surface: a status, a snake_case code and a
//! sentence, rendered as `{"error":{"code","message"}}`. Never a stack trace.
//!
//! The core's refusals ([`CoreError`]) become statuses here and nowhere else; the codes and
//! messages are the core's. The codes of requests that never reach the core (unreadable
//! bodies, missing credentials, CSRF) are the HTTP surface's own.

use crate::core::CoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flvpc_store::StoreError;
use serde::Serialize;

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable snake_case code for scripts.
    pub code: &'static str,
    /// A sentence for people: what went wrong and what to do.
    pub message: String,
    /// Seconds to wait before trying again (sent as Retry-After with 429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// 429: try again after `wait` (rounded up to whole seconds, at least one).
    pub fn too_many(code: &'static str, message: impl Into<String>, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self { retry_after: Some(secs.max(1)), ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message) }
    }

    /// 400: the request could not be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first: send Authorization: Bearer <token> (POST /api/v1/auth/login gives one)",
        )
    }

    /// 404 for a thing that does not exist or that the caller may not see.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Inner { code: self.code, message: &self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}

/// The HTTP status of a core refusal: the one place a [`CoreError`] becomes a status (the API's
/// answers, and the status of the panel's error pages).
pub fn http_status(err: &CoreError) -> StatusCode {
    match err {
        CoreError::Invalid(_)
        | CoreError::InvalidSpec(_)
        | CoreError::UnknownImage(_)
        | CoreError::BackendUnavailable(_)
        | CoreError::QuotaExceeded(_) => StatusCode::UNPROCESSABLE_ENTITY,
        CoreError::Unreadable(_) => StatusCode::BAD_REQUEST,
        CoreError::NotFound(_) => StatusCode::NOT_FOUND,
        CoreError::Forbidden | CoreError::WrongPassword => StatusCode::FORBIDDEN,
        CoreError::Conflict(_) | CoreError::NoSpec | CoreError::MachinesRemain => StatusCode::CONFLICT,
        CoreError::WrongCredentials | CoreError::Unauthenticated => StatusCode::UNAUTHORIZED,
        CoreError::TooManyAttempts(_) | CoreError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        CoreError::EngineUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        match (&err, err.retry_after()) {
            // The API says how to sign in, which the core cannot know.
            (CoreError::Unauthenticated, _) => Self::unauthenticated(),
            (_, Some(wait)) => Self::too_many(err.code(), err.message(), wait),
            (_, None) => Self::new(http_status(&err), err.code(), err.message()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        CoreError::from(err).into()
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
