//! The flvpc control plane: REST API, web panel, audit log and metrics.
//!
//! Architecture Invariant: this is the only crate that knows HTTP. It decides
//! nothing about permissions itself: it asks `flvpc_model::policy` for a grant
//! and hands it to `flvpc_store`. Every state change asked for on a request is one
//! `core::Action` through `core::dispatch`, which writes the audit log, whichever door it came
//! through; the core itself knows no HTTP type.

pub mod access;
pub mod api;
pub mod auth;
pub mod core;
pub mod error;
pub mod events;
pub mod gateway;
pub mod hosts;
pub mod leader;
pub mod metrics;
pub mod panel;
pub mod reconcile;
pub mod request_log;
pub mod state;
pub mod terminal;
pub mod throttle;
pub mod tls;
pub mod usage;

pub use state::{AppState, Config};

use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use std::net::SocketAddr;

/// The whole HTTP application: API, panel, health and metrics.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = api::router();
    let openapi = std::sync::Arc::new(openapi);
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(api)
        .route("/api/v1/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) }))
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::not_found("this API route") }))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(panel::router())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), count_and_harden))
        // Outermost: its line times and names every request, refusals by the layers above too.
        .layer(middleware::from_fn(request_log::log_request))
        .with_state(state)
}

/// `ok` when the database and the machine engine answer. Without the database nothing can be
/// served (503). Without the engine the panel, API and gateway still serve what is recorded, but
/// machines cannot change and their shown state may be stale: 200 with `degraded: …`, so that a
/// monitor sees it without a load balancer taking the server out.
///
/// `/healthz?detail` answers the same status as JSON with each part named: the database, every
/// engine, and whether microVMs can be made with which accelerator.
async fn healthz(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let detail = query.as_deref().is_some_and(asks_for_detail);
    let database = state.store.ping().await;
    if let Err(err) = &database {
        tracing::error!("health check: database does not answer: {err}");
        if !detail {
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response();
        }
    }
    // Every registered engine (every host's) is asked at once; the first that does not answer is named.
    let asked = state.reconciler.engines().all().into_iter().map(|(placement, engine)| async move {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(2), engine.ping()).await;
        let failure = match answer {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("does not answer: {err}")),
            Err(_) => Some("did not answer within 2 s".to_owned()),
        };
        (placement, failure)
    });
    let mut engines = Vec::new();
    let mut problem = None;
    for (placement, failure) in futures::future::join_all(asked).await {
        if let Some(failure) = &failure {
            tracing::debug!("health check: the {placement} engine {failure}");
            problem.get_or_insert_with(|| format!("{failure} (host {})", placement.host));
        }
        engines.push(serde_json::json!({
            "host": placement.host.to_string(),
            "engine": placement.engine.as_str(),
            "ok": failure.is_none(),
            "detail": failure,
        }));
    }
    let status = match (&database, &problem) {
        (Err(_), _) => "database unavailable".to_owned(),
        (Ok(()), Some(problem)) => format!("degraded: the machine engine {problem}"),
        (Ok(()), None) => "ok".to_owned(),
    };
    if !detail {
        return (StatusCode::OK, format!("{status}\n")).into_response();
    }
    let code = if database.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": status,
        // The database's own error stays in the log: it can name hosts and users.
        "database": {"ok": database.is_ok()},
        "engines": engines,
        // Whether this process holds the database's leader lease and reconciles (`leader.rs`).
        "reconciling": state.reconciler.leading(),
        "microvm": {
            "available": state.microvm.available,
            "accelerator": state.microvm.accelerator,
            "detail": state.microvm.detail,
        },
    });
    (code, Json(body)).into_response()
}

/// Whether a query string has a `detail` parameter (any value).
fn asks_for_detail(query: &str) -> bool {
    for pair in query.split('&') {
        if pair == "detail" || pair.starts_with("detail=") {
            return true;
        }
    }
    false
}

