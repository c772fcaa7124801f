//! Who is calling: bearer tokens for the API, a session cookie for the panel.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use flvpc_store::Session;
use std::net::{IpAddr, SocketAddr};

/// Name of the panel's session cookie.
pub const SESSION_COOKIE: &str = "flvpc_session";
/// Header carrying the CSRF token when the panel's scripts call the API with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The source address of the request, when the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip())))
    }
}

/// An authenticated caller of the API, and where the call came from.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session or token used, with the principal read for this request.
    pub session: Session,
    /// The source address.
    pub source: Option<IpAddr>,
}

impl Caller {
    /// The authenticated person.
    pub fn principal(&self) -> &flvpc_model::Principal {
        &self.session.principal
    }

    /// The caller as the core sees them: no HTTP in it.
    pub fn actor(&self) -> crate::core::Actor {
        crate::core::Actor::signed_in(&self.session, self.source)
    }
}

/// Reads one cookie's value from the request headers.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let source = ClientAddr::from_request_parts(parts, state).await.map(|a| a.0).unwrap_or(None);
        if let Some(token) = bearer(parts) {
            let session = state.store.authenticate(token).await?.ok_or_else(ApiError::unauthenticated)?;
            return Ok(Caller { session, source });
        }
        // The panel's own scripts may call the API with the session cookie; a
        // state change then needs the session's CSRF token in a header.
        if let Some(secret) = cookie(parts, SESSION_COOKIE) {
            let session = state.store.authenticate(secret).await?.ok_or_else(ApiError::unauthenticated)?;
            let safe = matches!(parts.method, Method::GET | Method::HEAD);
            let header_token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !safe && (session.csrf.is_none() || header_token != session.csrf.as_deref()) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "csrf",
                    "a cookie-authenticated change needs the X-CSRF-Token header; scripts should use a bearer token",
                ));
            }
            return Ok(Caller { session, source });
        }
        Err(ApiError::unauthenticated())
    }
}
