//! Namespaces, memberships and the audit log.

use super::responses::{
    Forbidden, Invalid, Malformed, NotFound, PayloadTooLarge, Unauthenticated, UnsupportedMediaType,
};
use super::wire::*;
use super::{act, ApiJson};
use crate::auth::Caller;
use crate::core::{self, Action};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use flvpc_model::Role;
use serde::Deserialize;

/// Namespaces you may see: all for the superadmin, your own for others.
#[utoipa::path(get, path = "/api/v1/namespaces", tag = "namespaces", security(("bearer" = [])),
    responses(
        (status = 200, description = "The namespaces you may see", body = Vec<NamespaceOut>),
        Unauthenticated,
    ))]
pub async fn list_namespaces(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<NamespaceOut>>> {
    let all = core::visible_namespaces(&state, caller.principal()).await?;
    Ok(Json(all.into_iter().map(|(ns, role)| NamespaceOut::new(ns, role)).collect()))
}

/// Create a namespace (superadmin).
#[utoipa::path(post, path = "/api/v1/namespaces", tag = "namespaces", security(("bearer" = [])), request_body = NewNamespace,
    responses(
        (status = 201, description = "Created", body = NamespaceOut),
        Malformed,
        Unauthenticated,
        Forbidden,
        (status = 409, description = "That name is taken (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn create_namespace(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewNamespace>,
) -> ApiResult<(StatusCode, Json<NamespaceOut>)> {
    let action = Action::CreateNamespace { name: body.name, quota: body.quota.map(Into::into) };
    let ns = act(&state, &caller, action).await?.into_namespace()?;
    Ok((StatusCode::CREATED, Json(NamespaceOut::new(ns, Role::Admin))))
}

/// One namespace (members and superadmin; others get 404).
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 200, description = "The namespace", body = NamespaceOut),
        Unauthenticated,
        (status = 404, description = "No such namespace, or you are not a member (`not_found`); also for a name that breaks the rule", body = ErrorBody),
    ))]
pub async fn get_namespace(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Json<NamespaceOut>> {
    let (ns, role) = core::get_namespace(&state, caller.principal(), &ns).await?;
    Ok(Json(NamespaceOut::new(ns, role)))
}

/// Delete a namespace (superadmin).
#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 204, description = "Deleted, with its machines, network and ports"),
        Unauthenticated,
        Forbidden,
        NotFound,
        (status = 409, description = "Its machines could not all be removed yet (`machines_remain`); try again", body = ErrorBody),
        Invalid,
    ))]
pub async fn delete_namespace(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::DeleteNamespace { ns }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members of a namespace and their roles.
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/members", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 200, description = "Its members", body = Vec<MemberOut>),
        Unauthenticated,
        (status = 404, description = "No such namespace, or you are not a member (`not_found`); also for a name that breaks the rule", body = ErrorBody),
    ))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Json<Vec<MemberOut>>> {
    Ok(Json(core::list_members(&state, caller.principal(), &ns).await?.into_iter().map(MemberOut::from).collect()))
}

/// Give a user a role in a namespace (superadmin). 201 when added, 200 when changed.
#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/members/{login}", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("login" = super::rules::Login, Path, description = "The user's login")),
    request_body = SetRole,
    responses(
        (status = 200, description = "The role was changed", body = MemberOut),
        (status = 201, description = "The user was added", body = MemberOut),
        Malformed,
        Unauthenticated,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, login)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetRole>,
) -> ApiResult<(StatusCode, Json<MemberOut>)> {
    let action = Action::SetMember { ns, login: login.clone(), role: body.role.clone() };
    let created = act(&state, &caller, action).await?.into_added()?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(MemberOut { login, role: body.role })))
}

/// Remove a user from a namespace (superadmin).
#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/members/{login}", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name"), ("login" = super::rules::Login, Path, description = "The user's login")),
    responses(
        (status = 204, description = "Removed"),
        Unauthenticated,
        Forbidden,
        NotFound,
        Invalid,
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, login)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::RemoveMember { ns, login }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging and scope of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this namespace (required for namespace admins).
    #[param(value_type = Option<super::rules::NamespaceName>)]
    pub namespace: Option<String>,
    /// Only records older than this id.
    pub before: Option<i64>,
    /// At most this many (default 100); values outside 1–1000 are taken as the nearest of those.
    pub limit: Option<i64>,
    /// Only what this login did.
    pub user: Option<String>,
    /// Only this action (`machine.start`), or a family of actions written with a trailing dot (`machine.`).
    pub action: Option<String>,
    /// `ok`, `error` (every refusal and failure), or one error code (`forbidden`).
    pub outcome: Option<String>,
    /// Only records at or after this time: RFC 3339, or a UTC `2026-12-01T08:30`, or a date.
    pub since: Option<String>,
    /// Only records before this time (same forms; a date alone includes that whole day).
    pub until: Option<String>,
}

