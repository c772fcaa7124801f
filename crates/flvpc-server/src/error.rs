//! The one error type of the HTTP surface: a status, a snake_case code and a
//! sentence, rendered as `{"error":{"code","message"}}`. Never a stack trace.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flvpc_model::{Denied, Invalid};
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

    /// 500, logged; the client learns only that it was the server's fault.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {err}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; the error was logged, try again")
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

impl From<Invalid> for ApiError {
    fn from(err: Invalid) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", err.to_string())
    }
}

impl From<Denied> for ApiError {
    fn from(err: Denied) -> Self {
        match err {
            Denied::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "not_found", "no such namespace, or you are not a member of it")
            }
            Denied::Forbidden => Self::new(StatusCode::FORBIDDEN, "forbidden", "your role does not allow this"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid(invalid) => invalid.into(),
            StoreError::WrongPassword => {
                Self::new(StatusCode::FORBIDDEN, "wrong_password", "the current password is wrong")
            }
            StoreError::Busy(wait) => Self::too_many(
                "too_many_requests",
                "the server is busy checking other passwords; try again in a moment",
                wait,
            ),
            other => Self::internal(other),
        }
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