/// Aggregate counters for everyone; the per-machine series (which name namespaces and
/// machines) only for the superadmin's token or the configured scrape token.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let per_machine = match metrics_reader(&state, &headers).await {
        Ok(per_machine) => per_machine,
        Err(err) => return err.into_response(),
    };
    let uptime = state.started.elapsed().as_secs();
    let round_us = u64::try_from(state.usage.last_round().as_micros()).unwrap_or(u64::MAX);
    let latest = state.usage.all_latest();
    let sampled = u64::try_from(latest.len()).unwrap_or(u64::MAX);
    let gauges = [
        ("flvpc_uptime_seconds", "Seconds since the server started.", uptime),
        ("flvpc_usage_sampler_round_microseconds", "How long the last round of the usage sampler took.", round_us),
        ("flvpc_machines_sampled", "Running machines with a usage sample, all namespaces together.", sampled),
    ];
    match state.metrics.render(&gauges, per_machine.then_some(latest.as_slice())) {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(err) => {
            tracing::error!("cannot encode /metrics: {err}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded; the error was logged\n")
                .into_response()
        }
    }
}

/// Whether the caller of /metrics may read the per-machine series: the scrape token or a
/// superadmin's token. Anyone else, signed in or not, gets the aggregate counters; a token that
/// is no token at all is refused (401), so a misconfigured scraper notices instead of silently
/// getting less.
async fn metrics_reader(state: &AppState, headers: &axum::http::HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(false) };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ApiError::unauthenticated)?;
    if state.config.metrics_token.as_deref().is_some_and(|expected| metrics::same_secret(expected, token)) {
        return Ok(true);
    }
    match state.store.authenticate(token).await? {
        Some(session) => Ok(session.principal.is_superadmin()),
        None => Err(ApiError::unauthenticated()),
    }
}

/// Gives API errors that axum produces itself (405, 413, bad path segments) the
/// API's JSON error shape, so clients always get `{"error":{"code","message"}}`.
async fn json_errors(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not accept that method".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the body is too large".to_owned()),
        StatusCode::NOT_FOUND => ("not_found", "not found".to_owned()),
        s if s.is_server_error() => ("internal", "the server failed; the error was logged, try again".to_owned()),
        _ => {
            let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let text = if text.is_empty() { "the request could not be read".to_owned() } else { text };
            return ApiError::new(status, "bad_request", text).into_response();
        }
    };
    ApiError::new(status, code, message).into_response()
}

/// Counts responses for /metrics and adds headers that keep browsers strict.
async fn count_and_harden(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    state.metrics.response(response.status().as_u16());
    let headers = response.headers_mut();
    if state.config.tls {
        // Served over TLS by flvpc itself: browsers keep to https for a year. (Behind a proxy, the
        // proxy that terminates TLS decides.)
        headers.insert("strict-transport-security", HeaderValue::from_static("max-age=31536000"));
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    response
}

pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the application is served: plain HTTP, or HTTPS with a server config (the TLS layer
/// sits in front of the same router, so everything but the transport is the same).
pub enum Listener {
    /// Plain HTTP (`--plain-http`, and the in-process test servers).
    Plain(tokio::net::TcpListener),
    /// HTTPS: every connection's handshake done by [`tls::TlsListener`].
    Tls(tokio::net::TcpListener, std::sync::Arc<rustls::ServerConfig>),
}

impl From<tokio::net::TcpListener> for Listener {
    fn from(listener: tokio::net::TcpListener) -> Self {
        Self::Plain(listener)
    }
}

/// Serves the application on a bound listener until `shutdown` resolves.
pub async fn serve(
    listener: impl Into<Listener>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Reconciles only while this process holds the database's leader lease (`leader.rs`).
    let resync = tokio::spawn(leader::reconcile_while_leading(state.store.clone(), state.reconciler.clone()));
    let sampler = tokio::spawn(state.usage.clone().run());
    // Every process keeps its engines in step with the hosts table (the leader's reconciler and
    // every process's gateway and doors use them).
    let _stop_hosts = AbortOnDrop(tokio::spawn(state.hosts.clone().run()));
    let _stop_sampler = AbortOnDrop(sampler);
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let _stop_resync = AbortOnDrop(resync);
    match listener.into() {
        Listener::Plain(listener) => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Listener::Tls(listener, config) => {
            use axum::serve::ListenerExt;
            // `tap_io` only for its type: axum gives `ConnectInfo<SocketAddr>` to any tapped listener
            // whose address is a SocketAddr, and `auth::ClientAddr` reads that.
            let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
    }
}
