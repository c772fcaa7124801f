//! Cluster specs, machines, operations and live events.

use super::act;
use super::rendered::RenderedLists;
use super::responses::{Forbidden, NotFound, PayloadTooLarge, Unauthenticated};
use super::wire::*;
use crate::access::server_host;
use crate::auth::Caller;
use crate::core::machines as ops;
use crate::core::view::{MachineView, Reach};
use crate::core::{Action, CoreError};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use std::convert::Infallible;
use std::sync::Arc;

fn wants_yaml(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("yaml"))
}

/// The namespace's cluster spec (JSON, or YAML with `Accept: application/yaml`).
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/cluster", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 200, description = "The cluster spec (footloose.yaml format): JSON, or the stored YAML with `Accept: application/yaml`", content((Object = "application/json"), (Object = "application/yaml"))),
        Unauthenticated,
        (status = 404, description = "No such namespace, you are not a member, or it has no spec yet (`not_found`)", body = ErrorBody),
    ))]
pub async fn get_cluster(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(ns): Path<String>,
) -> ApiResult<Response> {
    let stored = ops::get_spec(&state, caller.principal(), &ns)
        .await?
        .ok_or_else(|| ApiError::not_found("a cluster spec for this namespace (PUT one first)"))?;
    if wants_yaml(&headers, header::ACCEPT) {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], stored.spec).into_response());
    }
    let spec = ops::parse(&stored.spec, true)?;
    Ok(Json(spec).into_response())
}

/// Replace the cluster spec (namespace admins). JSON, or YAML with `Content-Type: application/yaml`.
/// Machines change only on `create`.
#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/cluster", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    request_body(description = "A footloose.yaml-compatible cluster spec (README, Cluster spec): JSON, or YAML with `Content-Type: application/yaml`",
        content((Object = "application/json"), (Object = "application/yaml"))),
    responses(
        (status = 200, description = "Saved", body = SpecSaved),
        (status = 400, description = "The body is not UTF-8 text (`bad_request`)", body = ErrorBody),
        Unauthenticated,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        (status = 422, description = "The spec is invalid (`invalid_spec`), names an image the host lacks (`unknown_image`) or a backend it lacks (`backend_unavailable`), or can never fit the quota (`quota_exceeded`)", body = ErrorBody),
        (status = 503, description = "The container engine cannot be reached (`engine_unavailable`); try again", body = ErrorBody),
    ))]
pub async fn put_cluster(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult<Json<SpecSaved>> {
    let spec = std::str::from_utf8(&body)
        .map_err(|_| CoreError::Unreadable("the spec is not UTF-8 text".into()))
        .and_then(|text| ops::parse(text, wants_yaml(&headers, header::CONTENT_TYPE)));
    let saved = act(&state, &caller, Action::SaveSpec { ns, spec }).await?.into_spec()?;
    Ok(Json(SpecSaved { machines: saved.machines, warnings: saved.warnings, yaml: saved.yaml }))
}

/// Does a cluster or machine action and answers 202 with the operation it started.
async fn accepted(
    state: &AppState,
    caller: &Caller,
    action: Action,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    let op = act(state, caller, action).await?.into_operation()?;
    Ok((StatusCode::ACCEPTED, Json(OperationStarted { operation: op.id })))
}

/// Create the missing machines of the spec, change changed ones, remove ones no longer in it (namespace admins).
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/cluster/create", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        Forbidden,
        NotFound,
        (status = 409, description = "No spec saved yet (`no_spec`), or a host port is taken (`conflict`)", body = ErrorBody),
        (status = 422, description = "The saved spec is no longer valid here (`invalid_spec`, `unknown_image`, `backend_unavailable`) or does not fit the quota or the host's overcommit cap (`quota_exceeded`)", body = ErrorBody),
        (status = 503, description = "The container engine cannot be reached (`engine_unavailable`); try again", body = ErrorBody),
    ))]
pub async fn create_cluster(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::CreateCluster { ns }).await
}

/// Start every machine (members).
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/cluster/start", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        NotFound,
        (status = 422, description = "Starting would pass the host's overcommit cap (`quota_exceeded`)", body = ErrorBody),
    ))]
pub async fn start_cluster(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::StartCluster { ns }).await
}

/// Stop every machine (members).
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/cluster/stop", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        NotFound,
    ))]
pub async fn stop_cluster(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::StopCluster { ns }).await
}

/// Remove every machine of the namespace, its network and ports (namespace admins). The spec stays.
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/cluster/delete", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        Forbidden,
        NotFound,
    ))]
pub async fn delete_cluster(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::DeleteCluster { ns }).await
}

/// The namespace's machines (members).
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/machines", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 200, description = "Its machines", body = Vec<MachineOut>),
        Unauthenticated,
        NotFound,
    ))]