/// Who did what, when, from where, and how it ended: everything (superadmin) or one namespace (its admins),
/// filtered by user, action, outcome and time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses(
        (status = 200, description = "Records, newest first", body = Vec<AuditOut>),
        (status = 400, description = "A query parameter is not of its type (`bad_request`)", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Without the namespace parameter: you are not the superadmin; with it: you are not its admin (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such namespace, or you are not a member (`not_found`)", body = ErrorBody),
        (status = 422, description = "A filter is not of its form, e.g. a time that is not one, or since not before until (`invalid`)", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditOut>>> {
    let filter = core::audit::AuditQuery {
        user: q.user.as_deref(),
        action: q.action.as_deref(),
        outcome: q.outcome.as_deref(),
        since: q.since.as_deref(),
        until: q.until.as_deref(),
    }
    .filter()?;
    let limit = q.limit.unwrap_or(100);
    let entries = core::audit_log(&state, caller.principal(), q.namespace.as_deref(), &filter, q.before, limit).await?;
    Ok(Json(entries.into_iter().map(AuditOut::from).collect()))
}

/// Set a namespace's quota (superadmin); null fields are unlimited. Machines already there
/// stay; only growth beyond the quota is refused (422 quota_exceeded).
#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/quota", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")), request_body = QuotaBody,
    responses(
        (status = 200, description = "The quota now", body = QuotaBody),
        Malformed,
        Unauthenticated,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn set_quota(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Json<QuotaBody>> {
    act(&state, &caller, Action::SetQuota { ns, quota: body.into() }).await?;
    Ok(Json(body))
}

/// A namespace's quota, what its machines are promised and what they use now (its members and
/// the superadmin): the same numbers as the namespace page of the panel.
#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/resources", tag = "namespaces", security(("bearer" = [])),
    params(("ns" = super::rules::NamespaceName, Path, description = "The namespace's name")),
    responses(
        (status = 200, description = "Quota, allocated, running and used", body = NamespaceCapacity),
        Unauthenticated,
        (status = 404, description = "No such namespace, or you are not a member (`not_found`)", body = ErrorBody),
    ))]
pub async fn namespace_resources(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Json<NamespaceCapacity>> {
    let resources = core::capacity::namespace_resources(&state, caller.principal(), &ns).await?;
    Ok(Json(namespace_capacity(resources)))
}

/// Host capacity, overcommit, and what every namespace has allocated and running (superadmin).
#[utoipa::path(get, path = "/api/v1/capacity", tag = "namespaces", security(("bearer" = [])),
    responses(
        (status = 200, description = "The capacity report", body = CapacityOut),
        Unauthenticated,
        Forbidden,
    ))]
pub async fn capacity(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<CapacityOut>> {
    let report = core::capacity::capacity(&state, caller.principal()).await?;
    Ok(Json(CapacityOut {
        host: HostOut { cpus: report.host.cpus, memory_mb: report.host.memory_mb, disk_gb: report.host.disk_gb },
        overcommit: OvercommitOut {
            cpu: report.overcommit_cpu,
            memory: report.overcommit_memory,
            effective_cpu: report.effective_cpu(),
            effective_memory: report.effective_memory(),
        },
        allocated: report.allocated.into(),
        running: report.running.into(),
        used: used_out(report.used),
        disk_enforced: report.disk_enforced,
        microvm: MicroVmOut {
            available: report.microvm.available,
            accelerator: report.microvm.accelerator,
            detail: report.microvm.detail,
        },
        namespaces: report.namespaces.into_iter().map(namespace_capacity).collect(),
    }))
}

fn used_out(used: core::capacity::Used) -> UsedOut {
    UsedOut { cpus: used.cpus, memory_mb: used.memory_mb }
}

fn namespace_capacity(ns: core::capacity::NamespaceResources) -> NamespaceCapacity {
    NamespaceCapacity {
        name: ns.name.to_string(),
        quota: ns.quota.into(),
        allocated: ns.allocated.into(),
        running: ns.running.into(),
        used: used_out(ns.used),
    }
}
