//! The hosts that run machines (issue 13; superadmin): list, add, drain or activate, remove,
//! and moving a stopped machine to another host.

use super::responses::{
    Forbidden, Invalid, Malformed, NotFound, PayloadTooLarge, Unauthenticated, UnsupportedMediaType,
};
use super::wire::*;
use super::{act, ApiJson};
use crate::auth::Caller;
use crate::core::hosts::HostReport;
use crate::core::{self, Action};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

fn host_out(state: &AppState, report: HostReport) -> HostEntryOut {
    let HostReport { view, load } = report;
    let info = view.status.info.as_ref();
    let local = view.name.as_str() == flvpc_model::HostName::LOCAL;
    let microvm = local && state.microvm.available;
    HostEntryOut {
        name: view.name.to_string(),
        engine: view.engine.clone(),
        address: view.address.map(|a| a.to_string()),
        state: view.state.as_str().to_owned(),
        reachable: view.status.reachable,
        detail: view.status.detail.clone(),
        engine_version: info.map(|i| i.engine_version.clone()).filter(|v| !v.is_empty()),
        cpus: info.map(|i| i.cpus),
        memory_mb: info.map(|i| i.memory_bytes / (1024 * 1024)),
        machines: load.machines,
        allocated_cpus: load.allocated.cpus,
        allocated_memory_mb: load.allocated.memory_mb,
        microvm,
        accelerator: if microvm { state.microvm.accelerator.clone() } else { None },
    }
}

/// The hosts (superadmin): `local` first, each with its engine, state, health, size and the
/// machines placed there.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every host", body = Vec<HostEntryOut>),
        Unauthenticated,
        Forbidden,
    ))]
pub async fn list_hosts(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<HostEntryOut>>> {
    let reports = core::hosts::list(&state, caller.principal()).await?;
    Ok(Json(reports.into_iter().map(|r| host_out(&state, r)).collect()))
}

/// Add a host (superadmin). Its engine must answer (checked before anything is recorded); with
/// the first added host the hosts form a Docker Swarm and namespace networks become overlays.
#[utoipa::path(post, path = "/api/v1/hosts", tag = "hosts", security(("bearer" = [])), request_body = NewHostBody,
    responses(
        (status = 201, description = "Added", body = HostEntryOut),
        Malformed,
        Unauthenticated,
        Forbidden,
        (status = 409, description = "A host of that name exists, or the name is `local` (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
        (status = 503, description = "The host's engine did not answer (`engine_unavailable`): nothing was recorded", body = ErrorBody),
    ))]
pub async fn add_host(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewHostBody>,
) -> ApiResult<(StatusCode, Json<HostEntryOut>)> {
    let tls = match (body.tls_ca, body.tls_cert, body.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some([ca, cert, key]),
        (None, None, None) => None,
        _ => {
            return Err(crate::core::CoreError::Invalid(
                "tls_ca, tls_cert and tls_key go together: give all three, or none for a unix socket".into(),
            )
            .into())
        }
    };
    let name = body.name.clone();
    act(&state, &caller, Action::AddHost { name: body.name, engine: body.engine, address: body.address, tls }).await?;
    let report = core::hosts::list(&state, caller.principal())
        .await?
        .into_iter()
        .find(|r| r.view.name.as_str() == name)
        .ok_or_else(|| crate::core::CoreError::internal("the host added is not listed"))?;
    Ok((StatusCode::CREATED, Json(host_out(&state, report))))
}

/// Make a host take new machines (`active`) or none (`draining`: what it runs stays, its stopped
/// machines can be moved) (superadmin).
#[utoipa::path(put, path = "/api/v1/hosts/{host}/state", tag = "hosts", security(("bearer" = [])),
    params(("host" = String, Path, description = "The host's name")), request_body = HostStateBody,
    responses(
        (status = 204, description = "Done"),
        Malformed,
        Unauthenticated,
        Forbidden,
        NotFound,
        (status = 409, description = "`local` is always active (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn set_host_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiJson(body): ApiJson<HostStateBody>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::SetHostState { name: host, state: body.state }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a host that holds no machine (superadmin): delete or move its machines first.
#[utoipa::path(delete, path = "/api/v1/hosts/{host}", tag = "hosts", security(("bearer" = [])),
    params(("host" = String, Path, description = "The host's name")),
    responses(
        (status = 204, description = "Removed"),
        Unauthenticated,
        Forbidden,
        NotFound,
        (status = 409, description = "Machines are still placed there, or it is `local` (`conflict`)", body = ErrorBody),
    ))]
pub async fn remove_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::RemoveHost { name: host }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move a stopped machine to another host (superadmin): it is made again there from its image
/// (its disk does not move: no live migration) and removed from the old host; its host ports are
/// kept where they are free on the new host.
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/machines/{name}/move", tag = "machines", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("name" = super::rules::MachineName, Path, description = "The machine's name")),
    request_body = MoveBody,
    responses(
        (status = 202, description = "Started: poll the operation", body = OperationStarted),
        Malformed,
        Unauthenticated,
        Forbidden,
        NotFound,
        (status = 409, description = "The machine is not stopped, or the host is draining (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
    ))]
pub async fn move_machine(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<(StatusCode, Json<OperationStarted>)> {
    let op = act(&state, &caller, Action::MoveMachine { ns, name, host: body.host }).await?.into_operation()?;
    Ok((StatusCode::ACCEPTED, Json(OperationStarted { operation: op.id })))
}