pub async fn list_machines(
    State(state): State<AppState>,
    Extension(kept): Extension<Arc<RenderedLists>>,
    caller: Caller,
    headers: HeaderMap,
    Path(ns): Path<String>,
) -> ApiResult<Response> {
    let host = server_host(&headers);
    // Read before rendering: a round that ends while this renders makes the body stale at once.
    let usage_version = state.usage.version();
    let machines = ops::list(&state, caller.principal(), &ns).await?;
    let key = (ns, caller.principal().login().to_string(), host);
    let body = match kept.get(&key, &machines, usage_version) {
        Some(body) => body,
        None => {
            let reach = Reach { login: &key.1, host: &key.2, ssh_port: state.config.ssh_port, hosts: &state.hosts };
            let out: Vec<MachineOut> =
                machines.iter().map(|m| MachineView::new(m, reach, &state.usage).into()).collect();
            let body = Bytes::from(serde_json::to_vec(&out).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("cannot write the machine list: {e}"),
                )
            })?);
            kept.put(key, machines, usage_version, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Start one machine (members).
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/machines/{name}/start", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("name" = super::rules::MachineName, Path, description = "The machine's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        NotFound,
        (status = 422, description = "Starting would pass the host's overcommit cap (`quota_exceeded`)", body = ErrorBody),
    ))]
pub async fn start_machine(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::StartMachine { ns, name }).await
}

/// Stop one machine (members).
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/machines/{name}/stop", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("name" = super::rules::MachineName, Path, description = "The machine's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        NotFound,
    ))]
pub async fn stop_machine(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::StopMachine { ns, name }).await
}

/// Restart one machine (members).
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/machines/{name}/restart", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("name" = super::rules::MachineName, Path, description = "The machine's name")),
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Unauthenticated,
        NotFound,
        (status = 422, description = "Starting a stopped machine would pass the host's overcommit cap (`quota_exceeded`)", body = ErrorBody),
    ))]
pub async fn restart_machine(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    accepted(&state, &caller, Action::RestartMachine { ns, name }).await
}

/// An operation's progress (who started it, or the superadmin).
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "machines", security(("bearer" = [])),
    params(("id" = String, Path, description = "The operation's id, from the 202 that started it")),
    responses(
        (status = 200, description = "Its progress", body = OperationOut),
        Unauthenticated,
        (status = 404, description = "No such operation, or you did not start it (`not_found`)", body = ErrorBody),
    ))]
pub async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OperationOut>> {
    Ok(Json(ops::operation(&state, caller.principal(), &id).await?.into()))
}

/// Server-Sent Events of machine and operation changes in the namespaces the caller may see.
#[utoipa::path(get, path = "/api/v1/events", tag = "machines", security(("bearer" = [])),
    responses(
        (status = 200, description = "A `text/event-stream` of `{type: machine|operation, namespace, ...}` events, kept alive with comments", body = String, content_type = "text/event-stream"),
        Unauthenticated,
    ))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    Sse::new(crate::events::stream(&state, caller.session)).keep_alive(KeepAlive::default())
}

/// ~/.ssh/config blocks for the caller's machines through the SSH gateway (text).
#[utoipa::path(get, path = "/api/v1/ssh-config", tag = "machines", security(("bearer" = [])),
    responses(
        (status = 200, description = "~/.ssh/config blocks", body = String, content_type = "text/plain"),
        Unauthenticated,
    ))]
pub async fn ssh_config(State(state): State<AppState>, caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    let text = crate::access::ssh_config_for(&state, caller.principal(), &server_host(&headers)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// How much of a console to read.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// The last this many lines (default 200); values outside 1–1000 are taken as the nearest of those.
    pub lines: Option<usize>,
}

/// The last lines of a machine's console (members): a microVM's serial console (boot messages,
/// login prompt; also while it is stopped), a container machine's system journal since its boot
/// (while it runs).
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/machines/{name}/console", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("name" = super::rules::MachineName, Path, description = "The machine's name"), ConsoleQuery),
    responses(
        (status = 200, description = "The console's last lines", body = ConsoleOut),
        (status = 400, description = "A query parameter is not of its type (`bad_request`)", body = ErrorBody),
        Unauthenticated,
        NotFound,
        (status = 409, description = "A container machine that is not running has no journal to read (`conflict`)", body = ErrorBody),
        (status = 503, description = "The machine's engine did not answer (`engine_unavailable`)", body = ErrorBody),
    ))]
pub async fn machine_console(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ConsoleQuery>,
) -> ApiResult<Json<ConsoleOut>> {
    let (engine, text) = ops::console(&state, caller.principal(), &ns, &name, q.lines.unwrap_or(200)).await?;
    Ok(Json(ConsoleOut { machine: name, engine: engine.as_str().to_owned(), text }))
}

/// CPU, memory and network samples of one machine for the last hour (members).
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/machines/{name}/metrics", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("name" = super::rules::MachineName, Path, description = "The machine's name")),
    responses(
        (status = 200, description = "Samples of the last hour, oldest first", body = MetricsOut),
        Unauthenticated,
        NotFound,
    ))]
pub async fn machine_metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<MetricsOut>> {
    let machines = ops::list(&state, caller.principal(), &ns).await?;
    let machine = machines
        .iter()
        .find(|m| m.name.as_str() == name)
        .ok_or_else(|| ApiError::not_found(format!("machine {name:?}")))?;
    Ok(Json(MetricsOut { points: state.usage.points(machine.namespace.as_str(), machine.name.as_str()) }))
}
