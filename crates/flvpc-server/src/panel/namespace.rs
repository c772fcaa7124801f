//! A namespace's page: its members (managed by the superadmin), its machines and its activity.

use super::account::finish;
use super::admin::audit_table;
use super::layout::{self, csrf_field, danger_button, page, seg, time, Nav};
use super::session::CsrfForm;
use super::user::redirect_with;
use super::PanelUser;
use crate::core::{self, Action};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use flvpc_model::Role;
use maud::html;
use serde::Deserialize;

/// GET /namespaces/{ns}: members see it; others are told it does not exist.
pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let principal = user.caller.principal();
    let (ns, role) = match core::get_namespace(&state, principal, &name).await {
        Ok(found) => found,
        Err(err) => return layout::error_page(err),
    };
    let members = match core::list_members(&state, principal, &name).await {
        Ok(m) => m,
        Err(err) => return layout::error_page(err),
    };
    let superadmin = principal.is_superadmin();
    let activity = if role == Role::Admin {
        core::audit_log(&state, principal, Some(&name), None, 15).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let users = if superadmin { core::list_users(&state, principal).await.unwrap_or_default() } else { Vec::new() };
    let base = format!("/namespaces/{}", seg(ns.name.as_str()));
    let machines_section = super::machines::section(&state, &user, &headers, &ns.name, role).await;
    let resources_section = super::capacity::namespace_section(&state, &user, &ns.name).await;
    let body = html! {
        div.title-row {
            h1 { (ns.name.as_str()) }
            span class={ "badge " (role.as_str()) } title="your role here" { (role.as_str()) }
            span.muted { "created " (time(ns.created_at)) }
        }
        (machines_section)
        (resources_section)
        section {
            h2 { "Members" }
            @if members.is_empty() { p.empty { "No members yet." } } @else {
                table {
                    thead { tr { th { "Login" } th { "Role" } @if superadmin { th {} } } }
                    tbody {
                        @for m in &members {
                            tr {
                                td { (m.login.as_str()) }
                                td { span class={ "badge " (m.role.as_str()) } { (m.role.as_str()) } }
                                @if superadmin {
                                    td.actions {
                                        form.inline method="post" action={ (base) "/members" } {
                                            (csrf_field(&user))
                                            input type="hidden" name="login" value=(m.login.as_str());
                                            input type="hidden" name="role" value=(if m.role == Role::Admin { "user" } else { "admin" });
                                            button type="submit" { "Make " (if m.role == Role::Admin { "user" } else { "admin" }) }
                                        }
                                        (danger_button(&user, &format!("{base}/members/{}/delete", seg(m.login.as_str())), "Remove",
                                            &format!("Remove {} from {}?", m.login.as_str(), ns.name.as_str())))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if superadmin {
                @let candidates: Vec<_> = users.iter().filter(|u| !u.superadmin && !members.iter().any(|m| m.login == u.login)).collect();
                @if candidates.is_empty() {
                    p.empty { "Every user is already a member. " a href="/admin/users" { "Create a user" } " to add someone new." }
                } @else {
                    form.card.row method="post" action={ (base) "/members" } {
                        (csrf_field(&user))
                        label { "User"
                            select name="login" required {
                                @for u in &candidates { option value=(u.login.as_str()) { (u.login.as_str()) } }
                            }
                        }
                        label { "Role"
                            select name="role" { option value="user" { "user — use, start and stop machines" } option value="admin" { "admin — also define, create and delete them" } }
                        }
                        button.primary type="submit" { "Add member" }
                    }
                }
            }
        }
        @if role == Role::Admin {
            section { h2 { "Activity" } (audit_table(&activity)) }
        }
        @if superadmin {
            section.danger-zone {
                h2 { "Delete namespace" }
                p.muted { "Removes the namespace and its memberships." }
                (danger_button(&user, &format!("{base}/delete"), "Delete namespace", &format!("Delete the namespace {} for good?", ns.name.as_str())))
            }
        }
    };
    page(&state, &user, ns.name.as_str(), Nav::Namespace, body)
}

/// The add/change member form.
#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    _csrf: String,
    login: String,
    role: String,
}

/// POST /namespaces/{ns}/members.
pub async fn set_member(
    State(state): State<AppState>,
    user: PanelUser,
    Path(ns): Path<String>,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = Action::SetMember { ns: ns.clone(), login: form.login.clone(), role: form.role.clone() };
    let result = user.act(&state, action).await.and_then(|o| o.into_added());
    let to = format!("/namespaces/{}", seg(&ns));
    finish(&state, &to, result, |added| {
        if added {
            format!("{} added as {}.", form.login, form.role)
        } else {
            format!("{} is now {}.", form.login, form.role)
        }
    })
}

/// POST /namespaces/{ns}/members/{login}/delete.
pub async fn remove_member(
    State(state): State<AppState>,
    user: PanelUser,
    Path((ns, login)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let result = user.act(&state, Action::RemoveMember { ns: ns.clone(), login: login.clone() }).await.map(drop);
    let to = format!("/namespaces/{}", seg(&ns));
    finish(&state, &to, result, |()| format!("{login} removed from {ns}."))
}

/// POST /namespaces/{ns}/delete.
pub async fn delete(
    State(state): State<AppState>,
    user: PanelUser,
    Path(ns): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    match user.act(&state, Action::DeleteNamespace { ns: ns.clone() }).await {
        Ok(_) => redirect_with(&state, "/admin/namespaces", super::user::Flash::ok(format!("Namespace {ns} deleted."))),
        Err(err) => redirect_with(
            &state,
            &format!("/namespaces/{}", seg(&ns)),
            super::user::Flash::error(super::user::say(&err)),
        ),
    }
}
